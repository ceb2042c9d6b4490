"""The agent protocol: agents are found through the plan, a broken one is named with its plan key and module,
and what differs per agent (source variable, headline metrics, card wording, score subcommands) is read from it."""

from __future__ import annotations

import argparse
import sys
import textwrap

import pytest
import yaml

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import protocol_members
from coursegpt_assets.cards.builder import build_card, inputs_from_plan
from coursegpt_assets.cli.runner import headline_keys
from coursegpt_assets.cli.score import add_score_parser
from coursegpt_assets.core import settings
from coursegpt_assets.core.plan import PlanError, default_plan, load_plan
from coursegpt_assets.data.benchmark_rows import overlapping_ids
from coursegpt_assets.scoring.leaderboard import best_per_metric
from tests.fakes.publish_artifacts import (
    scored_router_report,
    splits_manifest,
    training_summary,
    tuning_manifest,
)
from tests.fakes.toy_project import toy_plan, write_toy_project


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    """tmp_path importable as a folder of top-level modules, which are forgotten again after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.endswith("_agent"):
            del sys.modules[name]


def plan_with_toy(tmp_path, **toy):
    plan = toy_plan()
    plan["agents"]["toy"].update(toy)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return load_plan(path)


def test_every_planned_agent_lives_in_its_default_module_and_implements_the_protocol():
    plan = default_plan()
    for name in plan.agent_names:
        assert plan.agent_module(name) == f"coursegpt_assets.agents.{name}"
        agent = get_agent(name)
        assert agent.name == name and all(hasattr(agent, member) for member in protocol_members())
    assert {"benchmark_rows", "benchmark_question", "score", "headline_metrics", "source_variable"} <= set(
        protocol_members())


def test_get_agent_imports_the_module_the_plan_names(on_path):
    project = write_toy_project(on_path)
    agent = get_agent("toy", load_plan(project.plan))
    assert agent.name == "toy" and type(agent).__module__ == "toy_agent"


def test_a_missing_module_is_named_with_its_plan_key(tmp_path):
    plan = plan_with_toy(tmp_path, module="nowhere.toy_agent")
    with pytest.raises(PlanError, match=r"^training plan agents\.toy: module nowhere\.toy_agent is not importable "
                                        r"\(no module 'nowhere'\); set agents\.toy\.module"):
        get_agent("toy", plan)


def test_an_agent_module_must_define_a_complete_agent(on_path):
    (on_path / "empty_agent.py").write_text('"""No AGENT here."""\n')
    (on_path / "half_agent.py").write_text(textwrap.dedent("""
        class Half:
            name = "toy"
            system_prompt = "..."

        AGENT = Half()
    """))
    with pytest.raises(PlanError, match="module empty_agent defines no AGENT"):
        get_agent("toy", plan_with_toy(on_path, module="empty_agent"))
    with pytest.raises(PlanError, match=r"module half_agent: AGENT lacks source_variable, preview_columns, .*score"):
        get_agent("toy", plan_with_toy(on_path, module="half_agent"))


def test_an_agent_outside_the_plan_is_refused():
    with pytest.raises(PlanError, match=r"agent 'toy' is not in the training plan \(agents: router, math, code\)"):
        get_agent("toy")


def test_the_module_key_must_be_a_dotted_import_path(tmp_path):
    with pytest.raises(PlanError, match=r"agents\.toy\.module: String should match pattern"):
        plan_with_toy(tmp_path, module="toy agent.py")


def test_the_source_comes_from_the_agents_own_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEGPT_TOY_SOURCE", str(tmp_path / "toy.jsonl"))
    assert settings.source_for("toy", "COURSEGPT_TOY_SOURCE") == str(tmp_path / "toy.jsonl")
    monkeypatch.delenv("COURSEGPT_TOY_SOURCE")
    with pytest.raises(settings.SettingsError, match="COURSEGPT_TOY_SOURCE is not set"):
        settings.source_for("toy", "COURSEGPT_TOY_SOURCE")
    assert settings.source_for("router", get_agent("router").source_variable).endswith("fixtures/router.jsonl")


def test_the_leakage_check_compares_each_agents_own_question():
    router, code = get_agent("router"), get_agent("code")
    rows = [{"id": "a", "user_query": "  Plan MY week ", "instruction": "other"}, {"id": "b", "user_query": "x"}]
    assert overlapping_ids(router, rows, {"plan my week"}) == ["a"]
    assert overlapping_ids(code, rows, {"plan my week"}) == [] and overlapping_ids(code, rows, {"other"}) == ["a"]


def test_the_run_summary_shows_the_runners_numbers_and_each_agents_headline():
    keys = headline_keys(["router", "code"])
    assert keys[:3] == ("dagster/row_count", "final_loss", "wall_time_s")
    assert set(get_agent("router").headline_metrics) | {"pass@1"} <= set(keys) and "accuracy" not in keys


def test_the_leaderboard_minimises_the_agents_lower_is_better_metrics():
    rows = [{"evaluated": True, "base_model": m, "headline": {"long": v, "acc": v}} for m, v in (("a", 0.1), ("b", 0.4))]
    best = best_per_metric(rows, frozenset({"long"}))
    assert best["long"] == {"base_models": ["a"], "value": 0.1, "direction": "min"}
    assert best["acc"]["base_models"] == ["b"]
    assert get_agent("router").lower_is_better >= {"length_ratio_gt_1.1"} and not get_agent("math").lower_is_better


def test_score_subcommands_are_the_agents_with_a_file_scorer():
    parser = argparse.ArgumentParser(prog="coursegpt")
    score = add_score_parser(parser.add_subparsers(dest="command", required=True))
    kinds = next(a for a in score._actions if isinstance(a, argparse._SubParsersAction))
    assert list(kinds.choices) == [n for n in default_plan().agent_names if get_agent(n).score_command]


@pytest.mark.parametrize("pair, synthetic", [("router__tiny-llama", True), ("code__tiny-llama", False)])
def test_the_card_takes_its_wording_from_the_agent(pair, synthetic):
    agent_name = pair.split("__")[0]
    report, report_md = scored_router_report(pair)
    inputs = inputs_from_plan(
        default_plan(), pair, repo_id=f"org/{pair}", summary=training_summary(pair, "/tmp/base"), report=report,
        report_markdown=report_md, tuning_manifest=tuning_manifest(pair), splits_manifest=splits_manifest(agent_name))
    card = build_card(inputs)
    assert get_agent(agent_name).intended_use in card
    assert ("is synthetic (generated by a large model)" in card) is synthetic
