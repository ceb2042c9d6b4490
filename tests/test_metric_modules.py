"""The `evaluate` metric modules load by local path with the hub switched off, and compute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coursegpt_assets.scoring.metric_modules import load_metric, metric_names, metric_path

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import json
from coursegpt_assets.scoring.metric_modules import load_metric
rows = [json.loads(line) for line in open("tests/fixtures/router_gold_small.jsonl")]
golds = [row["completion"] for row in rows]
router = load_metric("router_plan").compute(
    predictions=golds[:4] + ["not json"], references=golds, categories=[row["categories"] for row in rows])
math = load_metric("math_answer").compute(
    predictions=["(C)", "\\boxed{0.5}", "I think 7"], references=["C", "1/2", "8"],
    options=[["a", "b", "c", "d"], None, None], topics=["High--Algebra--Lines", None, None])
print(json.dumps({"router": router["metrics"]["overall"], "categories": sorted(router["by_category"]),
                  "math": math["metrics"]["overall"], "levels": sorted(math["metrics"]["by_level"])}))
"""


def test_metric_names_and_paths():
    assert {"math_answer", "router_plan"} <= set(metric_names())
    assert metric_path("router_plan").is_file()
    with pytest.raises(ValueError, match="unknown metric 'exact_match'.*known: .*router_plan"):
        load_metric("exact_match")


def test_metrics_load_and_compute_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_EVALUATE_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["router"]["samples"] == 5
    assert payload["router"]["json_valid"] == pytest.approx(0.8)
    assert payload["router"]["route_plan_exact"] == 1.0
    assert "math_first" in payload["categories"]
    assert payload["math"] == {"samples": 3, "accuracy": pytest.approx(2 / 3), "seed_exact_match": pytest.approx(1 / 3)}
    assert payload["levels"] == ["high", "unknown"]
