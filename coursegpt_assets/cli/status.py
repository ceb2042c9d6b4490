"""What `coursegpt status` and `coursegpt plan` print, computed from the store's manifests."""

from __future__ import annotations

from coursegpt_assets.core import layout
from coursegpt_assets.core.names import split_pair
from coursegpt_assets.core.plan import TrainingPlan, default_plan
from coursegpt_assets.core.tokens import estimate_tokens, estimated_cost_usd
from resources.storage import ArtifactStore


def _read(store: ArtifactStore, key: str) -> dict | None:
    try:
        return store.read_json(key)
    except FileNotFoundError:
        return None


def _short(version: str | None) -> str:
    return version[:12] if version else "-"


def pair_status(store: ArtifactStore, plan: TrainingPlan | None = None) -> list[dict]:
    """Per pair: tuning data version, adapter version, report version, and why anything is stale."""
    plan = plan or default_plan()
    out = []
    for pair in plan.pair_keys:
        tuning = _read(store, layout.tuning_manifest(pair)) or {}
        latest_adapter = (_read(store, layout.adapter_latest(pair)) or {}).get("version")
        summary = _read(store, layout.adapter_summary(pair, latest_adapter)) if latest_adapter else None
        latest_report = (_read(store, layout.report_latest(pair)) or {}).get("version")
        report = _read(store, layout.report_file(pair, latest_report)) if latest_report else None
        stale = []
        if summary and tuning and summary.get("data_version") != tuning.get("data_version"):
            stale.append("adapter (tuning data changed)")
        if summary and _hyperparameters_changed(plan, pair, summary):
            stale.append("adapter (hyperparameters changed)")
        agent = split_pair(pair)[0]
        benchmark = (_read(store, layout.benchmark_manifest(agent)) or {}).get("version")
        if report and benchmark and report.get("benchmark_version") != benchmark:
            stale.append("report (new benchmark)")
        if report and latest_adapter and report.get("adapter_version") != latest_adapter:
            stale.append("report (new adapter)")
        if latest_adapter and not report:
            stale.append("report missing")
        out.append({
            "pair": pair,
            "data": _short(tuning.get("data_version")),
            "adapter": _short(latest_adapter),
            "report": _short(latest_report),
            "stale": ", ".join(stale) or ("-" if tuning else "not materialised"),
        })
    return out


def _hyperparameters_changed(plan: TrainingPlan, pair: str, summary: dict) -> bool:
    """Whether the plan now asks for other values than the adapter was trained with (keys both name). A Vertex
    adapter is compared on what Vertex receives only: a local-only setting does not make it stale."""
    from coursegpt_assets.training.spec import BACKEND_VERTEX, effective_hyperparameters, vertex_settings

    trained = summary.get("hyperparameters") or {}
    wanted = effective_hyperparameters(plan, pair)
    base = plan.base_model_for(pair)
    if summary.get("backend") == BACKEND_VERTEX and base.vertex_id:
        wanted = vertex_settings(base.vertex_id, wanted)
    return any(key in trained and trained[key] != value for key, value in wanted.items())


def _split_tokens(store: ArtifactStore, agent: str, cache: dict[str, int | None]) -> int | None:
    """The agent's train split in estimated tokens (core.tokens), before any tuning data exists."""
    if agent not in cache:
        key = layout.split_records(agent, "train")
        cache[agent] = (sum(estimate_tokens(line) for _, line in store.iter_lines(key))
                        if store.exists(key) else None)
    return cache[agent]


def plan_rows(store: ArtifactStore, plan: TrainingPlan | None = None) -> list[list[str]]:
    """Per planned pair: models, family, estimated train tokens and the Vertex cost of `epochs` passes.

    Tokens come from the pair's tuning manifest, else from its agent's train split (marked so), else
    there is nothing to estimate from yet."""
    plan = plan or default_plan()
    price, epochs = plan.cost.price_per_million_tokens_usd, plan.hyperparameters.epochs
    split_cache: dict[str, int | None] = {}
    rows = []
    for p in plan.planned_pairs:
        model = plan.base_models[p.base_model]
        tuning = _read(store, layout.tuning_manifest(p.key))
        tokens = (tuning or {}).get("token_estimate", {}).get("train", {}).get("total")
        source = "tuning data"
        if tokens is None and not model.smoke:
            tokens, source = _split_tokens(store, p.agent, split_cache), f"{p.agent} train split"
        if model.smoke:
            cost = "local (free)"
        elif tokens is None:
            cost = f"materialise dataset_splits ({p.agent}) first"
        else:
            usd = estimated_cost_usd(tokens, epochs, price)
            cost = f"{usd:.2f} (from {source})" if usd >= 0.01 else f"<0.01 (from {source})"
        rows.append([p.key, model.hf_id, model.vertex_id or "-", model.family,
                     str(tokens) if tokens is not None else "-", cost])
    return rows


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
