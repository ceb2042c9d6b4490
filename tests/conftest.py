"""Shared fixtures: an isolated COURSEGPT_HOME per test, a temp store, and the optional ../shared data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("COURSEGPT_SHARED", PROJECT_ROOT.parent / "shared"))
ARTIFACTS_DIR = PROJECT_ROOT / "tests" / "artifacts"

#: what a gcp user names (README): under COURSEGPT_ENV=gcp definitions refuse to load without every agent's source
NAMED_SOURCES = {
    "COURSEGPT_ROUTER_SOURCE": "hf://Alovestocode/Router-agent-data",
    "COURSEGPT_MATH_SOURCE": "hf://XenArcAI/MathX-5M",
    "COURSEGPT_CODE_SOURCE": "hf://OpenCoder-LLM/opc-sft-stage2:educational_instruct",
}

requires_shared = pytest.mark.skipif(
    not (SHARED_DIR / "data").is_dir(), reason=f"{SHARED_DIR}/data is absent (real project data not available)"
)


def split_key(store, agent: str, split: str) -> str:
    """The key of a split file of the set the agent's splits manifest publishes (one folder per written set);
    `store` is an ArtifactStore or a local store folder."""
    from coursegpt_assets.core import layout

    if isinstance(store, Path):
        manifest = json.loads((store / layout.splits_manifest(agent)).read_text())
    else:
        manifest = store.read_json(layout.splits_manifest(agent))
    return layout.split_keys(manifest, (split,))[split]


def step_failure_text(result) -> str:
    """Every failed step's error of a Dagster result, causes and stack included (Dagster wraps the asset's own
    exception), so a test can assert on what the user reads."""
    failures = result.get_step_failure_events()
    assert failures, "expected a failed step"
    return "\n".join(e.step_failure_data.error.to_string() for e in failures)


def assert_vertex_failure_reported(result, *, partition: str, message: str, job_name: str, stderr: str) -> None:
    """What vertex_job_sensor must do with a failed tuning job: one failed check on the pair that carries
    Vertex's own message, and an ERROR log naming the job."""
    import dagster as dg

    from schedules.sensors import VERTEX_CHECK

    checks = [e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
    assert len(checks) == 1 and checks[0].check_name == VERTEX_CHECK and not checks[0].passed
    assert checks[0].partition == partition and message in checks[0].description
    assert "ERROR" in stderr and message in stderr and job_name in stderr


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own COURSEGPT_HOME/DAGSTER_HOME and the default (fixture) sources."""
    home = tmp_path_factory.mktemp("coursegpt_home")
    monkeypatch.setenv("COURSEGPT_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in ("COURSEGPT_ENV", "COURSEGPT_STORE", "COURSEGPT_ROUTER_SOURCE", "COURSEGPT_MATH_SOURCE",
                "COURSEGPT_CODE_SOURCE", "COURSEGPT_PLAN"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def store(tmp_path):
    from resources.local_store import LocalStore

    return LocalStore(root=str(tmp_path / "store"))


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"{SHARED_DIR}/data is absent")
    return SHARED_DIR


# Shared GCS emulator fixtures (`gcs_emulator`, `gcs_store`), defined in tests/fakes/gcs_emulator.py.
# The evaluation store (`models_home`, `evaluated_store`), defined in tests/fakes/evaluation_store.py.
from tests.fakes.evaluation_store import evaluated_store, models_home  # noqa: E402, F401
from tests.fakes.gcs_emulator import gcs_emulator, gcs_store  # noqa: E402, F401
