"""`leaderboard` (agent partitions): every evaluated base model of one agent side by side.

Reads each pair's newest report (`reports/<pair>/latest.json`) and writes `leaderboards/<agent>/`
(leaderboard.md, leaderboard.json, leaderboard.png); the table logic is in `scoring/leaderboard.py`. Below the
table, each pair's base model vs its adapter per headline metric, non-significant deltas flagged.
An agent none of whose pairs has a report yet (its Vertex jobs are still training, say) gets an empty
table that lists them as pending: that is a state of the pipeline, not a failure.
"""

import tempfile
from pathlib import Path

import dagster as dg

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.defs.common import OWNERS, image, uri
from coursegpt_assets.defs.evaluation.report import GROUP, REPORT_KEY
from coursegpt_assets.defs.partitions import AGENT_PARTITIONS, PAIRS_TO_AGENT
from coursegpt_assets.scoring.leaderboard import (
    base_vs_adapter_markdown,
    base_vs_adapter_rows,
    best_per_metric,
    comparability,
    finite_number,
    leaderboard_chart,
    leaderboard_markdown,
    leaderboard_rows,
)
from coursegpt_assets.scoring.perplexity import perplexity_metadata
from resources.storage import ArtifactStore


def _table(rows: list[dict]) -> dg.MetadataValue:
    """The leaderboard as a Dagster table (sortable in the UI): one record per pair, a column per metric."""
    metrics = list(dict.fromkeys(m for r in rows if r["evaluated"] for m in r["headline"]))
    columns = [dg.TableColumn("base_model", "string"), dg.TableColumn("evaluated", "bool"),
               dg.TableColumn("smoke", "bool"), dg.TableColumn("samples", "int"),
               *(dg.TableColumn(m, "float") for m in metrics), dg.TableColumn("report_version", "string")]
    records = []
    for r in rows:
        numbers = {m: finite_number(r["headline"].get(m)) for m in metrics} if r["evaluated"] else dict.fromkeys(metrics)
        records.append(dg.TableRecord({
            "base_model": r["base_model"], "evaluated": r["evaluated"], "smoke": r.get("smoke"),
            "samples": r.get("samples"), **numbers, "report_version": r.get("report_version")}))
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=columns))


def _newest_report(store: ArtifactStore, pair: str) -> dict | None:
    if not store.exists(layout.report_latest(pair)):
        return None
    version = store.read_json(layout.report_latest(pair)).get("version")
    key = layout.report_file(pair, str(version))
    return store.read_json(key) if version and store.exists(key) else None


@dg.asset(
    partitions_def=AGENT_PARTITIONS,
    deps=[dg.AssetDep(REPORT_KEY, partition_mapping=PAIRS_TO_AGENT)],
    group_name=GROUP,
    kinds={"python", "markdown"},
    owners=OWNERS,
    code_version="1",
)
def leaderboard(context: dg.AssetExecutionContext, store: ArtifactStore) -> dg.MaterializeResult:
    """Every evaluated base model of the agent side by side (markdown, JSON, PNG) with the best per metric."""
    agent = context.partition_key
    pairs = [p.key for p in default_plan().planned_pairs if p.agent == agent]
    reports = {pair: _newest_report(store, pair) for pair in pairs}
    rows = leaderboard_rows(reports)
    compared = base_vs_adapter_rows(reports)
    evaluated = [r for r in rows if r["evaluated"]]
    pending = [r["pair"] for r in rows if not r["evaluated"]]
    if not evaluated:
        context.log.info(f"{agent}: no pair has an evaluation report yet; pending: {', '.join(pending)} "
                         "(evaluation_report adds each, e.g. when new_adapter_sensor evaluates a Vertex adapter)")
    best, notes = best_per_metric(rows, get_agent(agent).lower_is_better), comparability(rows)
    markdown = leaderboard_markdown(agent, rows, best, notes) + base_vs_adapter_markdown(compared)
    folder = layout.leaderboard_dir(agent)
    with tempfile.TemporaryDirectory(prefix="coursegpt-leaderboard-") as tmp:
        chart = leaderboard_chart(agent, rows, Path(tmp) / "leaderboard.png")
        shown = {}
        if chart is not None:
            store.write_bytes(f"{folder}/leaderboard.png", chart.read_bytes(), "image/png")
            shown = {"chart": image(chart.read_bytes(), f"{agent} leaderboard")}
    store.write_text(f"{folder}/leaderboard.md", markdown, "text/markdown")
    json_uri = store.write_json(f"{folder}/leaderboard.json",
                                {"agent": agent, "rows": rows, "best": best, "notes": notes,
                                 "base_vs_adapter": compared})
    for note in notes:
        context.log.warning(f"{agent}: {note}")
    numbers = {f"{r['base_model']}/{m}": float(v) for r in evaluated for m, v in r["headline"].items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    numbers.update({f"{r['base_model']}/{k}": v for r in evaluated for k, v in perplexity_metadata(r["perplexity"]).items()
                    if k in ("perplexity_base", "perplexity_adapter")})
    return dg.MaterializeResult(metadata={
        "table": _table(rows), "leaderboard_md": dg.MetadataValue.md(markdown), **{k: v for k, v in shown.items() if v},
        "evaluated_models": len(evaluated),
        "not_evaluated": len(pending), "pending": ", ".join(pending) or "none",
        "leaderboard": uri(json_uri), "comparable": not notes,
        **{f"best/{m}": ", ".join(b["base_models"]) for m, b in best.items()}, **numbers,
        **{f"{r['base_model']}/{r['metric']}/delta": float(r["delta"]) for r in compared if r.get("delta") is not None},
    })
