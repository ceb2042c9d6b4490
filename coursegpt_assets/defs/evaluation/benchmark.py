"""The `benchmark` asset: evaluation rows per agent, and the blocking check that none leaked.

The agent builds its rows (`Agent.benchmark_rows`) from its held-out splits and, by default, the external
benchmarks shipped with the package (router hard set, MathBench, HumanEval); every row names its `source`
and `origin`. They are written to benchmarks/<agent>/benchmark.jsonl with a manifest whose `version` is the
file's sha256 and whose `sources` list each source with its row count, origin and licence.
"""


import warnings

import dagster as dg
from pydantic import Field

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.data.benchmark_rows import BenchmarkError, counts_by, overlapping_ids, sources
from coursegpt_assets.defs.common import OWNERS, ROW_COUNT, preview, published_splits, uri
from coursegpt_assets.defs.partitions import AGENT_PARTITIONS
from resources.storage import ArtifactStore

EVALUATION_GROUP = "evaluation"


class BenchmarkConfig(dg.Config):
    """Knobs of the benchmark; the agent-specific ones (prefixed by the agent in their description) are read
    by that agent's `benchmark_rows`."""

    include_external: bool = Field(
        default=True,
        description="Add the agent's external benchmarks: router the shipped hard set, math MathBench (or the "
        "files math_files / $COURSEGPT_MATH_BENCHMARKS name), code HumanEval",
    )
    math_files: list[str] | None = Field(
        default=None,
        description="math: benchmark .jsonl files, folders or globs (default: $COURSEGPT_MATH_BENCHMARKS, "
        "else the shipped MathBench files)",
    )
    include_validation: bool = Field(default=True, description="math: add the held-out validation split")
    hard_per_category: int | None = Field(
        default=None, description="router: at most this many hard validation rows per category (rarest first)"
    )
    drop_train_overlap: bool = Field(
        default=False,
        description="Drop rows whose question is in the train split (ids recorded) instead of failing the check",
    )


def build_rows(agent_name: str, store: ArtifactStore, config: BenchmarkConfig, split_keys: dict[str, str]
               ) -> tuple[list[dict], list[dict]]:
    """The agent's benchmark rows and the external files they came from (path, sha256, rows); `split_keys`
    are the files of the published split set."""

    def held_out(split: str) -> list[dict]:
        if split == "train":
            raise dg.Failure(f"{agent_name}: the agent's benchmark_rows read the train split; "
                             "a benchmark is built from held-out splits only")
        return store.read_jsonl(split_keys[split])

    try:
        return get_agent(agent_name).benchmark_rows(held_out, seed=default_plan().hyperparameters.seed, config=config)
    except (BenchmarkError, FileNotFoundError) as e:
        raise dg.Failure(f"{agent_name}: cannot build the benchmark: {e}") from None


def source_table(rows: list[dict], files: list[dict]) -> list[dict]:
    """Each source's row count and origin (`sources`), with the licence and URL of the file it came from."""
    licences = {f["source"]: {"license": f.get("license"), "url": f.get("url")} for f in files if f.get("source")}
    try:
        table = sources(rows)
    except BenchmarkError as e:
        raise dg.Failure(str(e)) from None
    return [{**entry, **licences.get(entry["source"], {})} for entry in table]


def train_keys(store: ArtifactStore, agent_name: str, train_key: str | None = None) -> set[str]:
    """Normalised prompts of the training split (by default, the published set's): what a benchmark question
    must never equal."""
    agent = get_agent(agent_name)
    if train_key is None:
        train_key = published_splits(store, agent_name, ("train",), partition=agent_name)[1]["train"]
    return {agent.dedup_key(r) for r in store.iter_jsonl(train_key)}


@dg.asset(
    partitions_def=AGENT_PARTITIONS,
    group_name=EVALUATION_GROUP,
    kinds={"python", "jsonl"},
    owners=OWNERS,
    code_version="2",  # 2: external benchmarks shipped with the package; rows carry `origin`
    deps=[dg.AssetDep("dataset_splits")],
)
def benchmark(context: dg.AssetExecutionContext, config: BenchmarkConfig, store: ArtifactStore):
    """Evaluation rows for the agent: its held-out splits (never train) and the shipped external benchmarks,
    each row with `id`, `source`, `origin` and the fields its scorer reads; counts per source in the metadata."""
    agent_name = context.partition_key
    splits_manifest, split_keys = published_splits(store, agent_name, partition=agent_name)
    rows, files = build_rows(agent_name, store, config, split_keys)
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise dg.Failure(f"{agent_name}: benchmark ids repeat: {repeated}")
    agent = get_agent(agent_name)
    overlap = overlapping_ids(agent, rows, train_keys(store, agent_name, split_keys["train"]))
    dropped: list[str] = []
    if config.drop_train_overlap and overlap:
        dropped, overlap = overlap, []
        dropped_ids = set(dropped)
        rows = [r for r in rows if r["id"] not in dropped_ids]
        context.log.warning(f"{agent_name}: dropped {len(dropped)} benchmark rows also in the train split")
    records_uri, count, version = store.write_jsonl(layout.benchmark_records(agent_name), rows)
    counts = {field: counts_by(rows, field) for field in agent.counted_fields}
    table = source_table(rows, files)
    manifest = {
        "agent": agent_name, "version": version, "rows": count, "counts": counts, "files": files, "sources": table,
        "splits_content_hash": splits_manifest["content_hash"],
        "train_overlap_ids": overlap, "dropped_train_overlap_ids": dropped,
    }
    manifest_uri = store.write_json(layout.benchmark_manifest(agent_name), manifest)
    context.log.info(f"{agent_name}: {count} benchmark rows {counts}")
    numeric = {f"{field}/{value}": n for field, values in counts.items() for value, n in values.items()}
    return dg.MaterializeResult(
        metadata={
            ROW_COUNT: count,
            **numeric,
            "counts": dg.MetadataValue.json(counts),
            "sources": dg.MetadataValue.md(sources_markdown(table)),
            "version": version,
            "train_overlap_rows": len(overlap),
            "dropped_train_overlap_rows": len(dropped),
            "uri": uri(records_uri),
            "manifest": uri(manifest_uri),
            "preview": preview(rows, list(agent.benchmark_preview_columns)),
        },
        data_version=dg.DataVersion(version),
    )


def sources_markdown(table: list[dict]) -> str:
    lines = ["| source | origin | rows | licence |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {e['source']} | {e['origin']} | {e['rows']} | {e.get('license') or '—'} |"
                              for e in table])


def leakage_result(agent_name: str, store: ArtifactStore) -> dg.AssetCheckResult:
    """Fails with the overlapping ids when a stored benchmark question, from any source, is in the train split."""
    rows = store.read_jsonl(layout.benchmark_records(agent_name))
    keys = train_keys(store, agent_name)
    overlap = overlapping_ids(get_agent(agent_name), rows, keys)
    leaked = set(overlap)
    per_source = {s: sum(1 for r in rows if r.get("source") == s and r["id"] in leaked)
                  for s in dict.fromkeys(r.get("source") for r in rows)}
    named = ", ".join(f"{s} {n}" for s, n in per_source.items() if n)
    return dg.AssetCheckResult(
        passed=not overlap,
        description=(
            f"{agent_name}: {len(overlap)} of {len(rows)} benchmark questions are in the train split ({named}; "
            "rerun benchmark with drop_train_overlap, or fix the split)" if overlap
            else f"{agent_name}: none of {len(rows)} benchmark questions ({len(per_source)} sources) is in the "
                 "train split"
        ),
        metadata={
            **{f"overlap_rows/{s}": n for s, n in per_source.items()},
            "overlap_rows": len(overlap),
            "benchmark_rows": len(rows),
            "train_questions": len(keys),
            "overlapping_ids": dg.MetadataValue.json(overlap[:200]),
        },
    )


# Partitioned checks are "preview" in Dagster 1.13 but are the fix for checks loading every partition
# (dagster#27747); silence the import-time notice so it does not drown the run output.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=dg.PreviewWarning)

    @dg.asset_check(
        asset=benchmark,
        partitions_def=AGENT_PARTITIONS,
        blocking=True,
        description="No benchmark question (normalised) appears in the agent's training split.",
    )
    def benchmark_not_in_train(context: dg.AssetCheckExecutionContext, store: ArtifactStore) -> dg.AssetCheckResult:
        return leakage_result(context.partition_key, store)


BENCHMARK_ASSETS = [benchmark]
BENCHMARK_CHECKS = [benchmark_not_in_train]
