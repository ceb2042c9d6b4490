"""Code extraction, the pass@k estimator and end-to-end scoring of small benchmarks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from coursegpt_assets.scoring import sandbox
from coursegpt_assets.scoring.code_eval import (
    build_test_code,
    extract_code,
    pass_at_k,
    score_code,
    score_predictions_file,
)

needs_sandbox = pytest.mark.skipif(
    sandbox.sandbox_problem() is not None,
    reason=f"sandbox unavailable: {sandbox.sandbox_problem()} (CI must `apt-get install -y bubblewrap`)",
)

BENCHMARK = [
    {
        "instruction": "Write add(a, b).",
        "entry_point": "add",
        "testcase": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"],
    },
    {
        "instruction": "Write is_even(n).",
        "entry_point": "is_even",
        "testcase": ["assert is_even(2)", "assert not is_even(3)"],
    },
    {
        "instruction": "Write reverse(s).",
        "entry_point": "reverse",
        "testcase": ["assert reverse('abc') == 'cba'"],
    },
]
GOOD = {
    "add": "def add(a, b):\n    return a + b\n",
    "is_even": "def is_even(n):\n    return n % 2 == 0\n",
    "reverse": "def reverse(s):\n    return s[::-1]\n",
}


def fenced(code: str, tag: str = "python") -> str:
    return f"Here is the solution:\n```{tag}\n{code}```\nIt works by ..."


# ---------------------------------------------------------------- extraction


def test_extracts_python_fence_and_ignores_prose():
    assert extract_code(fenced(GOOD["add"])) == GOOD["add"].strip()
    assert extract_code(fenced(GOOD["add"], tag="py")) == GOOD["add"].strip()


def test_prefers_the_block_defining_the_entry_point():
    text = "```python\nimport math\n```\nthen\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert extract_code(text, "add").endswith("def add(a, b):\n    return a + b")  # other blocks' imports first
    assert extract_code(text) == "import math"


def test_untagged_fence_used_when_no_python_fence_and_other_languages_ignored():
    assert extract_code("```\nx = 1\n```") == "x = 1"
    assert extract_code("```bash\npip install x\n```") == ""
    text = "```bash\npip install x\n```\n```python\ny = 2\n```"
    assert extract_code(text) == "y = 2"


def test_unfenced_text_and_unclosed_fence():
    assert extract_code("def f():\n    return 1\n") == "def f():\n    return 1"
    assert extract_code("```python\ndef f():\n    return 1\n") == "def f():\n    return 1"


def test_build_test_code_validates_rows():
    assert build_test_code({"testcase": ["assert 1", "assert 2"]}) == "assert 1\nassert 2\n"
    assert build_test_code({"testcase": "assert 1"}) == "assert 1\n"
    for bad in ({}, {"testcase": []}, {"testcase": [1]}):
        with pytest.raises(ValueError, match="row 7"):
            build_test_code(bad, "row 7")


# ---------------------------------------------------------------- estimator


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (10, 3, 1, 0.3),  # pass@1 is c/n
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 3, 2, 1.0),  # n-c < k: every pair holds a pass
        (200, 0, 100, 0.0),
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert math.isclose(pass_at_k(n, c, k), expected, rel_tol=1e-12)


def test_pass_at_k_rejects_k_above_n_and_bad_counts():
    with pytest.raises(ValueError, match="pass@6"):
        pass_at_k(5, 1, 6)
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 0)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)


def test_score_code_rejects_k_above_samples_before_running_anything():
    with pytest.raises(ValueError, match="pass@2"):
        score_code(BENCHMARK[:1], [GOOD["add"]], ks=(1, 2))
    with pytest.raises(ValueError, match="2 completion entries for 3"):
        score_code(BENCHMARK, [GOOD["add"], GOOD["add"]])


# ---------------------------------------------------------------- end to end


@needs_sandbox
def test_small_benchmark_scored_end_to_end():
    completions = [
        fenced(GOOD["add"]),
        "```python\ndef is_even(n):\n    return n % 2 == 1\n```",  # wrong
        "```python\ndef reverse(s)\n    return s[::-1]\n```",  # syntax error
    ]
    report = score_code(BENCHMARK, completions, workers=2, timeout_s=5)
    overall = report["metrics"]["overall"]
    assert overall["samples"] == 3 and overall["problems"] == 3
    assert math.isclose(overall["pass@1"], 1 / 3)
    assert [(s["index"], s["passed"], s["reason"]) for s in report["samples"]] == [
        (0, True, "passed"),
        (1, False, "failed"),
        (2, False, "error"),
    ]
    assert overall["reasons"] == {"passed": 1, "failed": 1, "error": 1}


@needs_sandbox
def test_several_samples_per_problem_give_pass_at_k():
    completions = [
        [GOOD["add"], "def add(a, b):\n    return a * b\n", fenced(GOOD["add"])],  # c=2 of 3
        ["def is_even(n):\n    return True\n"] * 3,  # c=0
        [GOOD["reverse"], "", "while True:\n    pass\n"],  # c=1; empty -> error; loop -> timeout
    ]
    report = score_code(BENCHMARK, completions, workers=2, timeout_s=2, ks=(1, 2, 3))
    overall = report["metrics"]["overall"]
    assert overall["samples"] == 9
    assert math.isclose(overall["pass@1"], (2 / 3 + 0 + 1 / 3) / 3)
    assert math.isclose(overall["pass@2"], (pass_at_k(3, 2, 2) + 0 + pass_at_k(3, 1, 2)) / 3)
    assert math.isclose(overall["pass@3"], 2 / 3)
    reasons = {(s["index"], s["sample"]): s["reason"] for s in report["samples"]}
    assert reasons[(2, 1)] == "error" and reasons[(2, 2)] == "timeout"


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


@needs_sandbox
def test_file_scoring_writes_the_report_atomically(tmp_path):
    bench = _write_jsonl(tmp_path / "bench.jsonl", BENCHMARK)
    preds = _write_jsonl(
        tmp_path / "preds.jsonl", [{"completion": fenced(GOOD[r["entry_point"]])} for r in BENCHMARK]
    )
    out = tmp_path / "out" / "report.json"
    report = score_predictions_file(bench, preds, out, workers=2)
    assert json.loads(out.read_text()) == report
    assert report["metrics"]["overall"]["pass@1"] == 1.0
    assert "pass@5" not in report["metrics"]["overall"]
    assert [p.name for p in out.parent.iterdir()] == ["report.json"]  # no temp file left


@needs_sandbox
def test_file_scoring_groups_indexed_rows_into_pass_at_k(tmp_path):
    bench = _write_jsonl(tmp_path / "bench.jsonl", BENCHMARK[:2])
    rows = [{"index": i % 2, "completion": GOOD["add"] if i % 2 == 0 else "x = 1"} for i in range(10)]
    preds = _write_jsonl(tmp_path / "preds.jsonl", rows)
    report = score_predictions_file(bench, preds, tmp_path / "r.json", workers=2)
    overall = report["metrics"]["overall"]
    assert (overall["samples"], overall["pass@1"], overall["pass@5"]) == (10, 0.5, 0.5)
    chosen = score_predictions_file(bench, preds, tmp_path / "k.json", workers=2, ks=(2, 3))["metrics"]["overall"]
    assert (chosen["pass@2"], chosen["pass@3"]) == (0.5, 0.5) and "pass@1" not in chosen
    with pytest.raises(ValueError, match="exceeds the 5 samples"):
        score_predictions_file(bench, preds, tmp_path / "x.json", workers=2, ks=(6,))


@pytest.mark.parametrize(
    ("bench_rows", "pred_rows", "message"),
    [
        (
            BENCHMARK,
            ['{"completion": "x"}', "{not json", '{"completion": "y"}'],
            r"preds.jsonl:2: invalid JSON",
        ),
        (
            BENCHMARK,
            [{"completion": "x"}, ["a list"], {"completion": "y"}],
            r"preds.jsonl:2: expected a JSON object",
        ),
        (
            BENCHMARK,
            [{"completion": "x"}, {"text": "y"}, {"completion": "z"}],
            r"preds.jsonl:2: expected a `completion`",
        ),
        (BENCHMARK, [{"completion": "x"}], r"1 prediction rows for 3 benchmark rows"),
        (
            [BENCHMARK[0], {"entry_point": "f", "testcase": []}],
            [{"completion": "x"}] * 2,
            r"bench.jsonl:2: `testcase`",
        ),
        (BENCHMARK[:1], [{"index": 3, "completion": "x"}], r"preds.jsonl:1: index 3 outside"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, bench_rows, pred_rows, message):
    bench = _write_jsonl(tmp_path / "bench.jsonl", bench_rows)
    preds = _write_jsonl(tmp_path / "preds.jsonl", pred_rows)
    out = tmp_path / "report.json"
    with pytest.raises(ValueError, match=message):
        score_predictions_file(bench, preds, out)
    assert not out.exists()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        score_predictions_file(tmp_path / "nope.jsonl", tmp_path / "p.jsonl", tmp_path / "r.json")


@needs_sandbox
def test_evaluate_metric_module_loads_offline_by_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    evaluate = pytest.importorskip("evaluate")
    path = Path(sandbox.__file__).resolve().parent / "metric_modules" / "code_pass_at_k"
    metric = evaluate.load(str(path))
    report = metric.compute(
        predictions=[
            [fenced(GOOD["add"]), "def add(a, b):\n    return 0\n"],
            ["def is_even(n):\n    return True\n"] * 2,
        ],
        references=[BENCHMARK[0]["testcase"], BENCHMARK[1]["testcase"]],
        entry_points=["add", "is_even"],
        k=[1, 2],
    )
    assert report["metrics"]["overall"] == {
        "problems": 2,
        "samples": 4,
        "pass@1": 0.25,
        "pass@2": 0.5,
        "reasons": {"passed": 1, "failed": 3},
    }


def test_helpers_from_another_fenced_block_come_along_without_their_example_calls():
    completion = (
        "First a helper:\n```python\nimport math\n\ndef helper(x):\n    return math.floor(x) * 2\n\n"
        "print(helper(3))\nassert helper(1) == 3\n```\nThen:\n```python\ndef double_all(xs):\n"
        "    return [helper(x) for x in xs]\n```\n"
    )
    code = extract_code(completion, "double_all")
    assert "def helper" in code and "import math" in code and code.rstrip().endswith("return [helper(x) for x in xs]")
    assert "print(" not in code and "assert" not in code
    namespace: dict = {}
    exec(compile(code, "<extracted>", "exec"), namespace)  # noqa: S102 (test-authored code only)
    assert namespace["double_all"]([1.5, 2]) == [2, 4]
