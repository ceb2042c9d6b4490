"""Completion-only loss keeps the family's end-of-turn token inside the trained labels, for every family.

Each family gets a small tokenizer that knows its special tokens and carries its template (the base
model's official one for the real families; Llama 3/4 and Gemma add BOS by themselves, as the real ones
do). The labels come from `completion_labels`, and a second test checks they are exactly what TRL's
SFTTrainer builds for the same example.
"""

from __future__ import annotations

import copy

import pytest

from coursegpt_assets.core.chat_templates import FAMILIES, family, prompt_and_completion
from coursegpt_assets.training.labels import (
    IGNORE_INDEX,
    completion_labels,
    prepare_pair,
    terminator_is_trained,
)
from coursegpt_assets.training.tiny_llama import build_tiny_llama
from tests.fakes.family_tokenizers import FAMILY_TOKENS, family_tokenizer

SYSTEM = "You are the Router Agent. Answer with strict JSON."
USER = "Derive the closed form of ridge regression.\nThen verify it numerically."
ANSWER = '{"route_plan": ["/math(derive ridge)", "/code(verify, using Python)"], "difficulty": "intermediate"}'


def test_every_family_is_covered():
    assert set(FAMILY_TOKENS) | {"tiny"} == set(FAMILIES)


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from transformers import AutoTokenizer

    out = {name: family_tokenizer(name, [SYSTEM, USER, ANSWER]) for name in FAMILY_TOKENS}
    out["tiny"] = AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path_factory.mktemp("tiny_home")))
    return out


def _example(tokenizer, name: str):
    end = family(name).end_of_turn
    text_prompt, text_completion = prompt_and_completion(name, SYSTEM, USER, ANSWER)
    prompt, completion = prepare_pair(tokenizer, text_prompt, text_completion, end)
    return prompt, completion, completion_labels(tokenizer, prompt, completion, eos_token=end)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_prompt_is_masked_and_terminator_is_trained(tokenizers, name):
    tokenizer = tokenizers[name]
    end = family(name).end_of_turn
    prompt, completion, ex = _example(tokenizer, name)
    ids, labels = ex["input_ids"], ex["labels"]
    prompt_ids = tokenizer(text=prompt)["input_ids"]

    assert ex["prompt_length"] == len(prompt_ids), "the rendered prompt is not a token prefix of the example"
    assert all(x == IGNORE_INDEX for x in labels[: len(prompt_ids)])
    trained = [x for x in labels if x != IGNORE_INDEX]
    eot_id = tokenizer.convert_tokens_to_ids(end)
    assert trained[-1] == eot_id, f"{name}: the last trained label is {tokenizer.decode([trained[-1]])!r}, not {end}"
    assert trained.count(eot_id) == 1, f"{name}: {end} appears {trained.count(eot_id)} times in the labels"
    assert terminator_is_trained(tokenizer, labels, end)
    assert tokenizer.decode(trained) == completion == f"{ANSWER}{end}"
    if tokenizer.bos_token:
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id, f"{name}: BOS twice"


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_labels_match_what_sft_trainer_builds(tokenizers, name, tmp_path):
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = copy.deepcopy(tokenizers[name])  # SFTTrainer sets eos_token on the tokenizer it is given
    end = family(name).end_of_turn
    prompt, completion, ex = _example(tokenizer, name)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, eos_token=end, completion_only_loss=True,
                     max_length=2048, report_to=[], gradient_checkpointing=False, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list([{"prompt": prompt, "completion": completion}]))
    row = trainer.train_dataset[0]
    assert row["input_ids"] == ex["input_ids"]
    assert row["labels"] == ex["labels"]


def test_a_completion_without_its_terminator_is_caught(tokenizers):
    tokenizer = tokenizers["gemma"]
    text_prompt, text_completion = prompt_and_completion("gemma", SYSTEM, USER, ANSWER)
    with pytest.raises(ValueError, match="end-of-turn"):
        prepare_pair(tokenizer, text_prompt, ANSWER, "<end_of_turn>")
    # Trained with the tokenizer's own EOS (<eos>) the model would never learn to emit <end_of_turn>.
    ex = completion_labels(tokenizer, text_prompt, ANSWER)
    assert not terminator_is_trained(tokenizer, ex["labels"], "<end_of_turn>")


def test_truncation_modes_keep_the_requested_end(tokenizers):
    tokenizer = tokenizers["tiny"]
    prompt, completion, full = _example(tokenizer, "tiny")
    short = len(full["input_ids"]) - 5
    start = completion_labels(tokenizer, prompt, completion, max_length=short, truncation_mode="keep_start")
    end = completion_labels(tokenizer, prompt, completion, max_length=short, truncation_mode="keep_end")
    assert start["input_ids"] == full["input_ids"][:short]
    assert end["labels"] == full["labels"][-short:]
    assert not terminator_is_trained(tokenizer, start["labels"], "<|end|>")
    assert terminator_is_trained(tokenizer, end["labels"], "<|end|>")
