"""Math answers: extraction and equivalence on tricky cases, seed exact match, grouped accuracy."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from coursegpt_assets.scoring.math_answers import (
    answers_match,
    choice_letter,
    extract_answer,
    gold_answer,
    row_level,
    score_math,
    seed_exact_match,
)

MATH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "math"
OPTIONS = ["Bounded", "Unbounded", "Monotonic", "Periodic"]

# (gold, model text, options, expected extracted, expected correct)
CASES = [
    ("0.5", "So $x = \\frac{1}{2}$.\nThe final answer is $\\frac{1}{2}$.", None, "$\\frac{1}{2}$", True),
    ("\\frac{1}{2}", "0.5", None, "0.5", True),
    ("1/2", "\\boxed{0.5}", None, "0.5", True),
    ("16875", "In total there are $16,875$ female students.", None, "16,875", True),
    ("16875", "The answer is $16,875$", None, "$16,875$", True),
    ("5", "5 cm", None, "5 cm", True),
    ("5", "The side is $5\\ \\mathrm{cm}$", None, "5", True),
    ("800", "Thus he spent \\$800.", None, "800", True),
    ("x^2+1", "We get \\boxed{\\left\\{x^2+1\\right\\}} after expanding {this}.", None, "\\left\\{x^2+1\\right\\}", True),
    ("\\frac{3}{4}", "First \\boxed{1}, then finally \\boxed{\\frac{\\sqrt{9}}{4}}", None, "\\frac{\\sqrt{9}}{4}", True),
    ("72", "Natalia sold 48/2 = 24 clips in May.\n#### 72", None, "72", True),
    ("-31/3", "-31/3", None, "-31/3", True),
    ("-31/3", "x = -10.333333333", None, "x = -10.333333333", True),
    ("x \\leq 2", "\\boxed{x \\leq 2}", None, "x \\leq 2", True),
    ("-11", "-11.0", None, "-11.0", True),
    ("4", "I think it is 3", None, "3", False),
    ("4", "no idea", None, None, False),
    ("C", "(C)", OPTIONS, "C", True),
    ("C", "C", OPTIONS, "C", True),
    ("C", "Answer: C", OPTIONS, "C", True),
    ("B", "The function is unbounded, so the answer is **B**.", OPTIONS, "B", True),
    ("D", "D) Periodic", OPTIONS, "D", True),
    ("A", "It must be (A), not (B) or (C)... final pick (A)", OPTIONS, "A", True),
    ("C", "Reasoning first.\nSo the answer is (C).", OPTIONS, "C", True),
    ("C", "\\boxed{C}", OPTIONS, "C", True),
    ("A", "The answer is: bounded", OPTIONS, "bounded", True),
    ("A", "Bounded", OPTIONS, "Bounded", True),
    ("A", "Unbounded", OPTIONS, "Unbounded", False),
    ("A", "(B)", OPTIONS, "B", False),
]


@pytest.mark.parametrize("gold, text, options, extracted, correct", CASES)
def test_tricky_cases(gold, text, options, extracted, correct):
    got = extract_answer(text, options=options)
    assert got == extracted
    assert answers_match(gold, got, options=options) is correct


def test_choice_letter_forms():
    assert [choice_letter(text) for text in ("C", "(C)", "C.", "**C**", "c", "C) text")] == ["C"] * 6
    assert choice_letter("E") is None and choice_letter("E", n_options=5) == "E"
    assert choice_letter("42") is None


def test_seed_exact_match_is_strict_about_format():
    assert seed_exact_match("  Linear   Equation ", "linear equation")
    assert seed_exact_match("2.0000001", "2")
    assert not seed_exact_match("(C)", "C")
    assert not seed_exact_match("16,875", "16875")
    assert not seed_exact_match(None, "1")


def test_gold_and_level_from_rows():
    assert gold_answer({"question": "q", "answer": "Natalia sold 48 clips.\n#### 72"}) == "72"
    assert gold_answer({"expected_answer": " 3 "}) == "3"
    with pytest.raises(ValueError, match="no 'answer'"):
        gold_answer({"question": "q"})
    assert row_level({"topic": "Primary--Intro--Four Operations"}) == "primary"
    assert row_level({"topic": "College--Advanced Mathematics--ODE"}) == "college"
    assert row_level({}, "middle_knowledge__single_choice_en") == "middle"
    assert row_level({}, "gsm8k") == "unknown"


def test_score_math_groups_and_samples():
    rows = [
        {"question": "1+1", "answer": "2", "topic": "Primary--Numbers--Addition"},
        {"question": "half", "answer": "1/2", "topic": "Primary--Numbers--Fractions"},
        {"question": "pick", "options": OPTIONS, "answer": "A", "topic": "College--Analysis--Bounds"},
        {"question": "gsm", "answer": "Some steps.\n#### 1,200"},
    ]
    predictions = [{"completion": "2"}, "The answer is 0.5", {"completion": "(A)"}, {"completion": "So 1200 in all.\n#### 1200"}]
    report = score_math(rows, predictions, file_labels=["primary__cloze_en", "primary__cloze_en", "college__single_choice_en", None])
    overall = report["metrics"]["overall"]
    assert overall == {"samples": 4, "accuracy": 1.0, "seed_exact_match": 0.5}
    assert report["metrics"]["by_level"]["primary"]["samples"] == 2
    assert report["metrics"]["by_level"]["unknown"]["samples"] == 1
    assert set(report["metrics"]["by_file"]) == {"primary__cloze_en", "college__single_choice_en"}
    assert report["metrics"]["by_topic"]["College--Analysis--Bounds"]["accuracy"] == 1.0
    assert [sample["extracted"] for sample in report["samples"]] == ["2", "0.5", "A", "1200"]
    assert all({"index", "extracted", "correct", "seed_exact_match"} <= set(s) for s in report["samples"])


def test_score_math_errors_name_the_row():
    with pytest.raises(ValueError, match="benchmark has 1 rows but predictions have 2"):
        score_math([{"answer": "1"}], ["1", "2"])
    with pytest.raises(ValueError, match="prediction row 0"):
        score_math([{"answer": "1"}], [{"text": "1"}])


def test_works_outside_the_main_thread():
    """math_verify's signal timeouts cannot run in worker threads; we switch them off there."""
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.append(answers_match("0.5", "\\frac{1}{2}")))
    worker.start()
    worker.join()
    assert results == [True]


@pytest.mark.skipif(not MATH_DIR.exists(), reason="needs /work/shared math benchmarks")
@pytest.mark.parametrize("path", sorted(MATH_DIR.glob("*.jsonl")) if MATH_DIR.exists() else [], ids=lambda p: p.stem)
def test_gold_answers_score_perfectly(path):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    report = score_math(rows, [{"completion": row["answer"]} for row in rows], file_labels=[path.stem] * len(rows))
    assert report["metrics"]["overall"]["accuracy"] == 1.0
    assert report["metrics"]["overall"]["samples"] == len(rows)
    assert set(report["metrics"]["by_level"]) <= {"primary", "middle", "high", "college"}
    # Wrong letters must not score: shift every choice answer by one option.
    if rows[0].get("options"):
        shifted = [{"completion": "ABCD"[("ABCD".index(row["answer"]) + 1) % 4]} for row in rows]
        assert score_math(rows, shifted)["metrics"]["overall"]["accuracy"] == 0.0
