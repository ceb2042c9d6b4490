import json

import pytest

from coursegpt_assets.agents.base import tuning_row
from coursegpt_assets.agents.router import AGENT, COMPLETION_KEYS, validate
from coursegpt_assets.core.settings import FIXTURES_DIR


@pytest.fixture
def record():
    for line in (FIXTURES_DIR / "router.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not validate(rec):
            return rec
    raise AssertionError("fixture holds no valid record")


def test_fixture_record_is_valid(record):
    assert validate(record) == []


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.pop("route_plan"), "missing required key 'route_plan'"),
        (lambda r: r.update(route_plan="/math(x)"), "route_plan: expected list of strings, got str"),
        (lambda r: r.update(route_plan=["/browser(x)"]), "unknown tool '/browser'"),
        (lambda r: r.update(difficulty="expert"), "difficulty 'expert' is not one of"),
        (lambda r: r.update(user_query="   "), "user_query is empty"),
        (lambda r: r.update(metrics={"primary": "x", "secondary": []}), "metrics.primary: expected a list"),
        (lambda r: r.update(quality_score="high"), "quality_score: expected number, got str"),
        (lambda r: r.update(requires_browse="yes"), "requires_browse: expected boolean"),
        (lambda r: r.update(tags=["ok", 3]), "tags: expected list of strings, found a non-string item"),
        (lambda r: r.update(quality_score=140), "quality_score 140 is outside 0-100"),
    ],
)
def test_each_schema_violation_has_a_readable_reason(record, mutate, reason):
    mutate(record)
    assert any(reason in p for p in validate(record)), validate(record)


def test_optional_fields_may_be_absent(record):
    for key in ("task_summary", "quality_score", "compute_budget", "repro", "requires_browse", "citation_policy",
                "io_schema"):
        record.pop(key, None)
    assert validate(record) == []


def test_tuning_row_has_the_seed_prompt_and_ten_key_completion(record):
    row = tuning_row(AGENT, record, "llama3")
    assert row["prompt"].startswith("You are the Router Agent coordinating Math, Code, and General-Search")
    assert row["prompt"].endswith(f"User query:\n{record['user_query']}\n")
    assert list(json.loads(row["completion"])) == list(COMPLETION_KEYS)
    assert row["text_completion"].endswith("<|eot_id|>")
    assert row["text_completion"] == row["completion"] + "<|eot_id|>"


def test_think_wrapping_puts_the_outline_before_the_json(record):
    row = tuning_row(AGENT, record, "qwen", think=True)
    assert row["completion"].startswith("<think>\n" + record["thinking_outline"][0])
    assert json.loads(row["completion"].split("</think>\n", 1)[1])["route_plan"] == record["route_plan"]


def test_prompt_and_completion_split_the_rendering_for_every_family():
    from coursegpt_assets.core.chat_templates import FAMILIES, build_messages, prompt_and_completion, render

    cases = [("sys", "user", "answer"), ("  padded system \n", "\tuser with {{ braces }} and {% tags %}\n", " é ✓ "),
             ("s", "line1\nline2", '{"a": "<|eot_id|>"}'), ("s", "contains \x00 nul", "x")]
    for name, fam in FAMILIES.items():
        kwargs = fam.template_kwargs(think=False)
        for system, user, assistant in cases:
            prompt, completion = prompt_and_completion(name, system, user, assistant)
            assert prompt == render(name, build_messages(system, user), add_generation_prompt=True, **kwargs)
            assert prompt + completion == render(name, build_messages(system, user, assistant), **kwargs)
