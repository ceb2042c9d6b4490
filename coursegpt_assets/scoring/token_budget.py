"""How many new tokens an answer may take: sized from the benchmark's own reference answers.

A fixed budget cuts real answers short: the router's gold plans run to about 5,000 characters, over 1,200
tokens, so a 1,024-token budget would end a real model's plan mid-JSON and score it as invalid. The
budget is a margin over the longest reference answer of the benchmark, counted with the adapter's own
tokenizer when it ships one (else the byte estimate of `core.tokens`), and never below the floor that
short answers (a math final answer, a short function) need. The report records where the number came
from and how many answers stopped at it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from coursegpt_assets.core.tokens import estimate_tokens

MARGIN = 1.25  # a model's answer may run longer than the reference
EXTRA_TOKENS = 16  # the end-of-turn token and a little slack
FLOOR = 1024
#: more answers than this share stopping at the budget fails the WARN check
MAX_SHARE_AT_BUDGET = 0.05


@dataclass(frozen=True)
class TokenBudget:
    max_new_tokens: int
    source: str  # what decided it, in words (shown in report.md)
    longest_reference_tokens: int | None = None
    counted_with: str | None = None  # "tokenizer" or "estimate"

    def as_dict(self) -> dict:
        return asdict(self)


def tokenizer_counter(folder: Path) -> Callable[[str], int] | None:
    """Token counts with the `tokenizer.json` beside the adapter, or None when there is none (a Vertex
    export, a served model): `tokenizers` reads it without loading transformers."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def from_references(references: Iterable[str | None], count: Callable[[str], int] | None) -> TokenBudget:
    """MARGIN over the longest reference answer (plus EXTRA_TOKENS), at least FLOOR."""
    texts = [r for r in references if isinstance(r, str) and r]
    counted_with = "tokenizer" if count is not None else "estimate"
    if not texts:
        return TokenBudget(FLOOR, f"floor {FLOOR} (the benchmark rows carry no reference answers)")
    longest = max(map(count or estimate_tokens, texts))
    sized = math.ceil(longest * MARGIN) + EXTRA_TOKENS
    source = (f"longest reference answer {longest} tokens ({counted_with}) x {MARGIN} + {EXTRA_TOKENS}"
              + (f", raised to the floor {FLOOR}" if sized < FLOOR else ""))
    return TokenBudget(max(sized, FLOOR), source, longest, counted_with)


def answers_at_budget(report: dict) -> tuple[int, int]:
    """(answers that stopped at the budget, answers) of a report: finish reason `length`."""
    inference = report.get("inference") or {}
    return int((inference.get("finish_reasons") or {}).get("length", 0)), int(inference.get("samples") or 0)
