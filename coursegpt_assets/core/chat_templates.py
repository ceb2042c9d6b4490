"""Chat templates per base-model family, as Jinja strings in the Hugging Face `chat_template` dialect.

Training renders every example with its family's template and the template is saved next to the adapter
(`chat_template.jinja`), so inference reuses it verbatim. The seed wrapped every math model in Gemma
markers; here each family gets its own official turn format.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache


@dataclass(frozen=True)
class ChatFamily:
    name: str
    template: str
    #: the token that ends an assistant turn; it must be inside the trained labels so the model learns to stop
    end_of_turn: str
    bos: str = ""


_LLAMA3 = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

_LLAMA4 = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "<|header_start|>{{ m['role'] }}<|header_end|>\n\n{{ m['content'] | trim }}<|eot|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|header_start|>assistant<|header_end|>\n\n{% endif %}"
)

# Gemma has no system role: the official template prepends the system text to the first user turn.
_GEMMA = (
    "{{ bos_token }}"
    "{% set ns = namespace(prefix='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.prefix = m['content'] | trim + '\n\n' %}"
    "{% else %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ ns.prefix if m['role'] == 'user' else '' }}{{ m['content'] | trim }}<end_of_turn>\n"
    "{% if m['role'] == 'user' %}{% set ns.prefix = '' %}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

_CHATML = (
    "{% for m in messages %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The locally built smoke model: short special tokens so a tiny vocabulary covers them.
_TINY = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "<|{{ m['role'] }}|>\n{{ m['content'] | trim }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

FAMILIES: dict[str, ChatFamily] = {
    "llama3": ChatFamily("llama3", _LLAMA3, end_of_turn="<|eot_id|>", bos="<|begin_of_text|>"),
    "llama4": ChatFamily("llama4", _LLAMA4, end_of_turn="<|eot|>", bos="<|begin_of_text|>"),
    "gemma": ChatFamily("gemma", _GEMMA, end_of_turn="<end_of_turn>", bos="<bos>"),
    "qwen": ChatFamily("qwen", _CHATML, end_of_turn="<|im_end|>"),
    "tiny": ChatFamily("tiny", _TINY, end_of_turn="<|end|>", bos="<s>"),
}


def family(name: str) -> ChatFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown chat template family {name!r}; known: {sorted(FAMILIES)}") from None


@lru_cache(maxsize=32)
def _compiled(template: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=False, lstrip_blocks=False, keep_trailing_newline=True)
    return env.from_string(template)


def render_template(
    template: str, messages: list[dict], *, bos_token: str = "", add_generation_prompt: bool = False
) -> str:
    """Render `messages` with a chat template string (the same call transformers makes)."""
    return _compiled(template).render(
        messages=messages, bos_token=bos_token, add_generation_prompt=add_generation_prompt
    )


def render(family_name: str, messages: list[dict], *, add_generation_prompt: bool = False) -> str:
    fam = family(family_name)
    return render_template(
        fam.template, messages, bos_token=fam.bos, add_generation_prompt=add_generation_prompt
    )


def build_messages(system: str, user: str, assistant: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if assistant is not None:
        messages.append({"role": "assistant", "content": assistant})
    return messages


def prompt_and_completion(family_name: str, system: str, user: str, assistant: str) -> tuple[str, str]:
    """Split one rendered conversation into the prompt (up to the assistant header) and the completion.

    The completion ends with the family's end-of-turn token, so completion-only loss still teaches the
    model to stop. Rendering goes through the family's compiled skeleton (see `_skeleton`), which is
    byte-identical to the Jinja rendering and ~30x faster on the data path.
    """
    parts = (system, user, assistant)
    if any(_SENTINEL[0] in p for p in parts):  # cannot use the skeleton: render with Jinja
        full = render(family_name, build_messages(system, user, assistant))
        tail = _assistant_tail(family_name, assistant)
        return full[: len(full) - len(tail)], tail
    prompt_skeleton, completion_skeleton = _skeleton(family_name)
    values = dict(zip(_SENTINELS, (p.strip() for p in parts), strict=True))
    return _fill(prompt_skeleton, values), _fill(completion_skeleton, values)


_SENTINEL = "\x00"
_SENTINELS = ("\x00SYSTEM\x00", "\x00USER\x00", "\x00ASSISTANT\x00")


def _fill(skeleton: tuple[str, ...], values: dict[str, str]) -> str:
    return "".join(values.get(piece, piece) for piece in skeleton)


@cache
def _skeleton(family_name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The family's conversation rendered once with sentinel contents, split into literal pieces and
    sentinels, for the prompt and for the completion.

    Valid because every template uses a message's content only through `| trim` and never branches on
    it; `_check_generation_prompt` and the tests compare it with real Jinja renderings.
    """
    import re

    _check_generation_prompt(family_name)
    full = render(family_name, build_messages(*_SENTINELS))
    for sentinel in _SENTINELS:
        if full.count(sentinel) != 1:
            raise ValueError(f"chat family {family_name!r}: template uses a message content {full.count(sentinel)} times")
    cut = full.index(_SENTINELS[2])
    split = re.compile("(" + "|".join(map(re.escape, _SENTINELS)) + ")")
    return tuple(p for p in split.split(full[:cut]) if p), tuple(p for p in split.split(full[cut:]) if p)


def _assistant_tail(family_name: str, assistant: str) -> str:
    """The rendered assistant turn, from its content to the end (content + end-of-turn + any newline)."""
    return assistant.strip() + _turn_suffix(family_name)


@cache
def _turn_suffix(family_name: str) -> str:
    probe = render(family_name, build_messages("s", "u", "\x00"))
    return probe[probe.rindex("\x00") + 1:]


@cache
def _check_generation_prompt(family_name: str) -> None:
    """The text before the assistant content must be exactly the generation prompt, or training and
    inference would see different prompts."""
    system, user, assistant = "You are helpful.", "What is 2 + 2?", "4"
    prompt = render(family_name, build_messages(system, user), add_generation_prompt=True)
    full = render(family_name, build_messages(system, user, assistant))
    if not full.startswith(prompt) or not full[len(prompt):].startswith(assistant):
        raise ValueError(f"chat family {family_name!r}: the generation prompt is not a prefix of the conversation")
    if family(family_name).end_of_turn not in full[len(prompt):]:
        raise ValueError(f"chat family {family_name!r}: the completion lacks the end-of-turn token")
