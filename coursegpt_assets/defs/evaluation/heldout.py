"""Held-out perplexity for `evaluation_report`: which split and rows, then the inference resource scores them.

The rows are the agent's held-out split (test, else validation), rendered as `tuning_dataset` renders the
rows the adapter trained on, a seeded sample of `smoke.max_perplexity_rows` for smoke models (all rows
otherwise, or `EvaluationConfig.max_perplexity_rows`). What decides the numbers is part of the report version.
"""

from __future__ import annotations

from dataclasses import dataclass

from coursegpt_assets.core import layout
from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.core.names import split_pair
from coursegpt_assets.data.benchmark_rows import select_per_source
from coursegpt_assets.defs.common import published_splits, read_upstream
from coursegpt_assets.scoring.perplexity import (
    held_out_split,
    not_measured,
    perplexity_result,
    scored_texts,
)
from resources.inference import GenerationRequest, Inference, TokenScoringUnavailable
from resources.storage import ArtifactStore

FORMAT = 1  # bump when what is scored changes (it is hashed into the report version)


@dataclass(frozen=True)
class HeldOut:
    """The texts to score and what decides their perplexity (`version_input`), or why there are none."""

    split: str | None
    texts: list[tuple[str, str]]
    limit: int | None
    max_length: int
    bos: str
    version_input: dict


def held_out(store: ArtifactStore, request: GenerationRequest, agent, plan, base, limit: int | None) -> HeldOut:
    """The pair's held-out texts: the split manifest names the split, its hash and the think wrapping."""
    manifest = read_upstream(store, layout.splits_manifest(agent.name), producer=f"dataset_splits for {agent.name}",
                             partition=request.pair)
    split = held_out_split(manifest.get("counts") or {})
    trained = request.summary.get("hyperparameters") or {}
    max_length = int(trained.get("max_length") or base.max_length)
    limit = limit or (plan.smoke.max_perplexity_rows if base.smoke else None)
    think = bool(manifest.get("think_wrapping"))
    version_input = {"format": FORMAT, "split": split, "limit": limit, "think": think, "max_length": max_length,
                     "sha256": (manifest.get("sha256") or {}).get(split)}
    texts: list[tuple[str, str]] = []
    if split is not None:
        key = published_splits(store, agent.name, (split,), partition=request.pair)[1][split]
        chosen = select_per_source(store.read_jsonl(key), limit, plan.hyperparameters.seed)  # split rows: one source
        texts = scored_texts(agent, chosen, base.family, think=think)
    return HeldOut(split, texts, limit, max_length, family(base.family).bos, version_input)


def measure(inference: Inference, request: GenerationRequest, held: HeldOut, backend: str, log=None) -> dict:
    """report.json `perplexity`: both models' numbers, or {"not_measured": why}."""
    if held.split is None:
        return not_measured(f"the {split_pair(request.pair)[0]} splits have no test or validation rows")
    try:
        scores = inference.score_tokens(request, held.texts, max_length=held.max_length, bos=held.bos, log=log)
    except TokenScoringUnavailable as e:
        return not_measured(str(e))
    return perplexity_result(held.split, len(held.texts), scores, limit=held.limit, backend=backend)
