"""Real base models are trained and served on their own chat templates, rendered exactly as `transformers`'
`apply_chat_template` renders them.

Each real family gets a small tokenizer carrying its official template and special tokens
(tests/fakes/family_tokenizers.py). For a router, a math and a code row, the tuning text must equal
`apply_chat_template`'s output (the prompt: the generation prompt; prompt + completion: the whole
conversation), inference must send that same prompt, and the end-of-turn token must be a trained label.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import dagster as dg
import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import tuning_row
from coursegpt_assets.core import layout
from coursegpt_assets.core.chat_templates import FAMILIES, OFFICIAL_DIR, build_messages, family
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.defs.data.assets import DATA_ASSETS
from coursegpt_assets.defs.tuning.assets import tuning_dataset
from coursegpt_assets.training.labels import (
    IGNORE_INDEX,
    completion_labels,
    prepare_pair,
    terminator_is_trained,
)
from resources.inference import GenerationRequest
from tests.conftest import split_key
from tests.fakes.family_tokenizers import FAMILY_TOKENS, family_tokenizer

AGENTS = ("router", "math", "code")
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "coursegpt_assets" / "core" / OFFICIAL_DIR
#: each real family's base-model template, read from the shipped file, not through the code under test
OFFICIAL_FILES = {"llama3": "Llama-3.1-8B-Instruct.jinja", "gemma": "gemma-3-27b-it.jinja",
                  "qwen": "Qwen3-32B.jinja", "llama4": "Llama-4-Scout-17B-16E-Instruct.jinja"}
REAL = sorted(OFFICIAL_FILES)
#: the `apply_chat_template` variables of a row without a reasoning block; Qwen3 is asked not to think
NO_THINK = {"qwen": {"enable_thinking": False}}
LLAMA31_HEADER = ("<|start_header_id|>system<|end_header_id|>\n\n"
                  "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n")


@pytest.fixture(scope="module")
def tokenizers():
    """Per family: its special tokens and its official template, as `apply_chat_template` will use them."""
    return {name: family_tokenizer(name, chat_template=(TEMPLATES_DIR / file).read_text(encoding="utf-8"))
            for name, file in OFFICIAL_FILES.items()}


@pytest.fixture(scope="module")
def records():
    """The first valid fixture record of each agent, cleaned, with its id."""
    out = {}
    for name in AGENTS:
        agent = get_agent(name)
        for raw in agent.load_raw(str(FIXTURES_DIR / f"{name}.jsonl"), seed=0, subset_size=None):
            if raw.record is not None and not agent.validate(raw.record):
                rec = agent.clean_record(raw.record)
                out[name] = {**rec, "id": agent.record_id(rec, raw.line)}
                break
    assert set(out) == set(AGENTS)
    return out


def _chat(tokenizer, messages, **kwargs) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def _conversation(agent_name: str, record: dict, completion: str | None = None) -> list[dict]:
    agent = get_agent(agent_name)
    answer = agent.assistant_text(record) if completion is None else completion
    return build_messages(agent.system_prompt, agent.user_text(record), answer)


def test_real_families_use_the_shipped_official_files():
    sources = (TEMPLATES_DIR / "SOURCES.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `([^`]+\.jinja)` \|.*\| `([0-9a-f]{64})` \|$", sources, re.M))
    shipped = {p.name for p in TEMPLATES_DIR.glob("*.jinja")}
    assert set(listed) == shipped == set(OFFICIAL_FILES.values())
    assert set(OFFICIAL_FILES) == set(FAMILY_TOKENS) == set(FAMILIES) - {"tiny"}
    for name, file in OFFICIAL_FILES.items():
        fam, data = family(name), (TEMPLATES_DIR / file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == listed[file], f"{file} was edited"
        assert fam.official_file == file and fam.template == data.decode("utf-8")
        assert fam.template_kwargs(think=False) == NO_THINK.get(name, {})


@pytest.mark.parametrize("agent_name", AGENTS)
@pytest.mark.parametrize("name", REAL)
def test_training_text_is_what_apply_chat_template_renders(tokenizers, records, name, agent_name):
    tokenizer, record = tokenizers[name], records[agent_name]
    row = tuning_row(get_agent(agent_name), record, name)
    messages = _conversation(agent_name, record)
    kwargs = NO_THINK.get(name, {})
    assert row["text_prompt"] == _chat(tokenizer, messages[:2], add_generation_prompt=True, **kwargs)
    assert row["text_prompt"] + row["text_completion"] == _chat(tokenizer, messages, **kwargs)


@pytest.mark.parametrize("agent_name", AGENTS)
@pytest.mark.parametrize("name", REAL)
def test_inference_sends_the_prompt_training_used(tokenizers, records, tmp_path, name, agent_name):
    """The adapter's stored template and variables, rendered by inference, give the training prompt."""
    tokenizer, record, fam = tokenizers[name], records[agent_name], family(name)
    row = tuning_row(get_agent(agent_name), record, name)
    (tmp_path / layout.CHAT_TEMPLATE_FILE).write_text(fam.template, encoding="utf-8")  # as sft_child saves it
    conversation = _conversation(agent_name, record)[:2]
    request = GenerationRequest(
        pair=f"{agent_name}__x", base_model="x", base_model_id="x", vertex_model_id=None, adapter_dir=tmp_path,
        adapter_version="v", conversations=[conversation], max_new_tokens=8, end_of_turn=fam.end_of_turn,
        summary={"chat_template_kwargs": fam.template_kwargs(think=False)})
    expected = _chat(tokenizer, conversation, add_generation_prompt=True, **NO_THINK.get(name, {}))
    assert request.prompts(bos_token=tokenizer.bos_token or "") == [expected] == [row["text_prompt"]]


@pytest.mark.parametrize("agent_name", AGENTS)
def test_llama31_opens_with_its_dated_system_header(records, agent_name):
    agent = get_agent(agent_name)
    row = tuning_row(agent, records[agent_name], "llama3")
    assert row["text_prompt"].startswith("<|begin_of_text|>" + LLAMA31_HEADER + agent.system_prompt.strip()
                                         + "<|eot_id|>")


@pytest.mark.parametrize("agent_name", AGENTS)
def test_gemma3_has_no_system_role(records, agent_name):
    agent, record = get_agent(agent_name), records[agent_name]
    row = tuning_row(agent, record, "gemma")
    assert "<start_of_turn>system" not in row["text_prompt"] + row["text_completion"]
    assert row["text_prompt"].startswith("<bos><start_of_turn>user\n" + agent.system_prompt.strip() + "\n\n"
                                         + agent.user_text(record).strip() + "<end_of_turn>\n")
    assert row["text_prompt"].endswith("<start_of_turn>model\n")


def test_qwen3_without_think_wrapping_puts_the_empty_think_block_in_the_prompt(records):
    record = records["router"]
    row = tuning_row(get_agent("router"), record, "qwen")
    assert row["text_prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert row["text_completion"] == row["completion"] + "<|im_end|>\n"


def test_qwen3_with_think_wrapping_trains_the_think_block(tokenizers, records):
    """Thinking on (Qwen3's default): the prompt stops at the assistant header and the answer the model
    learns opens with the outline in the template's own `<think>\\n…\\n</think>\\n\\n` layout."""
    record, tokenizer = records["router"], tokenizers["qwen"]
    assert record.get("thinking_outline")
    row = tuning_row(get_agent("router"), record, "qwen", think=True)
    messages = _conversation("router", record, completion=row["completion"])
    assert row["text_prompt"] == _chat(tokenizer, messages[:2], add_generation_prompt=True)
    assert row["text_prompt"] + row["text_completion"] == _chat(tokenizer, messages)
    assert row["text_prompt"].endswith("<|im_start|>assistant\n")
    outline = "\n".join(record["thinking_outline"])
    assert row["text_completion"].startswith(f"<think>\n{outline}\n</think>\n\n{{")


@pytest.mark.parametrize("agent_name", AGENTS)
@pytest.mark.parametrize("name", REAL)
def test_the_end_of_turn_token_is_a_trained_label(tokenizers, records, name, agent_name):
    tokenizer, end = tokenizers[name], family(name).end_of_turn
    row = tuning_row(get_agent(agent_name), records[agent_name], name)
    prompt, completion = prepare_pair(tokenizer, row["text_prompt"], row["text_completion"], end)
    ex = completion_labels(tokenizer, prompt, completion, eos_token=end)
    trained = [x for x in ex["labels"] if x != IGNORE_INDEX]
    assert ex["prompt_length"] == len(tokenizer(text=prompt)["input_ids"])
    assert terminator_is_trained(tokenizer, ex["labels"], end)
    assert trained[-1] == tokenizer.convert_tokens_to_ids(end)


def test_tuning_dataset_records_the_official_template_and_its_variables(store, tokenizers):
    pair = "router__qwen3-32b"
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store})
    dg.materialize([tuning_dataset, *[a.to_source_asset() for a in DATA_ASSETS]], partition_key=pair,
                   resources={"store": store}, selection=[tuning_dataset])
    manifest = store.read_json(layout.tuning_manifest(pair))
    assert manifest["chat_template"] == family("qwen").template
    assert manifest["chat_template_kwargs"] == {"enable_thinking": False}
    agent = get_agent("router")
    for row, record in zip(store.iter_jsonl(layout.tuning_records(pair, "train")),
                           store.iter_jsonl(split_key(store, "router", "train")), strict=True):
        messages = _conversation("router", record)
        assert row["text_prompt"] + row["text_completion"] == _chat(tokenizers["qwen"], messages,
                                                                    **manifest["chat_template_kwargs"])
        assert row["prompt"] == agent.vertex_prompt(record)  # Vertex keeps its own prompt format


def test_every_family_renders_its_rows_through_a_skeleton():
    """The data path's speed: no family falls back to two Jinja renderings per row for ordinary contents."""
    from coursegpt_assets.core.chat_templates import _skeleton

    assert all(_skeleton(name, False) is not None for name in FAMILIES)


def test_a_content_qwen3_branches_on_is_rendered_by_its_template(tokenizers):
    """A user turn that looks like a tool response moves Qwen3's last query, so the answer renders without the
    think block the generation prompt ends with: refused, naming the divergence, not trained on silently."""
    user = "<tool_response>\n42\n</tool_response>"
    messages = build_messages("S", user, "A")
    full = _chat(tokenizers["qwen"], messages, enable_thinking=False)
    assert full.endswith("<|im_start|>assistant\nA<|im_end|>\n")
    record = {"id": "r1", "problem": user, "generated_solution": "A"}
    with pytest.raises(ValueError, match=r"math record r1: .*not a prefix.*diverges at 'A<\|im_end\|>"):
        tuning_row(get_agent("math"), record, "qwen")
