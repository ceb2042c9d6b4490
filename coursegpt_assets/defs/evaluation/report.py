"""`evaluation_report` (pair partitions): the pair's adapter answers its agent's benchmark.

- `evaluation_report` answers the agent's `benchmark` with the pair's newest `adapter` through the
  `inference` resource (which proves the adapter, not the base model, answered), saves the predictions,
  scores them with the agent's local `evaluate` module and writes `reports/<pair>/<version>/`
  (predictions.jsonl, benchmark_rows.jsonl, scores.json, PNG plots, report.md, report.json last), then
  `reports/<pair>/latest.json`. Each threshold of the agent is a WARN check: a miss never fails the run.
 - The base model answers the same rows with the same prompts and decoding (locally the same load with the
   adapter disabled); its scores are cached per base model, benchmark, prompts, settings and scoring code
   (`base_model.py`), and the report compares both with bootstrap intervals; `adapter_beats_base` is a WARN check.
 - It also measures held-out perplexity, adapter and base model, on the agent's test (else validation) split
   (`heldout.py`): report.json `perplexity`, metadata `perplexity_adapter` / `perplexity_base`.
The report version hashes adapter version + benchmark version + inference settings (the held-out rows
included) + the base scores' key, so an unchanged input reuses its report instead of generating again
(unless `force`). While a remote backend generates, its finished answers are kept beside the report
(`layout.prediction_log`), and a re-run after a failure generates only the missing rows.
"""

import dataclasses
import re
import tempfile
import warnings
from pathlib import Path

import dagster as dg
from pydantic import Field

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core import layout, settings
from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.core.names import ADAPTER_VERSION_TAG, split_pair
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.data.benchmark_rows import select_per_source, sources
from coursegpt_assets.defs.common import OWNERS, read_latest_version, read_upstream, stored_image, uri
from coursegpt_assets.defs.evaluation.base_model import (
    BEATS_CHECK,
    base_for_report,
    beats_base_result,
    comparison_metadata,
    find_base_scores,
    store_base_scores,
)
from coursegpt_assets.defs.evaluation.heldout import held_out, measure
from coursegpt_assets.defs.partitions import AGENT_TO_PAIRS, PAIR_PARTITIONS
from coursegpt_assets.scoring.comparison import comparison
from coursegpt_assets.scoring.perplexity import perplexity_metadata
from coursegpt_assets.scoring.report import (
    build_report,
    prediction_rows,
    report_markdown,
    report_version,
    with_sources,
    write_plots,
)
from coursegpt_assets.scoring.router_thresholds import load_thresholds
from coursegpt_assets.scoring.token_budget import (
    FLOOR,
    MAX_SHARE_AT_BUDGET,
    TokenBudget,
    answers_at_budget,
    from_references,
    tokenizer_counter,
)
from resources.inference import GenerationRequest, Inference
from resources.prediction_log import PredictionLog
from resources.storage import ArtifactStore

GROUP = "evaluation"
REPORT_KEY = dg.AssetKey("evaluation_report")
CURRENT_CHECK = "report_is_current"
BUDGET_CHECK = "answers_within_token_budget"


class EvaluationConfig(dg.Config):
    max_examples: int | None = Field(
        default=None, gt=0, description="Rows to answer from each benchmark source (a seeded subset of each); "
                                        "default: all, or smoke.benchmark_subset_rows for smoke models")
    max_new_tokens: int | None = Field(
        default=None, gt=0, description=f"Token budget per answer; default: smoke.max_new_tokens for smoke models, "
                                        f"else sized from the benchmark's longest reference answer (at least {FLOOR})")
    force: bool = Field(default=False, description="Generate again even when this report version exists")
    max_perplexity_rows: int | None = Field(
        default=None, gt=0, description="Held-out rows whose perplexity is measured (a seeded sample); default: "
                                        "all, or smoke.max_perplexity_rows for smoke models")


def strip_think(text: str) -> str:
    """The answer after a leading `<think>…</think>` block (unchanged when there is none)."""
    stripped = text.lstrip()
    if stripped.startswith("<think>") and "</think>" in stripped:
        return stripped.split("</think>", 1)[1].lstrip()
    return text


# -- threshold checks ------------------------------------------------------------------------------------
def threshold_check_name(agent: str, bucket: str, metric: str, bound: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{agent}_{bucket}_{metric}_{bound}")


def _threshold_specs() -> list[dg.AssetCheckSpec]:
    """One WARN check per threshold of every planned agent that has a thresholds file (`Agent.thresholds_path`)."""
    specs = []
    for agent in default_plan().agent_names:
        path = get_agent(agent).thresholds_path
        if path is None:
            continue
        for bucket, bounds in load_thresholds(path).items():
            for bound, limits in bounds.items():
                for metric, limit in limits.items():
                    sign = ">=" if bound == "min" else "<="
                    specs.append(dg.AssetCheckSpec(
                        threshold_check_name(agent, bucket, metric, bound), asset=REPORT_KEY,
                        partitions_def=PAIR_PARTITIONS,
                        description=f"WARN ({agent} pairs): {bucket} {metric} {sign} {limit} ({path.name})"))
    return specs


with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13 (the fix for dagster#27747)
    warnings.simplefilter("ignore", category=dg.PreviewWarning)
    THRESHOLD_CHECKS = _threshold_specs()
_THRESHOLD_NAMES = {spec.name for spec in THRESHOLD_CHECKS}


def threshold_results(report: dict) -> list[dg.AssetCheckResult]:
    """One WARN result per threshold verdict in the report. A bucket without benchmark rows yields no
    result (nothing was measured); a metric missing from a measured bucket (no parseable prediction) fails."""
    results = []
    for verdict in (report.get("thresholds") or {}).get("checks", []):
        name = threshold_check_name(report["agent"], verdict["bucket"], verdict["metric"], verdict["bound"])
        samples = (report["metrics"].get(verdict["bucket"]) or {}).get("samples", 0)
        if name not in _THRESHOLD_NAMES or (verdict["status"] == "missing" and not samples):
            continue
        sign = ">=" if verdict["bound"] == "min" else "<="
        value = verdict["value"]
        shown = "not measured (no prediction parsed)" if value is None else f"{value:.4f}"
        results.append(dg.AssetCheckResult(
            asset_key=REPORT_KEY, check_name=name, passed=verdict["status"] == "pass",
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{verdict['bucket']} {verdict['metric']} = {shown} (wanted {sign} {verdict['threshold']}, "
                        f"{samples} samples)",
            metadata={"value": float(value) if value is not None else dg.MetadataValue.null(),
                      "threshold": float(verdict["threshold"]), "samples": int(samples),
                      "status": verdict["status"]},
        ))
    return results


# -- evaluation_report -----------------------------------------------------------------------------------
def _request(context, store: ArtifactStore, config: EvaluationConfig):
    """Everything the run needs: the generation request, the benchmark rows and the version inputs."""
    pair = context.partition_key
    agent_name, base_model = split_pair(pair)
    plan = default_plan()
    base = plan.base_models[base_model]
    # a run the new-adapter sensor requested names its adapter version; others evaluate the newest one
    version = context.run.tags.get(ADAPTER_VERSION_TAG) or read_latest_version(
        store, layout.adapter_latest(pair), producer="adapter", partition=pair)
    adir = layout.adapter_dir(pair, version)
    summary = read_upstream(store, layout.adapter_summary(pair, version), producer="adapter", partition=pair)
    manifest = read_upstream(store, layout.benchmark_manifest(agent_name), producer=f"benchmark for {agent_name}",
                             partition=pair)
    rows = store.read_jsonl(layout.benchmark_records(agent_name))
    if not rows:
        raise dg.Failure(f"{pair}: {store.uri(layout.benchmark_records(agent_name))} has no rows")
    limit = config.max_examples or (plan.smoke.benchmark_subset_rows if base.smoke else None)
    chosen = select_per_source(rows, limit, plan.hyperparameters.seed)
    source_counts = sources(rows, chosen), manifest.get("sources")  # answered per source; licences
    agent = get_agent(agent_name)
    adapter_dir = store.local_dir(adir, settings.current().home / "cache")
    budget = _budget(config, plan, base, agent, rows, adapter_dir)
    eot = (summary.get("hyperparameters") or {}).get("eos_token") or family(base.family).end_of_turn
    request = GenerationRequest(
        pair=pair, base_model=base_model, base_model_id=base.hf_id, vertex_model_id=base.vertex_id,
        adapter_dir=adapter_dir, adapter_version=version, conversations=[agent.benchmark_messages(r) for r in chosen],
        max_new_tokens=budget.max_new_tokens, end_of_turn=eot, summary=summary,
        vertex_base_endpoint=base.vertex_base_endpoint)
    return request, agent, chosen, len(rows), manifest["version"], limit, base, budget, source_counts


def _budget(config: EvaluationConfig, plan, base, agent, rows: list[dict], adapter_dir: Path) -> TokenBudget:
    """The config's budget, the smoke tier's, or one sized from every benchmark row's reference answer."""
    if config.max_new_tokens:
        return TokenBudget(config.max_new_tokens, "EvaluationConfig.max_new_tokens")
    if base.smoke:
        return TokenBudget(plan.smoke.max_new_tokens, "smoke.max_new_tokens (a tiny smoke model)")
    return from_references((agent.reference_answer(r) for r in rows), tokenizer_counter(adapter_dir))


def budget_result(report: dict) -> dg.AssetCheckResult:
    """WARN when more than MAX_SHARE_AT_BUDGET of the answers stopped at the token budget (cut short)."""
    cut, samples = answers_at_budget(report)
    share = cut / samples if samples else 0.0
    budget = report["inference"]["max_new_tokens"]
    source = (report["inference"].get("token_budget") or {}).get("source", "not recorded")
    verdict = "within" if share <= MAX_SHARE_AT_BUDGET else "over"
    return dg.AssetCheckResult(
        asset_key=REPORT_KEY, check_name=BUDGET_CHECK, passed=share <= MAX_SHARE_AT_BUDGET,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{cut} of {samples} answers ({share:.0%}) stopped at the {budget}-token budget ({source}); "
                    f"{verdict} the {MAX_SHARE_AT_BUDGET:.0%} allowed" + (
                        "" if share <= MAX_SHARE_AT_BUDGET else
                        ": their scores count truncated answers (raise max_new_tokens, or check the end-of-turn token)"),
        metadata={"answers_at_budget": cut, "samples": samples, "share_at_budget": float(share),
                  "max_new_tokens": int(budget)})


def _metadata(report: dict, report_uri: str, markdown: str, reused: bool) -> dict:
    """Numbers as floats/ints (the UI plots them across materialisations), versions as text."""
    meta: dict = {name: float(v) for name, v in report["headline"].items()
                  if isinstance(v, int | float) and not isinstance(v, bool)}
    not_measured = [name for name, v in report["headline"].items() if v is None]
    inf, proof = report["inference"], report["adapter_proof"]
    meta.update({
        "samples": int(inf["samples"]), "benchmark_rows": int(inf["benchmark_rows"]),
        "max_new_tokens": int(inf["max_new_tokens"]), "generation_wall_time_s": float(inf["wall_time_s"]),
        "finished_at_end_of_turn": int(inf["finish_reasons"].get("stop", 0)),
        "report_version": report["report_version"], "adapter_version": report["adapter_version"],
        "benchmark_version": report["benchmark_version"], "adapter_sha256": str(report["adapter_sha256"]),
        "backend": str(inf["backend"]), "adapter_proof": str(proof.get("kind")), "smoke": bool(report["smoke"]),
        "reused": reused, "report": uri(report_uri), "report_md": dg.MetadataValue.md(markdown),
    })
    if inf.get("tokens_per_second"):
        meta["tokens_per_second"] = float(inf["tokens_per_second"])
    if "max_abs_logit_diff" in proof:
        meta["probe_max_abs_logit_diff"] = float(proof["max_abs_logit_diff"])
    if not_measured:
        meta["not_measured"] = ", ".join(not_measured)
    meta.update(comparison_metadata(report))
    meta.update(perplexity_metadata(report.get("perplexity")))
    verdicts = report.get("thresholds") or {}
    if verdicts.get("checks"):
        meta.update({"thresholds_passed": int(verdicts["passed"]), "thresholds_failed": int(verdicts["failed"]),
                     "thresholds_not_measured": int(verdicts["missing"])})
    return meta


def _charts(store: ArtifactStore, report: dict) -> dict[str, dg.MetadataValue]:
    """The report's per-bucket metric charts on the asset page, one entry per chart."""
    rdir = layout.report_dir(report["pair"], report["report_version"])
    charts: dict[str, dg.MetadataValue] = {}
    for name in (report.get("files") or {}).get("plots") or []:
        charts.update({f"chart/{k}": v for k, v in stored_image(store, f"{rdir}/{name}", name).items()})
    return charts


def _run(context, store: ArtifactStore, inference: Inference, config: EvaluationConfig) -> tuple[dict, str, bool]:
    """The stored report of this version, or a new one (generate, save predictions, score, write)."""
    request, agent, rows, total, bench_version, limit, base, budget, source_counts = _request(context, store, config)
    held = held_out(store, request, agent, default_plan(), base, config.max_perplexity_rows)
    settings_used = {**inference.settings(request), "heldout_perplexity": held.version_input}
    found = find_base_scores(store, inference, request, agent, rows, bench_version)
    version = report_version(adapter_version=request.adapter_version, benchmark_version=bench_version,
                             settings=settings_used, limit=limit, max_new_tokens=request.max_new_tokens,
                             base=found.version_input)
    rdir = layout.report_dir(request.pair, version)
    if store.exists(f"{rdir}/{layout.REPORT_FILE}") and not config.force:
        context.log.info(f"{request.pair}: report {version} already exists ({store.uri(rdir)}); not generating again")
        return store.read_json(f"{rdir}/{layout.REPORT_FILE}"), store.read_text(f"{rdir}/report.md"), True
    context.log.info(f"{request.pair}: answering {len(rows)} of {total} benchmark rows with adapter "
                     f"{request.adapter_version} ({settings_used['backend']})")
    if config.force:  # generate again: answers kept by an earlier failed run are not reused either
        store.delete(layout.prediction_log(request.pair, version))
    kept = PredictionLog(store, layout.prediction_log(request.pair, version), total=len(rows), label=request.pair,
                         log=context.log)
    with kept:  # a remote backend's finished answers survive a failed run; the next one resumes from them
        request = dataclasses.replace(request, prediction_log=kept)
        if found.to_generate:
            generation, base_generation = inference.generate_with_base(request, log=context.log)
        else:
            generation, base_generation = inference.generate(request, log=context.log), None
            context.log.info(f"{request.pair}: base model " + (f"scores reused from {store.uri(found.folder)}" if
                                                               found.cached else f"not measured: {found.reason}"))
    generation.wall_time_s += kept.earlier_wall_s  # the time that produced the kept answers counts too
    store.write_jsonl(f"{rdir}/predictions.jsonl",
                      prediction_rows(rows, generation.completions, generation.finish_reasons))
    store.write_jsonl(f"{rdir}/benchmark_rows.jsonl", rows)
    perplexity = measure(inference, request, held, settings_used["backend"], log=context.log)
    # an adapter tuned with <think> wrapping answers "<think>…</think>" first: score what follows it
    think = bool((store.read_json(layout.tuning_manifest(request.pair)) if store.exists(
        layout.tuning_manifest(request.pair)) else {}).get("think_wrapping"))
    score = agent.score(rows, [strip_think(c) for c in generation.completions] if think else generation.completions)
    store.write_json(f"{rdir}/scores.json", score.raw)
    base_entry = found.cached or (base_generation and store_base_scores(  # a base thinking natively is scored after it
        store, found, agent, request, rows, base_generation, [strip_think(c) for c in base_generation.completions]))
    with tempfile.TemporaryDirectory(prefix="coursegpt-plots-") as tmp:
        plots = write_plots(score, Path(tmp), request.pair)
        for name in plots:
            store.write_bytes(f"{rdir}/{name}", (Path(tmp) / name).read_bytes(), "image/png")
    files = {"predictions": "predictions.jsonl", "benchmark_rows": "benchmark_rows.jsonl", "scores": "scores.json",
             "report_md": "report.md", "plots": plots}
    report = build_report(
        pair=request.pair, agent=agent.name, base_model=request.base_model, base_model_id=request.base_model_id,
        smoke=base.smoke, version=version, adapter_version=request.adapter_version, benchmark_version=bench_version,
        benchmark_rows=total, score=score, generation=generation, budget=budget.as_dict(), limit=limit, files=files,
        perplexity=perplexity)
    report.update(comparison(score.headline, score.per_row, base_for_report(store, found, base_entry),
                             seed=default_plan().hyperparameters.seed))
    report = with_sources(report, *source_counts)
    markdown = report_markdown(report, score.plot_metrics)
    store.write_text(f"{rdir}/report.md", markdown, "text/markdown")
    store.write_json(f"{rdir}/{layout.REPORT_FILE}", report)  # last: the report is complete once this exists
    kept.discard()  # predictions.jsonl holds them now
    return report, markdown, False


with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=dg.PreviewWarning)

    @dg.multi_asset(
        name="evaluation_report",
        specs=[dg.AssetSpec(
            REPORT_KEY, partitions_def=PAIR_PARTITIONS, group_name=GROUP, kinds={"pytorch", "huggingface"},
            owners=OWNERS, code_version="1",
            deps=[dg.AssetDep("adapter"), dg.AssetDep("benchmark", partition_mapping=AGENT_TO_PAIRS)],
            description="The pair's adapter answers its agent's benchmark; predictions, scores, plots and "
                        "report.json under `reports/<pair>/<version>/` (the adapter is proven applied).",
        )],
        partitions_def=PAIR_PARTITIONS,
        check_specs=[*THRESHOLD_CHECKS, dg.AssetCheckSpec(
            BUDGET_CHECK, asset=REPORT_KEY, partitions_def=PAIR_PARTITIONS,
            description=f"WARN: at most {MAX_SHARE_AT_BUDGET:.0%} of the answers stop at the token budget "
                        "(more means the scores count truncated answers)"), dg.AssetCheckSpec(
            BEATS_CHECK, asset=REPORT_KEY, partitions_def=PAIR_PARTITIONS,
            description="WARN: the adapter does better than its base model on the agent's primary headline metric "
                        "(metadata: both numbers and the delta's bootstrap interval)")],
        can_subset=True,  # threshold checks exist for agents with thresholds only; other pairs yield none
        pool="gpu",  # local generation holds the GPU, like local training (tuning_job)
    )
    def evaluation_report(context: dg.AssetExecutionContext, config: EvaluationConfig, store: ArtifactStore,
                          inference: Inference):
        """Generate, save, score and report one pair; WARN checks judge the agent's thresholds."""
        if REPORT_KEY in context.selected_asset_keys:
            report, markdown, reused = _run(context, store, inference, config)
        else:  # only checks selected: judge the stored newest report again
            pair = context.partition_key
            latest = read_latest_version(store, layout.report_latest(pair), producer="evaluation_report", partition=pair)
            report = store.read_json(layout.report_file(pair, latest))
        selected = {key.name for key in context.selected_asset_check_keys}
        checks = [c for c in [*threshold_results(report), budget_result(report),
                              beats_base_result(report, get_agent(report["agent"]), REPORT_KEY)]
                  if c.check_name in selected]
        if REPORT_KEY not in context.selected_asset_keys:
            yield from checks
            return
        pointer = store.write_json(layout.report_latest(report["pair"]), {"version": report["report_version"]})
        rdir_uri = store.uri(layout.report_dir(report["pair"], report["report_version"]))
        context.log.info(f"{report['pair']}: report {report['report_version']} at {rdir_uri}; latest.json updated")
        yield dg.MaterializeResult(
            asset_key=REPORT_KEY,
            metadata={**_metadata(report, f"{rdir_uri}/{layout.REPORT_FILE}", markdown, reused), "latest": uri(pointer),
                      **_charts(store, report)},
            check_results=checks, data_version=dg.DataVersion(report["report_version"]))

    @dg.asset_check(asset=REPORT_KEY, name=CURRENT_CHECK, partitions_def=PAIR_PARTITIONS, blocking=False,
                    description="The newest report evaluates the newest adapter on the current benchmark "
                                "(else the card would describe a stale pairing).")
    def report_is_current(context: dg.AssetCheckExecutionContext, store: ArtifactStore) -> dg.AssetCheckResult:
        pair = context.partition_key
        agent_name, _ = split_pair(pair)
        latest = read_latest_version(store, layout.report_latest(pair), producer="evaluation_report", partition=pair)
        report = read_upstream(store, layout.report_file(pair, latest), producer="evaluation_report", partition=pair)
        wanted = {"adapter_version": read_latest_version(store, layout.adapter_latest(pair), producer="adapter",
                                                         partition=pair),
                  "benchmark_version": read_upstream(store, layout.benchmark_manifest(agent_name),
                                                     producer=f"benchmark for {agent_name}", partition=pair).get("version")}
        stale = {k: (report.get(k), v) for k, v in wanted.items() if report.get(k) != v}
        return dg.AssetCheckResult(
            passed=not stale, severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(f"report has {k} {got}, newest is {new}" for k, (got, new) in stale.items())
            or f"report {latest} evaluates the newest adapter and benchmark",
            metadata={"report_version": latest, "stale_fields": len(stale)})
