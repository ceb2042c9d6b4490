"""Each family's rendering of one conversation, written out literally.

The real families render their base model's official template (core/official_templates/SOURCES.md):
Llama 3.1's system header with its knowledge and today dates, Gemma 3 with no system role (the system
text opens the first user turn), Qwen3 without thinking (the empty think block closes the prompt), and
Llama 4's header tokens; the tiny smoke model keeps its own hand-written tokens. The comparison with
`transformers`' `apply_chat_template` itself is in test_official_templates.py.
"""

import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import tuning_row
from coursegpt_assets.core.chat_templates import FAMILIES, build_messages, prompt_and_completion, render

SYSTEM = "You are a helpful assistant."
USER = "What is 2 + 2?"
ASSISTANT = "2 + 2 = 4."

OFFICIAL = {
    "llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "2 + 2 = 4.<|eot_id|>",
    ),
    "llama4": (
        "<|begin_of_text|><|header_start|>system<|header_end|>\n\nYou are a helpful assistant.<|eot|>"
        "<|header_start|>user<|header_end|>\n\nWhat is 2 + 2?<|eot|>"
        "<|header_start|>assistant<|header_end|>\n\n",
        "2 + 2 = 4.<|eot|>",
    ),
    "gemma": (
        "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nWhat is 2 + 2?<end_of_turn>\n"
        "<start_of_turn>model\n",
        "2 + 2 = 4.<end_of_turn>\n",
    ),
    "qwen": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n",
        "2 + 2 = 4.<|im_end|>\n",
    ),
    "tiny": (
        "<s><|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nWhat is 2 + 2?<|end|>\n<|assistant|>\n",
        "2 + 2 = 4.<|end|>\n",
    ),
}


def test_every_family_has_an_official_string():
    assert set(OFFICIAL) == set(FAMILIES)


def _kwargs(family):
    return FAMILIES[family].template_kwargs(think=False)


@pytest.mark.parametrize("family", sorted(OFFICIAL))
def test_generation_prompt_matches_the_official_format(family):
    prompt, _ = OFFICIAL[family]
    assert render(family, build_messages(SYSTEM, USER), add_generation_prompt=True, **_kwargs(family)) == prompt


@pytest.mark.parametrize("family", sorted(OFFICIAL))
def test_full_conversation_matches_the_official_format(family):
    prompt, completion = OFFICIAL[family]
    assert render(family, build_messages(SYSTEM, USER, ASSISTANT), **_kwargs(family)) == prompt + completion


def test_only_the_smoke_model_keeps_a_hand_written_template():
    assert {name for name, fam in FAMILIES.items() if not fam.official} == {"tiny"}


@pytest.mark.parametrize("family", sorted(OFFICIAL))
def test_prompt_and_completion_split_at_the_assistant_header(family):
    assert prompt_and_completion(family, SYSTEM, USER, ASSISTANT) == OFFICIAL[family]


@pytest.mark.parametrize("family", sorted(OFFICIAL))
def test_braces_and_template_syntax_in_content_stay_literal(family):
    code = "def f(x):\n    return f'{x}' + '{{ y }}' + '{% if %}'"
    prompt, completion = prompt_and_completion(family, SYSTEM, "Write f. {{ user }}", code)
    assert "Write f. {{ user }}" in prompt
    assert completion == code + OFFICIAL[family][1][len(ASSISTANT):]
    assert render(family, build_messages(SYSTEM, "Write f. {{ user }}", code), **_kwargs(family)) == prompt + completion


def test_a_conversation_the_template_refuses_names_its_roles():
    with pytest.raises(ValueError, match=r"roles \['user', 'user'\].*Conversation roles must alternate"):
        render("gemma", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


@pytest.mark.parametrize("family", sorted(OFFICIAL))
@pytest.mark.parametrize("agent_name", ["math", "code"])
def test_agent_tuning_rows_render_the_agent_system_prompt(family, agent_name):
    agent = get_agent(agent_name)
    record = (
        {"id": "m", "problem": USER, "solution": ASSISTANT, "answer": "4"} if agent_name == "math"
        else {"id": "c", "instruction": USER, "output": ASSISTANT, "code": "x = 4\n", "entry_point": "x",
              "testcase": ["assert x == 4"]}
    )
    tuned = tuning_row(agent, record, family)
    prompt, completion = OFFICIAL[family]
    assert tuned["text_prompt"] == prompt.replace(SYSTEM, agent.system_prompt)
    assert tuned["text_completion"] == completion
