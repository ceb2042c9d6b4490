"""Benchmark rows per agent, built from held-out data only, as plain functions the `benchmark` asset calls.

Every row has `id`, `source` and the fields its scorer reads: router rows the seed's prompt/completion
plus `categories`; math rows `question`, `answer` (and `options` for single choice); code rows
`instruction`, `entry_point` and `testcase`. `benchmark_question` is the text the leakage check compares
with the training split.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from coursegpt_assets.agents.base import Agent
from coursegpt_assets.agents.router import tool_name
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.data.records import normalise_text
from coursegpt_assets.data.splits import seeded_order
from coursegpt_assets.scoring.math_answers import gold_answer, row_level

MATH_BENCHMARKS_VARIABLE = "COURSEGPT_MATH_BENCHMARKS"
DEFAULT_MATH_BENCHMARKS = FIXTURES_DIR / "benchmarks" / "math"
CANONICAL_ROUTE = ("/general-search", "/math", "/code")
ROUTER_CATEGORIES = (
    "math_first", "four_step", "has_guidance", "has_computation", "advanced",
    "non_canonical_route", "math_multi_pass", "math_backstop",
)
_LETTERS = "ABCDEFGHIJ"


class BenchmarkError(ValueError):
    """A benchmark file or row is unusable; the message names the file and line."""


# -- router ------------------------------------------------------------------------------------------
def router_categories(record: dict) -> list[str]:
    """The seed's gold-defined buckets plus the hard-set shapes, e.g. `/math` as first or last step."""
    tools = [tool_name(step) for step in record.get("route_plan") or []]
    keys = list((record.get("metrics") or {}).keys())
    flags = {
        "math_first": bool(tools) and tools[0] == "/math",
        "four_step": len(tools) >= 4,
        "has_guidance": any("guidance" in k for k in keys),
        "has_computation": any("computation" in k for k in keys),
        "advanced": record.get("difficulty") == "advanced",
        "non_canonical_route": tuple(tools) != CANONICAL_ROUTE,
        "math_multi_pass": tools.count("/math") >= 2,
        "math_backstop": bool(tools) and tools[-1] == "/math",
    }
    return [name for name in ROUTER_CATEGORIES if flags[name]]


def _router_row(agent: Agent, record: dict, source: str, split: str) -> dict:
    return {
        "id": record["id"], "source": source, "split": split,
        "user_query": record["user_query"],
        "prompt": agent.vertex_prompt(record), "completion": agent.assistant_text(record),
        "categories": router_categories(record),
    }


def router_rows(agent: Agent, test: list[dict], validation: list[dict], *, seed: int,
                hard_per_category: int | None = None) -> list[dict]:
    """The whole test split, then the validation rows with at least one category ("hard").

    With `hard_per_category`, categories are filled rarest first (seeded order within one) until that many
    chosen rows carry the category; a row counts for every category it carries. Rare shapes are thus
    oversampled like the seed's hard set (a common category may exceed the cap through rarer picks).
    """
    rows = [_router_row(agent, r, "test", "test") for r in test]
    candidates = [_router_row(agent, r, "hard", "validation") for r in validation]
    candidates = [candidates[i] for i in seeded_order([c["id"] for c in candidates], seed) if candidates[i]["categories"]]
    if hard_per_category is None:
        return rows + candidates
    counts = Counter(c for row in candidates for c in row["categories"])
    taken: dict[str, dict] = {}
    for category in sorted(counts, key=lambda c: (counts[c], c)):
        carried = sum(category in row["categories"] for row in taken.values())
        for row in candidates:
            if carried >= hard_per_category:
                break
            if category in row["categories"] and row["id"] not in taken:
                taken[row["id"]] = row
                carried += 1
    return rows + [row for row in candidates if row["id"] in taken]


# -- math --------------------------------------------------------------------------------------------
def math_benchmark_files(entries: Iterable[str] | None = None) -> list[Path]:
    """Files from config entries, else COURSEGPT_MATH_BENCHMARKS (os.pathsep-separated), else the fixtures.

    Each entry is a .jsonl file, a folder (all its .jsonl files) or a glob pattern.
    """
    if entries is None:
        env = os.environ.get(MATH_BENCHMARKS_VARIABLE, "").strip()
        entries = [e for e in env.split(os.pathsep) if e.strip()] if env else [str(DEFAULT_MATH_BENCHMARKS)]
    files: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            found = sorted(path.glob("*.jsonl"))
        elif path.is_file():
            found = [path]
        else:
            found = [Path(p) for p in sorted(glob.glob(str(path)))]
        if not found:
            raise BenchmarkError(f"math benchmark entry {entry!r} matches no .jsonl file")
        files += [f for f in found if f not in files]
    return files


def _math_file_row(path: Path, line_no: int, row: dict) -> dict:
    where = f"{path.name} line {line_no}"
    question = row.get("question") or row.get("problem")
    if not isinstance(question, str) or not question.strip():
        raise BenchmarkError(f"{where}: no 'question' text")
    try:
        answer = gold_answer(row)
    except ValueError as e:
        raise BenchmarkError(f"{where}: {e}") from None
    if not answer:
        raise BenchmarkError(f"{where}: empty answer")
    out = {
        "id": f"{path.stem}:{line_no}", "source": path.stem, "file": path.stem,
        "question": question, "answer": answer, "topic": str(row.get("topic") or ""),
    }
    out["level"] = row_level(row, path.stem)
    options = row.get("options")
    if options:
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise BenchmarkError(f"{where}: 'options' must be a list of strings")
        if answer.upper() not in _LETTERS[: len(options)]:
            raise BenchmarkError(f"{where}: answer {answer!r} is not a letter A-{_LETTERS[len(options) - 1]}")
        out.update(format="single_choice", options=options, answer=answer.upper())
    elif "####" in str(row.get("answer", "")):
        out.update(format="gsm8k", solution=str(row["answer"]).rsplit("####", 1)[0].strip())
    else:
        out["format"] = "cloze"
    return out


def math_file_rows(path: Path) -> list[dict]:
    """Rows of one cloze / single-choice / GSM8K-style file; a bad row fails naming its line."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"{path.name} line {line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise BenchmarkError(f"{path.name} line {line_no}: expected a JSON object")
            rows.append(_math_file_row(path, line_no, row))
    return rows


def math_validation_rows(validation: list[dict]) -> list[dict]:
    """The held-out split as open-answer rows (gold = the source's or the extracted final answer).

    Split records may be in the source's shape or the agent's canonical one; `clean_record` reads both.
    """
    from coursegpt_assets.agents.math import clean_record

    rows = []
    for r in validation:
        canonical = clean_record(r)
        rows.append({"id": r["id"], "source": "validation", "file": "validation", "format": "open",
                     "question": canonical["problem"], "answer": canonical["answer"],
                     "topic": "", "level": "unknown"})  # MathX rows carry no level
    return rows


# -- code --------------------------------------------------------------------------------------------
def code_rows(test: list[dict]) -> list[dict]:
    """The held-out test split with everything pass@1 needs; `reference` is the dataset's own solution."""
    return [
        {"id": r["id"], "source": "test", "instruction": r["instruction"], "entry_point": r["entry_point"],
         "testcase": r["testcase"], "reference": r["code"]}
        for r in test
    ]


# -- leakage -----------------------------------------------------------------------------------------
def benchmark_question(row: dict) -> str:
    """The normalised prompt text of a benchmark row, comparable with the agent's dedup key."""
    text = row.get("user_query") or row.get("question") or row.get("instruction") or ""
    return normalise_text(text)


def overlapping_ids(rows: Iterable[dict], train_keys: set[str]) -> list[str]:
    """Ids of benchmark rows whose normalised question is in the training split."""
    return [row["id"] for row in rows if benchmark_question(row) in train_keys]


def counts_by(rows: list[dict], field: str) -> dict[str, int]:
    counter: Counter = Counter()
    for row in rows:
        value = row.get(field)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                counter[str(item)] += 1
    return dict(sorted(counter.items()))
