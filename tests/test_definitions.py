"""The definitions load, hold the expected graph, and do not import the heavy ML or Google SDKs."""

import json
import subprocess
import sys

from tests.conftest import NAMED_SOURCES, PROJECT_ROOT

HEAVY = ["torch", "transformers", "trl", "peft", "vertexai", "evaluate", "google.cloud.aiplatform", "datasets",
         "bitsandbytes", "dagster_gcp", "matplotlib"]


def test_definitions_load_without_heavy_imports():
    code = (
        "import sys, json, coursegpt_assets.definitions as d\n"
        "d.defs.resolve_asset_graph()\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_asset_graph_and_partitions():
    from coursegpt_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_examples", "clean_examples", "dataset_splits", "tuning_dataset"} <= keys
    for name in ("raw_examples", "clean_examples", "dataset_splits"):
        assert graph.get(dg_key(name)).partitions_def.get_partition_keys() == ["router", "math", "code"]
    assert "router__llama31-8b" in graph.get(dg_key("tuning_dataset")).partitions_def.get_partition_keys()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable:
            assert node.group_name != "default" and node.owners and node.description and node.code_version, key


def dg_key(name):
    import dagster as dg

    return dg.AssetKey(name)


def test_definitions_load_in_the_gcp_environment_without_heavy_imports(tmp_path):
    """COURSEGPT_ENV=gcp wires the cloud resources (Vertex trainer and endpoint, GCS store, HF Hub) at load
    time without touching the network or importing the Google SDKs (secrets resolve at run launch)."""
    import os

    code = (
        "import sys, json, coursegpt_assets.definitions as d\n"
        "d.defs.resolve_asset_graph()\n"
        "r = d.defs.resources\n"
        "print(json.dumps({'types': {k: type(v).__name__ for k, v in r.items()},\n"
        f"                  'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    env = {**os.environ, "COURSEGPT_ENV": "gcp", "COURSEGPT_STORE": "gs://coursegpt-test/forge",
           "COURSEGPT_HOME": str(tmp_path), **NAMED_SOURCES}
    env.pop("GOOGLE_CLOUD_PROJECT", None)
    env.pop("HF_TOKEN", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["types"] == {"store": "GcsStore", "trainer": "VertexTrainer", "inference": "VertexEndpoint",
                               "hub": "HfHub"}
    assert loaded["heavy"] == []


def test_assets_say_whether_they_are_per_agent_or_per_pair_and_runs_say_which_partition():
    from coursegpt_assets.core.plan import default_plan
    from coursegpt_assets.definitions import defs
    from coursegpt_assets.defs.partitions import partition_tags

    graph = defs.resolve_asset_graph()
    scopes = {k.to_user_string(): graph.get(k).tags.get("coursegpt/partitioned_by") for k in graph.get_all_asset_keys()
              if graph.get(k).is_materializable}
    assert scopes["raw_examples"] == "agent" and scopes["leaderboard"] == "agent"
    assert scopes["tuning_job"] == "pair" and scopes["model_card"] == "pair"
    assert set(scopes.values()) == {"agent", "pair"}
    plan = default_plan()
    for pair in plan.planned_pairs:
        assert partition_tags(pair.key) == {
            "coursegpt/agent": pair.agent, "coursegpt/base_model": pair.base_model,
            "coursegpt/family": plan.base_models[pair.base_model].family,
            "coursegpt/smoke": "true" if plan.is_smoke(pair.key) else "false"}
    assert partition_tags("router") == {"coursegpt/agent": "router"} and partition_tags("nope") == {}
