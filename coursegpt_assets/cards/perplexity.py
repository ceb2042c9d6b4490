"""The model card's held-out perplexity: a model-index entry (the adapter's, as the seed's cards carried
perplexity) and the body's table of base model and adapter, from report.json `perplexity`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from coursegpt_assets.scoring.perplexity import measured, reduction


def perplexity_results(report: dict, *, agent: str, dataset_type: str, task_type: str,
                       splits_manifest: dict) -> list:
    """[EvalResult] for the adapter's held-out perplexity; [] when the report did not measure it."""
    from huggingface_hub import EvalResult

    ppl = report.get("perplexity")
    value = ppl.get("adapter") if measured(ppl) else None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return []
    split = str(ppl["split"])
    return [EvalResult(
        task_type=task_type, task_name=f"{agent} agent", dataset_type=dataset_type,
        dataset_name=f"CourseGPT {agent} held-out {split} split", dataset_split=split,
        dataset_revision=str((splits_manifest.get("sha256") or {}).get(split) or "unknown"),
        metric_type="perplexity", metric_name="perplexity", metric_value=float(value))]


def perplexity_rows(report: dict, fmt: Callable[[Any], str], missing: str) -> list[tuple[str, str]]:
    """(label, value) rows of the body's table: on what it was measured, both models, or why not."""
    ppl = report.get("perplexity")
    if ppl is None:
        return []
    if not measured(ppl):
        return [("Held-out perplexity", f"{missing}: {fmt(ppl.get('not_measured'))}")]
    return [("Held-out split", f"{fmt(ppl['split'])}: {fmt(ppl['rows'])} rows, {fmt(ppl['tokens'])} completion "
                               "tokens (the tokens training puts its loss on)"),
            ("Perplexity, base model", fmt(float(ppl["base"]))), ("Perplexity, adapter", fmt(float(ppl["adapter"]))),
            ("Adapter vs base", f"{-reduction(ppl):+.1%}")]
