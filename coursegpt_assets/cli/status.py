"""What `coursegpt status`, `coursegpt plan` and `coursegpt run --dry-run` print, from the store's manifests."""

from __future__ import annotations

from coursegpt_assets.core import layout, settings
from coursegpt_assets.core.names import split_pair
from coursegpt_assets.core.plan import Pair, TrainingPlan, default_plan
from coursegpt_assets.core.tokens import estimate_tokens, estimated_cost_usd
from coursegpt_assets.training.estimate import (
    TrainingEstimate,
    format_duration,
    measured_throughput,
    training_estimate,
)
from coursegpt_assets.training.spec import (
    BACKEND_VERTEX,
    adapter_request,
    backend_for,
    effective_hyperparameters,
    vertex_settings,
)
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
        unchecked = _unvalidated_adapter(store, plan, pair, tuning, latest_adapter)
        if unchecked:
            stale.append(f"adapter {unchecked[:12]} not validated (adapter_matches_plan failed, or adapter not "
                         "materialised)")
        out.append({
            "pair": pair,
            "data": _short(tuning.get("data_version")),
            "adapter": _short(latest_adapter),
            "report": _short(latest_report),
            "stale": ", ".join(stale) or ("-" if tuning else "not materialised"),
        })
    return out


def _unvalidated_adapter(store: ArtifactStore, plan: TrainingPlan, pair: str, tuning: dict,
                         latest: str | None) -> str | None:
    """The version the plan asks for now, when its folder exists but latest.json does not point at it: the
    adapter asset has not validated it (its blocking check failed, or it has not run since training)."""
    if not tuning.get("data_version"):
        return None
    backend = backend_for(plan.base_model_for(pair), gcp=settings.current().is_gcp)
    try:
        wanted = adapter_request(plan, pair, tuning, backend).version
    except ValueError:
        return None
    folder_exists = store.exists(layout.adapter_summary(pair, wanted)) or store.exists(
        f"{layout.adapter_dir(pair, wanted)}/{layout.JOB_RECORD}")
    return wanted if folder_exists and wanted != latest else None


def _hyperparameters_changed(plan: TrainingPlan, pair: str, summary: dict) -> bool:
    """Whether the plan now asks for other values than the adapter was trained with (keys both name). A Vertex
    adapter is compared on what Vertex receives only: a local-only setting does not make it stale."""
    trained = summary.get("hyperparameters") or {}
    wanted = effective_hyperparameters(plan, pair)
    base = plan.base_model_for(pair)
    if summary.get("backend") == BACKEND_VERTEX and base.vertex_id:
        wanted = vertex_settings(base.vertex_id, wanted)
    return any(key in trained and trained[key] != value for key, value in wanted.items())


def _split_tokens(store: ArtifactStore, agent: str, cache: dict[str, tuple[int, int] | None]) -> tuple[int, int] | None:
    """The agent's train split in estimated tokens (core.tokens) and rows, before any tuning data exists."""
    if agent not in cache:
        manifest = _read(store, layout.splits_manifest(agent)) or {}
        cache[agent] = None
        # the published set's train split (a manifest with no version predates versioned sets)
        key = layout.split_keys(manifest, ("train",))["train"] if manifest.get("version") else None
        if key and store.exists(key):
            lengths = [estimate_tokens(line) for _, line in store.iter_lines(key)]
            cache[agent] = (sum(lengths), len(lengths))
    return cache[agent]


def _train_tokens(store: ArtifactStore, p: Pair, cache: dict) -> tuple[int | None, int | None, str]:
    """(estimated train tokens, train rows, where they come from): the pair's tuning manifest, else its
    agent's train split (marked so), else (None, None, '') when there is nothing to estimate from yet."""
    tuning = _read(store, layout.tuning_manifest(p.key)) or {}
    tokens = tuning.get("token_estimate", {}).get("train", {}).get("total")
    if tokens is not None:
        return tokens, tuning.get("counts", {}).get("train"), "tuning data"
    split = _split_tokens(store, p.agent, cache)
    return (*split, f"{p.agent} train split") if split else (None, None, "")


def pair_estimates(store: ArtifactStore, plan: TrainingPlan, pairs: list[str] | None = None,
                   gcp: bool | None = None) -> list[tuple[Pair, TrainingEstimate | None, str]]:
    """Per pair: its training estimate in this environment (None before any data) and the tokens' source.
    A smoke cap on local examples scales the tokens by rows (the manifest keeps totals, not every row)."""
    gcp = settings.current().is_gcp if gcp is None else gcp
    cache: dict = {}
    out = []
    for p in plan.planned_pairs:
        if pairs is not None and p.key not in pairs:
            continue
        tokens, rows, source = _train_tokens(store, p, cache)
        if tokens is None:
            out.append((p, None, source))
            continue
        cap = effective_hyperparameters(plan, p.key)["max_train_examples"]
        local = round(tokens * min(1.0, cap / rows)) if cap and rows else tokens
        out.append((p, training_estimate(plan, p.key, gcp=gcp, train_tokens=tokens, local_tokens=local,
                                         measured=measured_throughput(store.read_json, p.key)), source))
    return out


def _vertex_cost(plan: TrainingPlan, p: Pair, estimate: TrainingEstimate | None, source: str) -> str:
    """What the pair would cost as a Vertex AI job, whether or not it is tuned there in this environment."""
    if not plan.base_models[p.base_model].vertex_id:
        return "local (free)"
    if estimate is None:
        return f"materialise dataset_splits ({p.agent}) first"
    usd = estimated_cost_usd(estimate.train_tokens, plan.hyperparameters.epochs, plan.cost.price_per_million_tokens_usd)
    return f"{usd:.2f} (from {source})" if usd >= 0.01 else f"<0.01 (from {source})"


def _local_time(estimate: TrainingEstimate | None) -> str:
    if estimate is None or estimate.paid:
        return "-"
    if estimate.local_seconds is None:
        return f"unknown: set base_models.{estimate.model}.local_tokens_per_second"
    return f"{format_duration(estimate.local_seconds)} at {estimate.throughput.tokens_per_second:,.0f} tok/s"


PLAN_HEADERS = ["pair", "hf id", "vertex id", "family", "train tokens (est.)", "Vertex cost USD (est.)", "backend",
                "local training (est.)"]


def plan_rows(store: ArtifactStore, plan: TrainingPlan | None = None, gcp: bool | None = None) -> list[list[str]]:
    """Per planned pair (PLAN_HEADERS): models, family, estimated train tokens, the Vertex cost of `epochs`
    passes, who trains it in this environment and, when that is this machine, for about how long."""
    plan = plan or default_plan()
    gcp = settings.current().is_gcp if gcp is None else gcp
    rows = []
    for p, estimate, source in pair_estimates(store, plan, gcp=gcp):
        model = plan.base_models[p.base_model]
        rows.append([p.key, model.hf_id, model.vertex_id or "-", model.family,
                     str(estimate.train_tokens) if estimate else "-", _vertex_cost(plan, p, estimate, source),
                     backend_for(model, gcp=gcp), _local_time(estimate)])
    return rows


DRY_RUN_HEADERS = ["pair", "would run", "backend", "train tokens (est.)", "estimate", "cost guard", "from"]


def planned_work(status: dict) -> str:
    """What a run would do for a pair (a `pair_status` row): what it trains or evaluates, what is current."""
    stale = status["stale"]
    if status["adapter"] == "-":
        return "trains, evaluates"
    why = [reason.removeprefix("adapter (").removesuffix(")") for reason in stale.split(", ")
           if reason.startswith("adapter (")]
    if why:
        return f"retrains ({'; '.join(why)}), evaluates"
    adapter = f"adapter {status['adapter']} current (reused)"
    if status["report"] == "-" or "report (" in stale or "report missing" in stale:
        return f"{adapter}, evaluates"
    return f"{adapter}, report current (skipped)"


def dry_run_rows(store: ArtifactStore, pairs: list[str], plan: TrainingPlan | None = None) -> list[list[str]]:
    """`coursegpt run --dry-run` (DRY_RUN_HEADERS): per pair, what a run would do and what is current, who
    trains it, the estimated cost or local training time, what the cost guard would say and what the estimate is computed from."""
    plan = plan or default_plan()
    work = {row["pair"]: planned_work(row) for row in pair_status(store, plan)}
    rows = []
    for p, estimate, source in pair_estimates(store, plan, pairs):
        if estimate is None:
            rows.append([p.key, work[p.key], "-", "-", "-", "-", f"materialise dataset_splits ({p.agent}) first"])
            continue
        guard = ("passes (no cloud cost)" if not estimate.paid else
                 "passes" if estimate.within_budget else f"BLOCKS: over the ${estimate.budget_usd:,.2f} budget")
        rows.append([p.key, work[p.key], estimate.backend, str(estimate.train_tokens), estimate.headline(), guard,
                     f"{estimate.basis()}, {source}"])
    return rows


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
