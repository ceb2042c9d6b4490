"""The locally built smoke base model: deterministic, cached, offline-loadable, chat-template faithful."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coursegpt_assets.core.chat_templates import build_messages, family, render
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.training.tiny_llama import (
    TINY_SPECIAL_TOKENS,
    BaseModelUnavailable,
    build_tiny_llama,
    corpus_texts,
    ensure_base_model,
    fixture_files,
    tiny_build_id,
)

COMPARED_FILES = ("tokenizer.json", "model.safetensors", "config.json", "chat_template.jinja")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_home_a"))


def test_two_builds_are_byte_identical(built, tmp_path):
    again = build_tiny_llama(tmp_path / "home_b")
    assert again.name == built.name
    for name in COMPARED_FILES:
        assert (again / name).read_bytes() == (built / name).read_bytes(), f"{name} differs between builds"


def test_build_is_cached_and_named_by_its_inputs(built, tmp_path):
    home = built.parent.parent.parent
    stamp = (built / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_llama(home) == built
    assert (built / "model.safetensors").stat().st_mtime_ns == stamp
    assert built.name == tiny_build_id(default_plan())
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".")], "a staging folder was left behind"

    other_fixtures = tmp_path / "fixtures"
    other_fixtures.mkdir()
    (other_fixtures / "router.jsonl").write_text(json.dumps({"user_query": "a different corpus"}) + "\n")
    assert build_tiny_llama(home, fixtures_dir=other_fixtures).name != built.name


def test_reloads_offline_with_the_tiny_chat_template(built, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(built)
    model = AutoModelForCausalLM.from_pretrained(built)
    messages = build_messages("You route queries.", "Solve 2+2.\nShow work.", '{"route_plan": ["/math(2+2)"]}')
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == render("tiny", messages)
    assert tokenizer.chat_template == family("tiny").template
    assert tokenizer.eos_token == family("tiny").end_of_turn and tokenizer.bos_token == family("tiny").bos
    for token in TINY_SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{token} is split into {ids}"
    ids = tokenizer(rendered)["input_ids"]
    assert tokenizer.decode(ids) == rendered
    assert model.config.vocab_size == len(tokenizer)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids[:8]]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] >= 9


def test_corpus_is_sorted_and_keeps_malformed_rows_as_text(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"q": "second file"}\n')
    (tmp_path / "a.jsonl").write_text('{"q": "first", "n": {"list": ["x", 3]}}\nnot json {\n\n')
    files = fixture_files(tmp_path)
    assert [p.name for p in files] == ["a.jsonl", "b.jsonl"]
    assert list(corpus_texts(files)) == ["first", "x", "not json {\n", "second file"]


def test_ensure_base_model_builds_tiny_and_names_missing_hub_models(tmp_path, monkeypatch):
    plan = default_plan()
    path = ensure_base_model("tiny-llama", plan, home=tmp_path)
    assert (tmp_path / "models" / "tiny-llama") in Path(path).parents
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(BaseModelUnavailable) as err:
        ensure_base_model("llama31-8b", plan)
    message = str(err.value)
    assert "meta-llama/Llama-3.1-8B-Instruct" in message
    assert "HF_HOME" in message and "HF_TOKEN" in message
    with pytest.raises(KeyError, match="not-a-model"):
        ensure_base_model("not-a-model", plan)
