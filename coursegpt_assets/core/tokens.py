"""The one token estimate used before any tokenizer is loaded, and what a paid tuning job costs by it.

The tuning asset's length metadata, the blocking length and cost checks, the dbt-style `max_tokens` test
and `coursegpt plan` all count with this estimate, so they agree on every row. It counts UTF-8 bytes,
as billing-style estimates do: on non-ASCII text (CJK, math symbols) a character is several bytes and
usually more than one token, so counting characters would under-price exactly those rows.
"""

from __future__ import annotations

BYTES_PER_TOKEN = 4


def estimate_tokens(text: str | bytes, bytes_per_token: int = BYTES_PER_TOKEN) -> int:
    """About one token per `bytes_per_token` UTF-8 bytes, rounded up."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8"))
    return -(-size // bytes_per_token)


def estimated_cost_usd(train_tokens: int, epochs: int, price_per_million_tokens_usd: float) -> float:
    """Supervised tuning bills the training tokens once per epoch."""
    return train_tokens * epochs * price_per_million_tokens_usd / 1e6
