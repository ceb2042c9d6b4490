"""What a cloud user sets is read from the environment once (core/settings.py) and reaches both Vertex
resources through resources_for, so nobody edits code: COURSEGPT_VERTEX_LOCATION, COURSEGPT_VERTEX_API_ENDPOINT,
COURSEGPT_GCP_CREDENTIALS and COURSEGPT_PLAN. A bad value is a one-line error that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from coursegpt_assets.cli.main import main
from coursegpt_assets.core import settings
from coursegpt_assets.core.plan import DEFAULT_PLAN_PATH, default_plan
from coursegpt_assets.core.settings import SettingsError
from resources import resources_for
from resources.tuning import VertexTrainer
from resources.vertex_endpoint import VertexEndpoint
from tests.conftest import NAMED_SOURCES, PROJECT_ROOT
from tests.fakes.tuning_store import plan_copy
from tests.fakes.vertex_server import FakeVertexServer

VARIABLES = ("COURSEGPT_VERTEX_LOCATION", "COURSEGPT_VERTEX_API_ENDPOINT", "COURSEGPT_GCP_CREDENTIALS",
             "GOOGLE_CLOUD_PROJECT")


@pytest.fixture
def gcp(monkeypatch):
    monkeypatch.setenv("COURSEGPT_ENV", "gcp")
    monkeypatch.setenv("COURSEGPT_STORE", "gs://coursegpt-test/forge")
    for name, value in NAMED_SOURCES.items():
        monkeypatch.setenv(name, value)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def vertex_fields(resource) -> tuple:
    return resource.location, resource.api_endpoint, resource.credentials


def test_defaults_are_the_public_region_endpoint_and_adc(gcp):
    current = settings.current()
    assert (current.vertex_location, current.vertex_api_endpoint, current.gcp_credentials) == (
        "us-central1", None, "adc")
    assert current.plan == DEFAULT_PLAN_PATH.resolve()
    resources = resources_for(current)
    assert vertex_fields(resources["trainer"].vertex) == vertex_fields(resources["inference"]) == (
        "us-central1", None, "adc")


def test_resources_for_gcp_carry_the_variables_into_both_vertex_resources(gcp):
    gcp.setenv("COURSEGPT_VERTEX_LOCATION", "europe-west4")
    gcp.setenv("COURSEGPT_VERTEX_API_ENDPOINT", "europe-west4-aiplatform-coursegpt.p.googleapis.com")
    gcp.setenv("COURSEGPT_GCP_CREDENTIALS", "Anonymous")  # case does not matter
    resources = resources_for(settings.current())
    assert isinstance(resources["trainer"], VertexTrainer) and isinstance(resources["inference"], VertexEndpoint)
    expected = ("europe-west4", "europe-west4-aiplatform-coursegpt.p.googleapis.com", "anonymous")
    assert vertex_fields(resources["trainer"].vertex) == vertex_fields(resources["inference"]) == expected


def test_a_stand_in_is_reached_through_the_variables_alone(gcp):
    """No code edit: the variables point the real SDK at a loopback Vertex, in the configured region."""
    with FakeVertexServer() as server:
        gcp.setenv("COURSEGPT_VERTEX_LOCATION", "asia-northeast1")
        gcp.setenv("COURSEGPT_VERTEX_API_ENDPOINT", server.endpoint + "/")
        gcp.setenv("COURSEGPT_GCP_CREDENTIALS", "anonymous")
        gcp.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
        defined = resources_for(settings.current())
        with dg.build_resources({"trainer": defined["trainer"]}) as built:
            assert built.trainer.vertex.list_jobs() == []
        assert server.requests[-1][1] == "/v1beta1/projects/from-env/locations/asia-northeast1/tuningJobs"


@pytest.mark.parametrize(("name", "value"), [
    ("COURSEGPT_VERTEX_LOCATION", "US Central"),
    ("COURSEGPT_VERTEX_LOCATION", "us-central"),
    ("COURSEGPT_VERTEX_API_ENDPOINT", "ftp://127.0.0.1:21"),
    ("COURSEGPT_VERTEX_API_ENDPOINT", "http://127.0.0.1:8080/v1"),
    ("COURSEGPT_VERTEX_API_ENDPOINT", "not a host"),
    ("COURSEGPT_GCP_CREDENTIALS", "service-account.json"),
    ("COURSEGPT_PLAN", "/nonexistent/training_plan.yaml"),
])
def test_a_bad_value_is_a_one_line_error_naming_the_variable(gcp, capsys, name, value):
    gcp.setenv(name, value)
    with pytest.raises(SettingsError, match=f"^{name}="):
        settings.current()
    assert main(["plan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"coursegpt: error: {name}=") and "\n" not in err


@pytest.fixture
def other_plan(tmp_path, monkeypatch):
    """A plan with only the router's tiny pair and 5 epochs, named by COURSEGPT_PLAN."""
    def edit(raw):
        raw["pairs"] = {"router": ["tiny-llama"]}
        raw["hyperparameters"]["epochs"] = 5

    yield plan_copy(tmp_path / "other_plan.yaml", edit, monkeypatch=monkeypatch)
    default_plan.cache_clear()


def test_coursegpt_plan_is_honoured_by_settings_the_cli_and_a_fresh_definitions_load(other_plan, capsys):
    assert settings.current().plan == other_plan.resolve()
    assert default_plan().pair_keys == ["router__tiny-llama"]
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "epochs=5" in out and "router__tiny-llama" in out and "llama31-8b" not in out
    # a new process (a run worker, the code server) loads the definitions from the same plan
    code = ("from coursegpt_assets.definitions import defs; from coursegpt_assets.defs.partitions import "
            "PAIR_PARTITIONS; print(PAIR_PARTITIONS.get_partition_keys())")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['router__tiny-llama']"
