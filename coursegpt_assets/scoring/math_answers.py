"""Math answer scoring: pull the final answer out of model text and compare it with the gold.

Equivalence (fractions, LaTeX, thousands separators, units, percentages, symbolic forms) is decided
by `math_verify`; only the locating of the answer (boxed, "#### n", "final answer is", choice
letters, last number) and the choice-letter logic are our own, because math_verify's string
extraction misses "(C)". The seed's exact-match figure (lower-cased, whitespace-normalised string
equality, or numeric equality within 1e-6) is reported alongside.
"""

from __future__ import annotations

import math
import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

LEVELS = ("primary", "middle", "high", "college")
_LETTERS = "ABCDEFGHIJ"
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_GSM8K = re.compile(r"####\s*([^\n]+)")
_ANCHOR = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:|=)\s*:?\s*([^\n]+)", re.I)
_PAREN_LETTER = re.compile(r"\(\s*([A-J])\s*\)")
_LEAD_LETTER = re.compile(r"(?:^|[\s*])([A-J])\s*(?:[.):]|\*\*|$)", re.M)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\.\d+")
_SHORT_ANSWER_CHARS = 40
_ASSIGNMENT = re.compile(r"(?<![<>!=])=(?!=)")
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")


def _boxed_contents(text: str) -> str | None:
    """Contents of the last \\boxed{...}, balancing nested braces."""
    matches = list(_BOXED.finditer(text))
    for match in reversed(matches):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            if depth == 0:
                return text[start:pos].strip()
    return None


def _clean(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    answer = re.sub(r"[.;,]+$", "", answer).strip()
    return answer.strip("*").strip()


def choice_letter(answer: str, n_options: int = 4) -> str | None:
    """The option letter an answer names: 'C', '(C)', 'C.', 'C) text', '**C**'; None if none."""
    letters = _LETTERS[:n_options]
    stripped = answer.strip().strip("*$").strip()
    if len(stripped) == 1 and stripped.upper() in letters:
        return stripped.upper()
    for pattern in (_PAREN_LETTER, _LEAD_LETTER):
        found = [letter for letter in pattern.findall(stripped) if letter in letters]
        if found:
            return found[-1]
    return None


def _marked_answer(text: str) -> str | None:
    """An answer the text marks explicitly: last boxed, GSM8K '#### n', or 'final answer is / Answer:'."""
    boxed = _boxed_contents(text)
    if boxed:
        return boxed
    gsm = _GSM8K.findall(text)
    if gsm:
        return _clean(gsm[-1])
    anchored = _ANCHOR.findall(text)
    if anchored and _clean(anchored[-1]):
        return _clean(anchored[-1])
    return None


def extract_answer(text: str, *, options: Sequence[str] | None = None) -> str | None:
    """The final answer in `text`: boxed, then GSM8K '#### n', then 'final answer is / Answer:',
    then (choice questions) a choice letter or the option text, then a bare one-line expression, then the
    last number."""
    if not isinstance(text, str) or not text.strip():
        return None
    marked = _marked_answer(text)
    if marked:
        letter = choice_letter(marked, len(options)) if options else None
        return letter or marked  # choice answers are reported as the bare letter, e.g. "(C)." -> "C"
    stripped = text.strip()
    one_short_line = "\n" not in stripped and len(stripped) <= _SHORT_ANSWER_CHARS
    if options:
        for pattern in (_PAREN_LETTER, _LEAD_LETTER):
            found = [letter for letter in pattern.findall(text) if letter in _LETTERS[: len(options)]]
            if found:
                return found[-1]
        if one_short_line:  # the option's text itself, e.g. "Bounded"
            return _clean(stripped)
    if one_short_line and not _PROSE_WORD.search(stripped):  # a bare expression, e.g. "x**2 - 3*x"
        return _clean(stripped)
    numbers = _NUMBER.findall(text)
    return numbers[-1].strip() if numbers else None


def _latex_wrapped(answer: str) -> str:
    """One `$...$` math span for math_verify: outer delimiters and currency dollars removed."""
    text = answer.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            text = text[len(left) : -len(right)].strip()
            break
    text = text.replace("\\$", "").replace("$", "")
    return f"${text}$"


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def math_equal(gold: str, answer: str) -> bool:
    """Mathematical equivalence via math_verify (its signal-based timeouts only in the main thread)."""
    from math_verify import parse, verify

    timeout = 5 if _in_main_thread() else None
    gold_parsed = parse(_latex_wrapped(gold), parsing_timeout=timeout)
    answer_parsed = parse(_latex_wrapped(answer), parsing_timeout=timeout)
    if not gold_parsed or not answer_parsed:
        return False
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=timeout))


def _normalise(text: str) -> str:
    return " ".join(str(text).lower().split())


def seed_exact_match(answer: str | None, gold: str) -> bool:
    """The seed's figure: lower-cased, whitespace-normalised equality, or numbers within 1e-6."""
    if answer is None:
        return False
    if _normalise(answer) == _normalise(gold):
        return True
    try:
        return math.isclose(float(answer), float(gold), rel_tol=0.0, abs_tol=1e-6)
    except (TypeError, ValueError):
        return False


def answers_match(gold: str, answer: str | None, *, options: Sequence[str] | None = None) -> bool:
    """Whether an extracted answer is the gold: choice letters by letter (or by the option's value),
    everything else by normalised text or math_verify equivalence (of the right-hand side of "x = ...")."""
    if answer is None or not str(answer).strip():
        return False
    gold = str(gold).strip()
    if options and len(gold) == 1 and gold.upper() in _LETTERS[: len(options)]:
        letter = choice_letter(answer, len(options))
        if letter is not None:
            return letter == gold.upper()
        gold = str(options[_LETTERS.index(gold.upper())])
    if _normalise(answer) == _normalise(gold):
        return True
    if _ASSIGNMENT.search(answer) and not _ASSIGNMENT.search(gold):  # "x = 5" answers the gold "5"
        answer = _ASSIGNMENT.split(answer)[-1].strip()
    return bool(answer) and math_equal(gold, answer)


def gold_answer(row: dict[str, Any]) -> str:
    """The row's gold answer: `answer` (after '####' for GSM8K-style rows) or `expected_answer`."""
    for key in ("answer", "expected_answer"):
        value = row.get(key)
        if value is not None:
            text = str(value)
            return _clean(text.rsplit("####", 1)[1]) if "####" in text else text.strip()
    raise ValueError(f"benchmark row has no 'answer' or 'expected_answer' (keys: {sorted(row)})")


def row_level(row: dict[str, Any], file_label: str | None = None) -> str:
    """primary/middle/high/college from the topic prefix ('Primary--...'), else the file label."""
    topic = str(row.get("topic") or "")
    level = topic.split("--", 1)[0].strip().lower()
    if level in LEVELS:
        return level
    if file_label:
        prefix = file_label.split("__", 1)[0].split("_", 1)[0].lower()
        if prefix in LEVELS:
            return prefix
    return "unknown"


def prediction_text(prediction: Any, index: int) -> str:
    """Model text from a prediction row: a string or `{"completion": text}`."""
    if isinstance(prediction, str):
        return prediction
    if isinstance(prediction, dict) and isinstance(prediction.get("completion"), str):
        return prediction["completion"]
    raise ValueError(
        f"prediction row {index}: expected a string or {{'completion': str}}, got {type(prediction).__name__}"
    )


def _group(samples: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        if sample.get(key) is not None:
            groups[str(sample[key])].append(sample)
    return {name: _summary(groups[name]) for name in sorted(groups)}


def _summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    count = len(samples)
    return {
        "samples": count,
        "accuracy": sum(s["correct"] for s in samples) / count if count else 0.0,
        "seed_exact_match": sum(s["seed_exact_match"] for s in samples) / count if count else 0.0,
    }


def score_math(
    benchmark_rows: list[dict[str, Any]],
    predictions: list[Any],
    *,
    file_labels: list[str | None] | None = None,
) -> dict[str, Any]:
    """Accuracy overall, by level, file and topic, plus one record per sample (row i with prediction i)."""
    if len(benchmark_rows) != len(predictions):
        raise ValueError(
            f"benchmark has {len(benchmark_rows)} rows but predictions have {len(predictions)}; row i must pair with row i"
        )
    if file_labels is not None and len(file_labels) != len(benchmark_rows):
        raise ValueError(
            f"file_labels has {len(file_labels)} entries for {len(benchmark_rows)} benchmark rows"
        )
    samples: list[dict[str, Any]] = []
    for index, (row, prediction) in enumerate(zip(benchmark_rows, predictions, strict=True)):
        try:
            gold = gold_answer(row)
        except ValueError as exc:
            raise ValueError(f"benchmark row {index}: {exc}") from exc
        options = row.get("options") or None
        extracted = extract_answer(prediction_text(prediction, index), options=options)
        label = file_labels[index] if file_labels is not None else row.get("file")
        samples.append(
            {
                "index": index,
                "extracted": extracted,
                "gold": gold,
                "correct": answers_match(gold, extracted, options=options),
                "seed_exact_match": seed_exact_match(extracted, gold),
                "level": row_level(row, label),
                "file": label,
                "topic": row.get("topic"),
            }
        )
    return {
        "metrics": {
            "overall": _summary(samples),
            "by_level": _group(samples, "level"),
            "by_file": _group(samples, "file"),
            "by_topic": _group(samples, "topic"),
        },
        "samples": samples,
    }
