"""Model card contents, metadata round-trip and secret-freeness (coursegpt_assets.cards.builder)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, ModelCardData

from coursegpt_assets.agents import get_agent
from coursegpt_assets.cards.builder import CardError, build_card, inputs_from_plan
from coursegpt_assets.cards.validation import validate_card
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.secrets_scan import find_secrets, scrub
from tests.fakes.publish_artifacts import (
    VERTEX_DATA_STATS,
    VERTEX_JOB,
    scored_router_report,
    splits_manifest,
    training_summary,
    tuning_manifest,
    vertex_training_summary,
)

ORG = "CourseGPT-Pro-DSAI-Lab-Group-6"
SECTIONS = ("Summary", "Intended use and limits", "Training data", "Training procedure", "Evaluation",
            "How to load the adapter", "Citation")
HF_TOKEN = "hf_" + "Q7rT2mX9vLp4Kd8sWz1nB6cY3hJ0fGaEuR"


def make_inputs(pair: str, *, summary_overrides: dict | None = None, report_md_extra: str = "", headline=None,
                summary: dict | None = None):
    agent = pair.split("__")[0]
    report, report_md = scored_router_report(pair)
    if headline is not None:
        report["headline"] = headline
    return inputs_from_plan(
        default_plan(), pair, repo_id=f"{ORG}/{pair.replace('__', '-')}-peft",
        summary=summary or training_summary(pair, "/root/.cache/coursegpt/base", **(summary_overrides or {})),
        report=report, report_markdown=report_md + report_md_extra,
        tuning_manifest=tuning_manifest(pair), splits_manifest=splits_manifest(agent),
    )


def section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"section {title!r} missing"
    return m.group(1)


# TRL settings a Vertex job never receives: a Vertex adapter's card must not claim them
LOCAL_ONLY = ("lora_dropout", "warmup_ratio", "batch_size", "learning_rate", "max_length", "target_modules",
              "gradient_accumulation_steps", "lora_alpha")


@pytest.fixture(scope="module")
def llama_card() -> tuple[str, object]:
    """A Vertex AI adapter's card (its summary as collect_vertex_export writes it)."""
    inputs = make_inputs("router__llama31-8b", summary=vertex_training_summary(
        "router__llama31-8b", data_stats=VERTEX_DATA_STATS))
    return build_card(inputs), inputs


def table_row(text: str, name: str) -> list[str] | None:
    """The cells after the first of the Markdown table row named `name`."""
    m = re.search(rf"^\| {re.escape(name)} \| (.+) \|$", text, re.M)
    return m.group(1).split(" | ") if m else None


def test_card_metadata_comes_from_the_plan_and_report(llama_card):
    text, inputs = llama_card
    data = ModelCard(text).data
    assert data.base_model == "meta-llama/Llama-3.1-8B-Instruct"
    assert data.library_name == "peft"
    assert data.license == default_plan().license
    assert data.pipeline_tag == "text-generation"
    assert data.datasets == ["Alovestocode/Router-agent-data"]
    assert {"router", "lora", "peft", "vertex-ai"} <= set(data.tags)
    assert "smoke-test" not in data.tags and "trl" not in data.tags
    assert data.model_name == "router-llama31-8b-peft"
    got = {r.metric_type: r.metric_value for r in data.eval_results}
    assert got == inputs.report["headline"] and len(got) == 5
    assert all(r.task_type == "text-generation" and r.dataset_split == "test" for r in data.eval_results)


def test_card_body_has_every_section_with_the_artifacts_numbers(llama_card):
    text, inputs = llama_card
    body = ModelCard(text).text
    assert [h for h in re.findall(r"^## (.+)$", body, re.M) if h in SECTIONS] == list(SECTIONS)
    assert "llama3.1" in section(body, "Summary")  # the base model's own licence is named
    data = section(body, "Training data")
    for split, n in inputs.splits_manifest["counts"].items():
        assert f"| {split} | {n} |" in data
    assert inputs.tuning_manifest["data_version"] in data and inputs.splits_manifest["content_hash"] in data
    evaluation = section(body, "Evaluation")
    for metric, value in inputs.report["headline"].items():
        row = re.search(rf"^\| {re.escape(metric)} \| ([0-9.]+) \|$", evaluation, re.M)
        assert row and float(row.group(1)) == pytest.approx(value, abs=1e-4)
    assert "#### overall (40 samples)" in evaluation  # the report's own tables, nested under Evaluation
    assert "Alovestocode/Router-agent-data" in section(body, "Citation")


def test_vertex_card_states_the_settings_sent_to_vertex_and_what_the_job_reported(llama_card):
    text, inputs = llama_card
    procedure = section(ModelCard(text).text, "Training procedure")
    job = inputs.summary["vertex_job"]
    sent_as = {"source_model": "baseModel", "epochs": "hyperParameters.epochCount",
               "learning_rate_multiplier": "hyperParameters.learningRateMultiplier",
               "adapter_size": "hyperParameters.adapterSize", "tuning_mode": "supervisedTuningSpec.tuningMode"}
    for name, field in sent_as.items():
        value, shown_field = table_row(procedure, name)
        assert shown_field == f"`{field}`"
        if isinstance(job[name], (int, float)):
            assert float(value) == pytest.approx(job[name])
        else:
            assert value == job[name]
    assert table_row(procedure, "train_sha256")[0] == f"`{job['train_sha256']}`"
    assert table_row(procedure, "adapter_size")[0] == str(default_plan().hyperparameters.lora_rank)
    for name in LOCAL_ONLY:  # nothing Vertex never received is described as trained with
        assert table_row(procedure, name) is None, name
    assert "loss_curve.png" not in text and "![Training loss]" not in text
    # the job: its resource name, a console link, tuned model, endpoint and duration as Vertex reported them
    assert table_row(procedure, "Tuning job") == [f"`{VERTEX_JOB}`"]
    assert table_row(procedure, "Console") == [f"[7000000000000000123]({inputs.summary['console_url']})"]
    assert table_row(procedure, "Endpoint") == [f"`{inputs.summary['endpoint']}`"]
    assert table_row(procedure, "Job duration") == ["3 h 0 min 12 s (10812.0 s)"]
    assert table_row(procedure, "Tuning steps") == ["870"] and table_row(procedure, "Tuning examples") == ["6962"]
    assert table_row(procedure, "Examples Vertex dropped (too long or invalid)") == ["3"]
    assert table_row(procedure, "Training loss") == ["not reported by Vertex"]
    assert "User query:" in section(ModelCard(text).text, "Training data")  # the prompt format it tuned on
    # the load snippet builds the prompt exactly as the tuning rows' `prompt`, not with the chat template
    code = re.search(r"```python\n(.*?)```", section(text, "How to load the adapter"), re.S).group(1)
    assert "apply_chat_template" not in code
    built: dict = {}
    exec("\n".join(line for line in code.splitlines() if line.startswith(("SYSTEM_PROMPT =", "prompt ="))), built)
    assert built["prompt"] == get_agent("router").vertex_prompt({"user_query": "..."})
    assert validate_card(text) == []


def test_vertex_card_without_job_metrics_says_not_reported_by_vertex():
    summary = vertex_training_summary("router__llama31-8b", data_stats={}, endpoint=None, wall_time_s=None,
                                      job_start_time=None, job_end_time=None)
    procedure = section(build_card(make_inputs("router__llama31-8b", summary=summary)), "Training procedure")
    for name in ("Tuning steps", "Tuning examples", "Billable tokens", "Training loss", "Job duration"):
        assert table_row(procedure, name) == ["not reported by Vertex"], name
    assert table_row(procedure, "Endpoint") == ["none deployed by the job"]


def test_vertex_card_from_an_older_summary_shows_only_what_vertex_received():
    plan_hp = training_summary("router__llama31-8b", "/base")["hyperparameters"]  # every local setting too
    summary = vertex_training_summary("router__llama31-8b", hyperparameters=plan_hp, vertex_job=None)
    procedure = section(build_card(make_inputs("router__llama31-8b", summary=summary)), "Training procedure")
    assert table_row(procedure, "epochs") == [str(plan_hp["epochs"]), "`hyperParameters.epochCount`"]
    assert all(table_row(procedure, name) is None for name in LOCAL_ONLY)


def test_local_card_states_the_trl_settings_and_shows_the_loss_curve():
    inputs = make_inputs("router__tiny-llama")
    text = build_card(inputs)
    procedure = section(ModelCard(text).text, "Training procedure")
    for name, value in inputs.summary["hyperparameters"].items():
        row = table_row(procedure, name)
        assert row, f"hyperparameter {name} missing"
        if isinstance(value, list):
            assert row == [", ".join(value)]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert float(row[0]) == pytest.approx(value)
    assert "![Training loss](loss_curve.png)" in procedure
    assert table_row(procedure, "Final training loss") == ["4.8612"] and table_row(procedure, "Optimizer steps")
    assert "Vertex" not in procedure and "Tuning job" not in procedure
    assert "apply_chat_template" in section(text, "How to load the adapter")


def test_peft_snippet_is_python_that_loads_this_repo(llama_card):
    text, inputs = llama_card
    code = re.search(r"```python\n(.*?)```", section(text, "How to load the adapter"), re.S).group(1)
    tree = ast.parse(code)
    calls = {ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert f"PeftModel.from_pretrained(base, '{inputs.repo_id}')" in calls
    assert any(c.startswith("AutoModelForCausalLM.from_pretrained('meta-llama/Llama-3.1-8B-Instruct'") for c in calls)


def test_a_qwen3_card_loads_with_the_template_variables_it_was_trained_with():
    text = build_card(make_inputs("router__qwen3-32b", summary_overrides={"chat_template_kwargs": {"enable_thinking": False}}))
    code = re.search(r"```python\n(.*?)```", section(text, "How to load the adapter"), re.S).group(1)
    [call] = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith(
        "apply_chat_template")]
    assert {k.arg: ast.literal_eval(k.value) for k in call.keywords}["enable_thinking"] is False
    plain = build_card(make_inputs("router__llama31-8b"))
    assert "enable_thinking" not in plain


def test_tiny_llama_card_says_it_is_a_smoke_test_model():
    text = build_card(make_inputs("router__tiny-llama"))
    card = ModelCard(text)
    assert "smoke-test" in card.data.tags and "trl" in card.data.tags
    before_summary = card.text.split("## Summary")[0]
    assert "smoke-test model" in before_summary.lower()
    assert "meaningless" in before_summary
    assert validate_card(text) == []


def test_metadata_round_trips_through_huggingface_hub(llama_card, tmp_path):
    text, _ = llama_card
    assert validate_card(text) == []
    path = tmp_path / "README.md"
    path.write_text(text)
    loaded = ModelCard.load(path)
    data = loaded.data.to_dict()
    assert ModelCardData(**data).to_dict() == data
    assert str(loaded) == text  # saving what was loaded changes nothing


def test_validate_card_reports_broken_metadata(llama_card):
    text, _ = llama_card
    body = ModelCard(text).text
    assert validate_card(body) == ["metadata: no YAML front matter (--- ... ---) at the top of README.md"]
    assert any("not valid YAML" in p for p in validate_card("---\nlicense: [mit\n---\n" + body))
    no_lora = text.replace("\n- lora\n", "\n", 1)
    assert validate_card(no_lora) == ["metadata: tag 'lora' is missing"]
    no_index = re.sub(r"model-index:.*?\n---", "---", text, flags=re.S)
    assert "metadata: 'model-index' is missing or empty" in validate_card(no_index)
    unsmoked = text.replace("- router-agent", "- smoke-test", 1)
    assert validate_card(unsmoked) == ["body: tagged 'smoke-test' but never says it is a smoke-test model"]


def test_unmeasured_metric_is_named_in_the_body_and_left_out_of_the_model_index():
    text = build_card(make_inputs("router__gemma3-27b", headline={"json_valid": 0.0, "route_plan_exact": None}))
    assert validate_card(text) == []
    card = ModelCard(text)
    assert [r.metric_type for r in card.data.eval_results] == ["json_valid"]
    assert re.search(r"route_plan_exact\s*\|\s*not measured", card.text)
    with pytest.raises(CardError, match="measured none of its headline metrics"):
        build_card(make_inputs("router__gemma3-27b", headline={"route_plan_exact": None}))


def test_a_non_finite_number_in_the_model_index_fails_validation():
    text = build_card(make_inputs("router__gemma3-27b", headline={"json_valid": 1.0, "route_plan_exact": 0.5}))
    broken = re.sub(r"(value: )0\.5\b", r"\g<1>.nan", text, count=1)
    assert broken != text
    assert validate_card(broken) == ["model-index: metric 'route_plan_exact' has no finite numeric value (nan)"]


def test_card_builder_rejects_reports_without_headline_and_unknown_backends():
    with pytest.raises(CardError, match="no headline metrics"):
        build_card(make_inputs("router__qwen3-32b", headline={}))
    with pytest.raises(CardError, match="backend 'ollama'"):
        build_card(make_inputs("router__qwen3-32b", summary_overrides={"backend": "ollama"}))


def test_tokens_and_local_paths_in_inputs_are_scrubbed_from_the_card():
    leaky = make_inputs(
        "router__tiny-llama",
        summary_overrides={"hardware": f"cpu (HF_TOKEN={HF_TOKEN})", "device": "/home/alice/runs/cpu0"},
        report_md_extra="\nPredictions: /tmp/pytest-of-root/preds.jsonl, key ya29.a0AfB_byC1234567890abcdef\n",
    )
    text = build_card(leaky)
    assert HF_TOKEN not in text and "ya29." not in text and "/home/alice" not in text and "/tmp/" not in text
    assert "/root/.cache" not in text  # the summary's base_model_id
    assert "<redacted>" in text and "<local path>/preds.jsonl" in text
    assert find_secrets(text) == [] and validate_card(text) == []


def test_paths_under_this_checkout_are_scrubbed_wherever_it_was_cloned():
    # a CI runner may clone to /check/..., /builds/... (roots no fixed list knows); this file's own path leaks the same
    here = str(Path(__file__).resolve())
    assert scrub(f"Source: `{here}`") == f"Source: `<local path>/{Path(here).name}`"
    assert [f.kind for f in find_secrets(here)] == ["local absolute path"]


def test_validate_card_rejects_secrets_without_repeating_them(llama_card):
    text, _ = llama_card
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    leaky = text + f"\nToken: {HF_TOKEN}\nWeights in C:\\Users\\bob\\adapters\n{key}\n"
    problems = validate_card(leaky)
    kinds = [p.split(": ", 1)[1] for p in problems]
    assert kinds == ["Hugging Face token", "local absolute path (C:/…)", "private key block"]
    assert all(p.startswith("README.md line ") for p in problems)
    assert not any(HF_TOKEN in p or "MIIEv" in p or "bob" in p for p in problems)


@pytest.mark.parametrize("ordinary", [
    "https://huggingface.co/datasets/Alovestocode/Router-agent-data",
    '/math(Work out the derivation) then /code(..., using Python) and /general-search(query="x", mode=web)',
    "hf_id: local/tiny-llama; total_token_count 123; max_new_tokens: 64",
    "relative data/router/router_benchmark_hard.jsonl and gs://bucket/tmp/adapters",
    "| learning_rate | 0.0002 |",
    "a bare /tmp or /home names no machine",
])
def test_ordinary_card_text_is_not_mistaken_for_a_secret(ordinary):
    assert find_secrets(ordinary) == []
    assert scrub(ordinary) == ordinary
