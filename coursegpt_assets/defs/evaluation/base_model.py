"""The base model's side of `evaluation_report`: its cached scores on the benchmark and `adapter_beats_base`.

Every adapter version of a pair asks the base model the same prompts. Its scores depend only on the base
model, the benchmark rows, those prompts, the generation settings and the scoring code, so they are stored
once per such key (`base_scores/<agent>/<base_model>/<key>/`: predictions.jsonl, scores.json, base_scores.json
last) and reused by every report that shares it. The comparison itself is pure (`scoring/comparison.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from coursegpt_assets.core import layout
from coursegpt_assets.scoring.comparison import (
    NOT_MEASURED,
    base_cache_key,
    beats_base,
    comparison_rows,
    primary_metric,
    scoring_code_version,
)
from coursegpt_assets.scoring.report import prediction_rows
from resources.inference import BaseNotMeasured, Generation, GenerationRequest, Inference
from resources.storage import ArtifactStore

BEATS_CHECK = "adapter_beats_base"


@dataclass(frozen=True)
class BaseScores:
    """Where the base model's scores for one report come from: the cache, a generation still to run, or
    nowhere (`reason` says why)."""

    key: str | None = None
    folder: str | None = None
    cached: dict | None = None
    reason: str | None = None

    @property
    def version_input(self) -> str | dict:
        """What the report version hashes for the base side."""
        return self.key or {NOT_MEASURED: self.reason}

    @property
    def to_generate(self) -> bool:
        return self.key is not None and self.cached is None


def find_base_scores(store: ArtifactStore, inference: Inference, request: GenerationRequest, agent,
                     rows: list[dict], benchmark_version: str) -> BaseScores:
    """The cache key of the base model's scores on these rows, and the stored scores when they exist."""
    try:
        settings = inference.base_settings(request)
    except BaseNotMeasured as e:
        return BaseScores(reason=str(e))
    key = base_cache_key(base_model=request.base_model, benchmark_version=benchmark_version,
                         row_ids=[str(r.get("id", i)) for i, r in enumerate(rows)], prompts=request.prompt_digest(),
                         settings=settings, max_new_tokens=request.max_new_tokens,
                         scoring_version=scoring_code_version(agent))
    folder = layout.base_scores_dir(agent.name, request.base_model, key)
    path = f"{folder}/{layout.BASE_SCORES_FILE}"
    return BaseScores(key=key, folder=folder, cached=store.read_json(path) if store.exists(path) else None)


def store_base_scores(store: ArtifactStore, found: BaseScores, agent, request: GenerationRequest, rows: list[dict],
                      generation: Generation, completions: list[str]) -> dict:
    """Score the base model's answers (`completions`: as scored, think blocks stripped) and store them."""
    assert found.key is not None and found.folder is not None
    score = agent.score(rows, completions)
    store.write_jsonl(f"{found.folder}/predictions.jsonl",
                      prediction_rows(rows, generation.completions, generation.finish_reasons))
    store.write_json(f"{found.folder}/scores.json", score.raw)
    entry = {
        "key": found.key, "agent": agent.name, "base_model": request.base_model, "model": request.base_model_id,
        "samples": len(rows), "metrics": score.buckets, "headline": score.headline, "per_row": score.per_row,
        "settings": generation.settings, "proof": generation.proof, "wall_time_s": round(generation.wall_time_s, 3),
        "generated_tokens": generation.generated_tokens,
        "finish_reasons": {r: generation.finish_reasons.count(r) for r in sorted(set(generation.finish_reasons))},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.write_json(f"{found.folder}/{layout.BASE_SCORES_FILE}", entry)  # last: complete once this exists
    return entry


def base_for_report(store: ArtifactStore, found: BaseScores, entry: dict | None) -> dict | str:
    """The base scores `comparison` takes (with where they are stored and whether they were reused), or the
    reason they were not measured."""
    if entry is None:
        return found.reason or "the base model was not asked"
    return {**entry, "cache": {"key": found.key, "uri": store.uri(found.folder or ""), "reused": found.cached is not None}}


def comparison_metadata(report: dict) -> dict:
    """base/<metric> and delta/<metric> as floats (plotted over materialisations), and whether base was measured."""
    rows = comparison_rows(report)
    meta: dict = {"base_measured": bool(rows)}
    for row in rows:
        for side in ("base", "delta"):
            if row[side] is not None:
                meta[f"{side}/{row['metric']}"] = float(row[side])
    if not rows:
        meta["base_not_measured"] = str((report.get("base") or {}).get(NOT_MEASURED, "not recorded"))
    return meta


def beats_base_result(report: dict, agent, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    """WARN unless the adapter does better than the base model on the agent's primary headline metric."""
    metric = primary_metric(tuple(agent.headline_metrics))
    passed, description, numbers = beats_base(report, metric, frozenset(agent.lower_is_better))

    def value(v):
        return dg.MetadataValue.null() if v is None else float(v)

    interval = numbers.get("delta_ci")
    metadata = {"metric": metric, "adapter": value(numbers.get("adapter")), "base": value(numbers.get("base")),
                "delta": value(numbers.get("delta")), "lower_is_better": metric in agent.lower_is_better,
                "delta_ci_low": value(interval[0] if interval else None),
                "delta_ci_high": value(interval[1] if interval else None)}
    return dg.AssetCheckResult(asset_key=asset_key, check_name=BEATS_CHECK, passed=passed,
                               severity=dg.AssetCheckSeverity.WARN, description=description, metadata=metadata)
