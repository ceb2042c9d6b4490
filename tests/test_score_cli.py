"""`coursegpt score ...` through argparse: report shapes (a drop-in for the seed's), errors, wiring."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from coursegpt_assets.cli.score import add_score_parser
from coursegpt_assets.scoring import code_eval

FIXTURES = Path(__file__).parent / "fixtures"
ROUTER_GOLD = FIXTURES / "router_gold_small.jsonl"
MATH_BENCH = FIXTURES / "math_bench_small.jsonl"
MATH_PRED = FIXTURES / "math_predictions_small.jsonl"
SEED_BUCKETS = {"overall", "math_first", "four_step", "has_guidance", "has_computation", "advanced"}


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="coursegpt")
    add_score_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _router_predictions(tmp_path: Path) -> Path:
    gold = [json.loads(line) for line in ROUTER_GOLD.read_text().splitlines()]
    preds = [{"completion": row["completion"]} for row in gold]
    preds[1] = {"completion": "```json\n" + gold[1]["completion"] + "\n```"}  # fenced: strict fails
    reordered = json.loads(gold[2]["completion"])
    reordered["route_plan"].reverse()
    preds[2] = reordered  # the object itself
    return _write_jsonl(tmp_path / "pred.jsonl", preds)


def test_score_router_report_is_a_seed_drop_in(tmp_path, capsys):
    out = tmp_path / "reports" / "router.json"
    rc = run_cli(["score", "router", "--gold", str(ROUTER_GOLD), "--predictions", str(_router_predictions(tmp_path)),
                  "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report["metrics"]) == SEED_BUCKETS
    overall = report["metrics"]["overall"]
    assert overall["samples"] == 5
    assert overall["json_valid"] == pytest.approx(4 / 5)
    assert overall["route_plan_exact"] == pytest.approx(3 / 4)
    assert report["lenient"]["overall"]["json_valid"] == 1.0
    assert report["config"]["total_samples"] == 5 and report["config"]["gold_path"] == str(ROUTER_GOLD)
    assert {"checks", "passed", "failed", "missing"} <= set(report["thresholds"])
    assert isinstance(report["error_samples"], list) and report["failure_examples"]
    assert [p.name for p in out.parent.iterdir()] == ["router.json"]  # no temp file left behind
    printed = capsys.readouterr().out
    assert "route_plan_exact" in printed and "lost to formatting alone" in printed and str(out) in printed


def test_score_router_custom_thresholds(tmp_path):
    thresholds = tmp_path / "t.json"
    thresholds.write_text(json.dumps({"overall": {"min": {"json_valid": 0.99}}}))
    out = tmp_path / "r.json"
    assert run_cli(["score", "router", "--gold", str(ROUTER_GOLD), "--predictions", str(_router_predictions(tmp_path)),
                    "--out", str(out), "--thresholds", str(thresholds)]) == 0
    checks = json.loads(out.read_text())["thresholds"]["checks"]
    assert checks == [{"bucket": "overall", "metric": "json_valid", "bound": "min", "threshold": 0.99,
                       "value": pytest.approx(0.8), "status": "fail"}]


def test_mismatched_counts_name_both_files(tmp_path, capsys):
    preds = _write_jsonl(tmp_path / "short.jsonl", [{"completion": "{}"}] * 3)
    out = tmp_path / "r.json"
    rc = run_cli(["score", "router", "--gold", str(ROUTER_GOLD), "--predictions", str(preds), "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert str(ROUTER_GOLD) in err and str(preds) in err and "5 rows" in err and "3" in err
    assert not out.exists()


def test_bad_json_line_names_file_and_line(tmp_path, capsys):
    preds = tmp_path / "pred.jsonl"
    preds.write_text('{"completion": "{}"}\n\n{"completion": oops}\n', encoding="utf-8")
    rc = run_cli(["score", "math", "--benchmark", str(MATH_BENCH), "--predictions", str(preds), "--out", str(tmp_path / "r.json")])
    assert rc == 2
    assert f"{preds}:3: invalid JSON" in capsys.readouterr().err


def test_bad_gold_row_names_file_and_line(tmp_path, capsys):
    gold = _write_jsonl(tmp_path / "gold.jsonl", [{"prompt": "p", "completion": "not json"}])
    preds = _write_jsonl(tmp_path / "pred.jsonl", [{"completion": "{}"}])
    assert run_cli(["score", "router", "--gold", str(gold), "--predictions", str(preds), "--out", str(tmp_path / "r.json")]) == 2
    assert f"{gold}:1: gold completion is not a JSON object" in capsys.readouterr().err


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert run_cli(["score", "math", "--benchmark", str(missing), "--predictions", str(MATH_PRED), "--out", str(tmp_path / "r.json")]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err


def test_score_math_report(tmp_path, capsys):
    out = tmp_path / "math.json"
    assert run_cli(["score", "math", "--benchmark", str(MATH_BENCH), "--predictions", str(MATH_PRED), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["metrics"]["overall"] == {"samples": 5, "accuracy": pytest.approx(0.8), "seed_exact_match": pytest.approx(0.4)}
    assert set(report["metrics"]["by_level"]) == {"primary", "middle", "high", "unknown"}
    assert set(report["metrics"]["by_file"]) == {"math_bench_small"}
    assert report["metrics"]["by_topic"]["High--Intermediate Numbers and Algebra--Equations"]["accuracy"] == 0.0
    assert [s["correct"] for s in report["samples"]] == [True, True, True, False, True]
    assert [s["index"] for s in report["samples"]] == list(range(5))
    assert "seed_exact_match" in capsys.readouterr().out


def test_score_math_several_benchmark_files(tmp_path):
    rows = MATH_BENCH.read_text().splitlines()
    first = tmp_path / "primary__cloze_en.jsonl"
    second = tmp_path / "mixed__single_choice_en.jsonl"
    first.write_text("\n".join(rows[:2]) + "\n")
    second.write_text("\n".join(rows[2:]) + "\n")
    out = tmp_path / "math.json"
    assert run_cli(["score", "math", "--benchmark", str(first), str(second), "--predictions", str(MATH_PRED), "--out", str(out)]) == 0
    by_file = json.loads(out.read_text())["metrics"]["by_file"]
    assert by_file["primary__cloze_en"] == {"samples": 2, "accuracy": 1.0, "seed_exact_match": 0.5}
    assert by_file["mixed__single_choice_en"]["samples"] == 3


def test_score_code_calls_code_eval(tmp_path, monkeypatch, capsys):
    calls = []

    def fake(benchmark_path, predictions_path, out_path, workers=None, ks=None, timeout_s=None):
        calls.append((benchmark_path, predictions_path, out_path, workers, ks, timeout_s))
        return {"metrics": {"overall": {"problems": 2, "samples": 2, "pass@1": 0.5, "reasons": {"passed": 1, "failed": 1}}}}

    monkeypatch.setattr(code_eval, "score_predictions_file", fake)
    rc = run_cli(["score", "code", "--benchmark", "b.jsonl", "--predictions", "p.jsonl", "--out", "r.json", "--workers", "3"])
    assert rc == 0 and calls == [("b.jsonl", "p.jsonl", "r.json", 3, None, None)]
    rc = run_cli(["score", "code", "--benchmark", "humaneval", "--predictions", "p.jsonl", "--out", "r.json",
                  "--k", "1", "3", "--timeout", "2.5"])
    assert rc == 0 and calls[-1] == ("humaneval", "p.jsonl", "r.json", None, (1, 3), 2.5)
    printed = capsys.readouterr().out
    assert "pass@1" in printed and "reason: failed" in printed


@pytest.mark.skipif(code_eval.sandbox_problem() is not None, reason="code sandbox unavailable on this machine")
def test_score_code_end_to_end(tmp_path):
    bench = _write_jsonl(tmp_path / "bench.jsonl", [
        {"instruction": "add", "entry_point": "add", "testcase": ["assert add(1, 2) == 3"]},
        {"instruction": "neg", "entry_point": "neg", "testcase": ["assert neg(2) == -2"]},
    ])
    preds = _write_jsonl(tmp_path / "pred.jsonl", [
        {"completion": "```python\ndef add(a, b):\n    return a + b\n```"},
        {"completion": "def neg(x):\n    return x"},
    ])
    out = tmp_path / "code.json"
    assert run_cli(["score", "code", "--benchmark", str(bench), "--predictions", str(preds), "--out", str(out), "--workers", "2"]) == 0
    report = json.loads(out.read_text())
    assert report["metrics"]["overall"]["pass@1"] == 0.5
    assert [s["passed"] for s in report["samples"]] == [True, False]


def test_project_cli_registers_score():
    cli = pytest.importorskip("coursegpt_assets.cli.main")
    args = cli.build_parser().parse_args(["score", "router", "--gold", "g", "--predictions", "p", "--out", "o"])
    assert args.func.__name__ == "cmd_score_router"


def test_score_math_names_the_file_and_line_of_a_bad_row(tmp_path):
    from coursegpt_assets.agents.math_evaluation import score_math_files

    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"question": "2+3?", "answer": "5"}\n\n{"question": "1+1?", "answer": "2"}\n')
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"completion": "The answer is 5."}\n{"text": "2"}\n')
    with pytest.raises(ValueError, match=rf"^{preds}:2: expected a string or"):
        score_math_files([str(bench)], str(preds), str(tmp_path / "out.json"))
    bad_bench = tmp_path / "bad.jsonl"
    bad_bench.write_text('{"question": "2+3?", "answer": "5"}\n{"question": "no answer"}\n')
    with pytest.raises(ValueError, match=rf"^{bad_bench}:2: "):
        score_math_files([str(bad_bench)], str(preds), str(tmp_path / "out.json"))
    assert not (tmp_path / "out.json").exists()
