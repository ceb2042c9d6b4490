"""The Dagster UI backend: `dagster-webserver -w workspace.yaml` serves the whole graph over GraphQL.

Every asset of `defs` with its group, the agent- and pair-level partition keys, every asset check,
and the sensors and the schedule, as the webserver (and so the UI) sees them.
"""

from __future__ import annotations

import pytest

from tests.fakes.webserver import LOCATION_NAME, dagster_webserver  # noqa: F401  (fixture)

AGENT_KEYS = ["router", "math", "code"]
AGENT_ASSETS = ["raw_examples", "clean_examples", "dataset_splits", "benchmark", "leaderboard"]
PAIR_ASSETS = ["tuning_dataset", "tuning_job", "adapter", "evaluation_report", "model_card", "published_adapter"]
SENSORS = {"new_adapter_sensor", "vertex_job_sensor", "evaluation_automation_sensor"}
SCHEDULES = {"reevaluation_schedule"}

REPOSITORIES_QUERY = """
{ repositoriesOrError { __typename
    ... on RepositoryConnection { nodes { name location { name }
        assetNodes { assetKey { path } groupName partitionKeys
            assetChecksOrError { __typename ... on AssetChecks { checks { name } } } } } }
    ... on PythonError { message } } }
"""

INSTIGATORS_QUERY = """
query Instigators($selector: RepositorySelector!) {
  sensorsOrError(repositorySelector: $selector) { __typename
    ... on Sensors { results { name } } ... on PythonError { message } }
  schedulesOrError(repositorySelector: $selector) { __typename
    ... on Schedules { results { name cronSchedule } } ... on PythonError { message } }
}
"""


@pytest.fixture(scope="module")
def repository(dagster_webserver):  # noqa: F811
    data = dagster_webserver.graphql(REPOSITORIES_QUERY)["repositoriesOrError"]
    assert data["__typename"] == "RepositoryConnection", data
    repos = [r for r in data["nodes"] if r["location"]["name"] == LOCATION_NAME]
    assert len(repos) == 1, data["nodes"]
    return repos[0]


@pytest.fixture(scope="module")
def asset_nodes(repository) -> dict[str, dict]:
    return {"/".join(node["assetKey"]["path"]): node for node in repository["assetNodes"]}


@pytest.fixture(scope="module")
def graph():
    from coursegpt_assets.definitions import defs

    return defs.resolve_asset_graph()


def test_every_asset_is_served_with_its_group(asset_nodes, graph):
    expected = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert set(asset_nodes) == set(expected)
    assert {name: node["groupName"] for name, node in asset_nodes.items()} == expected
    assert set(AGENT_ASSETS + PAIR_ASSETS) == set(expected)


def test_agent_assets_have_the_agent_partitions(asset_nodes):
    for name in AGENT_ASSETS:
        assert asset_nodes[name]["partitionKeys"] == AGENT_KEYS, name


def test_pair_assets_have_exactly_the_planned_pairs(asset_nodes):
    from coursegpt_assets.defs.partitions import PAIR_PARTITIONS

    planned = PAIR_PARTITIONS.get_partition_keys()
    assert planned and "router__llama31-8b" in planned
    for name in PAIR_ASSETS:
        assert asset_nodes[name]["partitionKeys"] == planned, name


def test_every_asset_check_is_served(asset_nodes, graph):
    expected: dict[str, set[str]] = {}
    for check_key in graph.asset_check_keys:
        expected.setdefault(check_key.asset_key.to_user_string(), set()).add(check_key.name)
    assert expected, "defs declares no asset checks"
    served: dict[str, set[str]] = {}
    for name, node in asset_nodes.items():
        checks = node["assetChecksOrError"]
        assert checks["__typename"] == "AssetChecks", (name, checks)
        if checks["checks"]:
            served[name] = {c["name"] for c in checks["checks"]}
    assert served == expected


def test_sensors_and_schedule_are_served(dagster_webserver, repository):  # noqa: F811
    from coursegpt_assets.definitions import defs

    selector = {"repositoryName": repository["name"], "repositoryLocationName": LOCATION_NAME}
    data = dagster_webserver.graphql(INSTIGATORS_QUERY, {"selector": selector})
    assert data["sensorsOrError"]["__typename"] == "Sensors", data["sensorsOrError"]
    assert data["schedulesOrError"]["__typename"] == "Schedules", data["schedulesOrError"]
    sensors = {s["name"] for s in data["sensorsOrError"]["results"]}
    assert SENSORS <= sensors and sensors == {s.name for s in defs.sensors}
    schedules = {s["name"]: s["cronSchedule"] for s in data["schedulesOrError"]["results"]}
    assert SCHEDULES <= set(schedules) and set(schedules) == {s.name for s in defs.schedules}
    assert all(schedules.values()), schedules
