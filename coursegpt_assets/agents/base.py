"""The agent protocol: what differs per agent (schema, prompts, rendering); the assets do the rest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from coursegpt_assets.core.chat_templates import prompt_and_completion
from coursegpt_assets.data.records import RawRow


class Agent(Protocol):
    name: str
    system_prompt: str
    #: record fields shown in the markdown previews of the data assets
    preview_columns: tuple[str, ...]

    def load_raw(self, source: str, *, seed: int, subset_size: int | None) -> Iterator[RawRow]:
        """Yield every raw row of the source, unparseable ones included (with an error)."""

    def validate(self, record: dict) -> list[str]:
        """Human-readable problems with one record; empty when valid."""

    def clean_record(self, record: dict) -> dict:
        """The record in the agent's canonical shape (return it unchanged to keep its source bytes)."""

    def record_id(self, record: dict, line: int) -> str:
        """A stable id for the record (the source's own id where it has one)."""

    def dedup_key(self, record: dict) -> str:
        """The normalised prompt: equal keys are the same question and stay in one split."""

    def user_text(self, record: dict) -> str:
        """The user turn."""

    def assistant_text(self, record: dict) -> str:
        """The target the model learns to produce."""

    def vertex_prompt(self, record: dict) -> str:
        """The seed's Vertex supervised-tuning `prompt` string."""

    def benchmark_messages(self, row: dict) -> list[dict]:
        """The conversation (system + user) the model answers for one benchmark row."""

    def score(self, rows: list[dict], completions: list[str]):
        """Score completions against benchmark rows (row i with completion i); returns an AgentScore
        (`coursegpt_assets.scoring.agent_scores`)."""


def tuning_row(agent: Agent, record: dict, family: str, *, think: bool = False) -> dict:
    """One tuning example: the seed's Vertex prompt/completion plus the conversation rendered for `family`.

    `text_prompt` is everything up to the assistant header; `text_completion` the assistant turn with the
    family's end-of-turn token. The raw message list is not repeated: it is the system prompt, the user
    text and `completion`.
    """
    completion = agent.assistant_text(record)
    if think and record.get("thinking_outline"):
        outline = "\n".join(str(s) for s in record["thinking_outline"])
        completion = f"<think>\n{outline}\n</think>\n{completion}"
    user = agent.user_text(record)
    text_prompt, text_completion = prompt_and_completion(family, agent.system_prompt, user, completion)
    return {
        "id": record["id"],
        "prompt": agent.vertex_prompt(record),
        "completion": completion,
        "text_prompt": text_prompt,
        "text_completion": text_completion,
    }
