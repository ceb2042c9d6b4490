"""Chat templates per base-model family, rendered the way `transformers`' `apply_chat_template` renders them.

A real base model is trained on its own official template (package data in `official_templates/`, see its
SOURCES.md), because the adapters are served by vLLM & co. with the base model's tokenizer and template.
The template is saved next to the adapter (`chat_template.jinja`) and inference renders it verbatim, with
the same template variables (`template_kwargs`). Only the locally built smoke model keeps a hand-written
template. Rendering uses jinja2 directly, configured as transformers configures it, so loading the
definitions never imports transformers; tests/test_official_templates.py compares the two. The tuning data
path fills a per-family skeleton of that rendering instead of running Jinja twice per row (`_skeleton`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from importlib import resources

OFFICIAL_DIR = "official_templates"


@dataclass(frozen=True)
class ChatFamily:
    name: str
    #: the token that ends an assistant turn; it must be inside the trained labels so the model learns to stop
    end_of_turn: str
    bos: str = ""
    eos: str = ""
    #: the base model's own template, a file in official_templates/; None: `hand_written` is used
    official_file: str | None = None
    hand_written: str = ""
    #: template variables for a conversation whose answer has no reasoning block (Qwen3: no thinking)
    no_think_kwargs: tuple[tuple[str, object], ...] = ()
    #: substrings of a message content the template branches on (Qwen3: a reasoning block, a tool response)
    branch_markers: tuple[str, ...] = ()

    @property
    def template(self) -> str:
        return _official_text(self.official_file) if self.official_file else self.hand_written

    @property
    def official(self) -> bool:
        return self.official_file is not None

    def template_kwargs(self, *, think: bool) -> dict:
        """The extra `apply_chat_template` variables for this family's training and serving prompts."""
        return {} if think else dict(self.no_think_kwargs)


# The locally built smoke model: short special tokens so a tiny vocabulary covers them.
_TINY = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "<|{{ m['role'] }}|>\n{{ m['content'] | trim }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

FAMILIES: dict[str, ChatFamily] = {
    "llama3": ChatFamily("llama3", end_of_turn="<|eot_id|>", bos="<|begin_of_text|>", eos="<|eot_id|>",
                         official_file="Llama-3.1-8B-Instruct.jinja"),
    "llama4": ChatFamily("llama4", end_of_turn="<|eot|>", bos="<|begin_of_text|>", eos="<|eot|>",
                         official_file="Llama-4-Scout-17B-16E-Instruct.jinja"),
    "gemma": ChatFamily("gemma", end_of_turn="<end_of_turn>", bos="<bos>", eos="<eos>",
                        official_file="gemma-3-27b-it.jinja"),
    "qwen": ChatFamily("qwen", end_of_turn="<|im_end|>", eos="<|im_end|>", official_file="Qwen3-32B.jinja",
                       no_think_kwargs=(("enable_thinking", False),), branch_markers=("</think>", "<tool_response>")),
    "tiny": ChatFamily("tiny", end_of_turn="<|end|>", bos="<s>", eos="<|end|>", hand_written=_TINY),
}


def family(name: str) -> ChatFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown chat template family {name!r}; known: {sorted(FAMILIES)}") from None


@cache
def _official_text(file_name: str) -> str:
    path = resources.files(__package__).joinpath(OFFICIAL_DIR, file_name)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: the official chat template is missing from the installed package; "
                                "reinstall coursegpt-forge (pyproject package-data ships core/official_templates)"
                                ) from None


def _raise_exception(message: str):
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=32)
def _compiled(template: str):
    """The template compiled in transformers' environment: sandboxed, trim_blocks + lstrip_blocks, loop
    controls, and its `raise_exception`, `strftime_now` and non-escaping `tojson`."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def render_template(template: str, messages: list[dict], *, bos_token: str = "", eos_token: str = "",
                    add_generation_prompt: bool = False, **template_kwargs) -> str:
    """Render `messages` with a chat template string, as `apply_chat_template(tokenize=False)` does."""
    from jinja2.exceptions import TemplateError

    special = {k: v for k, v in (("bos_token", bos_token), ("eos_token", eos_token)) if v}
    try:
        return _compiled(template).render(messages=messages, tools=None, documents=None,
                                          add_generation_prompt=add_generation_prompt,
                                          **special, **template_kwargs)
    except TemplateError as e:
        roles = [m.get("role") for m in messages]
        raise ValueError(f"chat template refused a conversation with roles {roles}: {e}") from None


def render(family_name: str, messages: list[dict], *, add_generation_prompt: bool = False,
           **template_kwargs) -> str:
    fam = family(family_name)
    return render_template(fam.template, messages, bos_token=fam.bos, eos_token=fam.eos,
                           add_generation_prompt=add_generation_prompt, **template_kwargs)


def build_messages(system: str, user: str, assistant: str | None = None) -> list[dict]:
    """One turn as chat messages, contents stripped: Llama 3 and Gemma trim them in their templates, Qwen3
    and Llama 4 do not, so stripping here gives training and serving the same text for every family."""
    messages = [{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}]
    if assistant is not None:
        messages.append({"role": "assistant", "content": assistant.strip()})
    return messages


def prompt_and_completion(family_name: str, system: str, user: str, assistant: str, *,
                          think: bool = False) -> tuple[str, str]:
    """Split one rendered conversation into the prompt (the generation prompt) and the completion.

    The prompt is the conversation without the answer rendered with `add_generation_prompt=True`, exactly
    what inference sends; the completion is the rest of the full rendering and ends with the family's
    end-of-turn token, so completion-only loss still teaches the model to stop. `think`: the answer opens
    with a reasoning block, rendered with the family's thinking variables (Qwen3: thinking on). Rows go
    through the family's skeleton (`_skeleton`, byte-identical and several times faster on the data path)
    unless a content holds something the template branches on; then through Jinja.
    """
    parts = (system.strip(), user.strip(), assistant.strip())
    skeleton = _skeleton(family_name, think)
    markers = (_SENTINEL, *family(family_name).branch_markers)
    if skeleton is None or any(m in p for p in parts for m in markers):
        return _rendered(family_name, *parts, think=think)
    values = dict(zip(_SENTINELS, parts, strict=True))
    return _fill(skeleton[0], values), _fill(skeleton[1], values)


def _rendered(family_name: str, system: str, user: str, assistant: str, *, think: bool) -> tuple[str, str]:
    """`prompt_and_completion` by rendering the template twice with Jinja."""
    fam = family(family_name)
    kwargs = fam.template_kwargs(think=think)
    prompt = render(family_name, build_messages(system, user), add_generation_prompt=True, **kwargs)
    full = render(family_name, build_messages(system, user, assistant), **kwargs)
    if not full.startswith(prompt):
        raise ValueError(f"chat family {family_name!r}: the generation prompt is not a prefix of the rendered "
                         f"conversation (think={think}); training and serving would see different prompts. "
                         f"The conversation diverges at {full[len(os.path.commonprefix([prompt, full])):][:80]!r}")
    completion = full[len(prompt):]
    if fam.end_of_turn not in completion:
        raise ValueError(f"chat family {family_name!r}: the rendered answer lacks the end-of-turn token "
                         f"{fam.end_of_turn!r}: {completion[-80:]!r}")
    return prompt, completion


_SENTINEL = "\x00"
_SENTINELS = ("\x00SYSTEM\x00", "\x00USER\x00", "\x00ASSISTANT\x00")

#: The templates read line by line for the skeleton: with stripped contents, each inserts a content verbatim
#: (Llama 3.1 and the tiny one through `| trim`, Gemma 3, Qwen3 and Llama 4 as is) and branches on none,
#: except Qwen3 on its `branch_markers`. A template whose sha256 is not listed is always rendered by Jinja.
_READ_FOR_SKELETON = {
    "llama3": "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65",
    "llama4": "01a91bfb2e84c8055bf7b635898fef3cae0b69e42ac5634c212d308e0e9091bd",
    "gemma": "7de1c58e208eda46e9c7f86397df37ec49883aeece39fb961e0a6b24088dd3c4",
    "qwen": "87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5",
    "tiny": "eeb59670612f7e880409cae00cf9bec50ee27d649a38900e4e3558af68400a87",
}


def _fill(skeleton: tuple[str, ...], values: dict[str, str]) -> str:
    return "".join(values.get(piece, piece) for piece in skeleton)


@cache
def _skeleton(family_name: str, think: bool) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The family's conversation rendered once by Jinja with sentinel contents, split into literal pieces
    and sentinels, for the prompt and for the completion; None when the template was not read for it."""
    template = family(family_name).template
    if hashlib.sha256(template.encode("utf-8")).hexdigest() != _READ_FOR_SKELETON.get(family_name):
        return None
    prompt, completion = _rendered(family_name, *_SENTINELS, think=think)
    if any((prompt + completion).count(s) != 1 for s in _SENTINELS) or _SENTINELS[2] not in completion:
        return None
    split = re.compile("(" + "|".join(map(re.escape, _SENTINELS)) + ")")
    return tuple(p for p in split.split(prompt) if p), tuple(p for p in split.split(completion) if p)
