"""Dagster's own project CLI on this project: `dg check defs`, `dg list defs` and `dg scaffold defs`.

`[tool.dg.project]` names `coursegpt_assets.defs` as the defs folder and `coursegpt_assets.definitions` as
the code location, so a scaffolded module lands in a stage folder and `definitions.py` loads it unlisted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).with_name("dg")


def _dg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "NO_COLOR": "1"}
    return subprocess.run([str(DG), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def _assets(cwd: Path) -> set[str]:
    listed = _dg("list", "defs", "--json", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    return {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}


def test_dg_check_and_list_defs():
    checked = _dg("check", "defs", cwd=ROOT)
    assert checked.returncode == 0, checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    assert {"raw_examples", "tuning_job", "evaluation_report", "model_card", "leaderboard"} <= _assets(ROOT)


def test_a_scaffolded_asset_is_loaded_without_editing_definitions(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(".git", ".venv", ".coursegpt", "__pycache__",
                                                                 ".pytest_cache"))
    scaffolded = _dg("scaffold", "defs", "dagster.asset", "evaluation/calibration.py", cwd=project)
    assert scaffolded.returncode == 0, scaffolded.stderr
    assert (project / "coursegpt_assets/defs/evaluation/calibration.py").is_file()
    assert "calibration" in _assets(project)
