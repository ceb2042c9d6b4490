"""Held-out perplexity as plain functions: which rows, what text, how log-probabilities become a number.

Perplexity here is per token over the reference completions of the agent's held-out split (test, or
validation where the agent has no test split) given their prompts: exp(total negative log-likelihood of
the completion tokens / their count). The completion tokens are exactly the ones training puts a loss on
(`training.labels`: the tuning row's rendered prompt and completion, end-of-turn token included), so the
adapter's number is comparable with its training and validation loss, and the base model's is measured on
the same tokens. `evaluation_report` records both as report.json `perplexity`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from coursegpt_assets.agents.base import tuning_row

HELD_OUT_SPLITS = ("test", "validation")  # the first one with rows is scored


@dataclass(frozen=True)
class TokenScores:
    """What a backend measured: the summed negative log-likelihood of the completion tokens, per model."""

    adapter_nll: float
    base_nll: float
    tokens: int
    truncated_rows: int = 0  # rows cut at the trained max_length (their cut-off tokens are not scored)


def held_out_split(counts: dict) -> str | None:
    """The split perplexity is measured on: test when it has rows, else validation, else None."""
    return next((s for s in HELD_OUT_SPLITS if (counts or {}).get(s)), None)


def scored_texts(agent, records: list[dict], family: str, *, think: bool) -> list[tuple[str, str]]:
    """(rendered prompt, rendered completion) per held-out record, built as `tuning_dataset` builds the
    tuning rows the adapter trained on."""
    rows = [tuning_row(agent, record, family, think=think) for record in records]
    return [(r["text_prompt"], r["text_completion"]) for r in rows]


def completion_logprob(tokens: list, token_logprobs: list, text_offset: list, start: int,
                       end: int) -> tuple[float, int]:
    """(sum of log-probabilities, token count) of the tokens an echoing `/v1/completions` answer places at
    character offsets [start, end) of the text it was sent: the completion, not the prompt, and not any
    token the server generated after the text. A token without a log-probability (the first) is an error."""
    if not (len(tokens) == len(token_logprobs) == len(text_offset)):
        raise ValueError(f"logprobs lists differ in length: {len(tokens)} tokens, {len(token_logprobs)} "
                         f"token_logprobs, {len(text_offset)} text_offset")
    total, count = 0.0, 0
    for token, logprob, offset in zip(tokens, token_logprobs, text_offset, strict=True):
        if offset < start or offset >= end:
            continue
        if logprob is None or not math.isfinite(float(logprob)):
            raise ValueError(f"token {token!r} at offset {offset} has no finite log-probability ({logprob!r})")
        total += float(logprob)
        count += 1
    return total, count


def perplexity_result(split: str, rows: int, scores: TokenScores, *, limit: int | None, backend: str) -> dict:
    """report.json `perplexity`: split, rows, tokens, the adapter's and the base model's perplexity."""
    if scores.tokens <= 0:
        return not_measured(f"the {rows} {split} rows have no completion token to score")
    return {"split": split, "rows": rows, "tokens": scores.tokens,
            "adapter": math.exp(scores.adapter_nll / scores.tokens),
            "base": math.exp(scores.base_nll / scores.tokens),
            "max_rows": limit, "truncated_rows": scores.truncated_rows, "backend": backend}


def not_measured(reason: str) -> dict:
    return {"not_measured": reason}


def measured(perplexity: dict | None) -> bool:
    return bool(perplexity) and "not_measured" not in perplexity


def reduction(perplexity: dict) -> float:
    """How far below the base model's perplexity the adapter's is, as a share of the base's (0.2 = 20 %)."""
    return 1.0 - perplexity["adapter"] / perplexity["base"]


def perplexity_metadata(perplexity: dict | None) -> dict:
    """Numbers for the report's Dagster metadata (plotted over time, shown by `coursegpt run`); nothing for a
    report written before perplexity was measured."""
    if perplexity is None:
        return {}
    if not measured(perplexity):
        return {"perplexity": f"not measured: {perplexity['not_measured']}"}
    return {"perplexity_base": float(perplexity["base"]), "perplexity_adapter": float(perplexity["adapter"]),
            "perplexity_tokens": int(perplexity["tokens"]), "perplexity_rows": int(perplexity["rows"])}


def perplexity_sentence(perplexity: dict | None) -> str:
    """One line for report.md and the model card: both numbers, on which rows and tokens, or why not."""
    if not measured(perplexity):
        return f"Held-out perplexity: not measured ({(perplexity or {}).get('not_measured', 'no held-out split')})."
    share = reduction(perplexity)
    return (f"Held-out perplexity on {perplexity['rows']} {perplexity['split']} rows ({perplexity['tokens']} "
            f"completion tokens, the tokens training puts its loss on): adapter {perplexity['adapter']:.4g}, "
            f"base model {perplexity['base']:.4g} ({abs(share):.1%} {'below' if share >= 0 else 'above'} the base).")


def perplexity_markdown(report: dict) -> list[str]:
    """report.md's section (empty for a report written before perplexity was measured)."""
    if "perplexity" not in report:
        return []
    return ["## Held-out perplexity", "", perplexity_sentence(report["perplexity"]), ""]
