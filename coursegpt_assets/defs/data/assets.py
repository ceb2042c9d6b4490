"""Agent-level data assets: raw_examples → clean_examples → dataset_splits (partitioned per agent)."""


import hashlib
import json
import tempfile

import dagster as dg
import orjson
from pydantic import Field

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core import layout, settings
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.data.cleaning import CleaningOutcome, clean, encode_raw_row
from coursegpt_assets.data.sources import line_table, pinned_source
from coursegpt_assets.data.splits import assign_ranked, seeded_rank
from coursegpt_assets.defs.common import OWNERS, ROW_COUNT, column_schema, preview, read_upstream, uri, verify
from coursegpt_assets.defs.partitions import AGENT_PARTITIONS
from resources.storage import ArtifactStore

DATA_GROUP = "data"


class RawExamplesConfig(dg.Config):
    source: str | None = Field(
        default=None, description="Override the agent's source (path, gs:// URI or hf://id[:config])"
    )


@dg.asset(
    partitions_def=AGENT_PARTITIONS,
    group_name=DATA_GROUP,
    kinds={"python", "jsonl"},
    owners=OWNERS,
    code_version="1",
)
def raw_examples(context: dg.AssetExecutionContext, config: RawExamplesConfig, store: ArtifactStore):
    """The agent's source records, copied as-is with their source line numbers (unparseable lines kept)."""
    agent_name = context.partition_key
    spec = default_plan().agents[agent_name]
    agent = get_agent(agent_name)
    source = config.source or settings.source_for(agent_name, agent.source_variable)
    read, pinned = pinned_source(source)
    context.log.info(f"{agent_name}: reading {read}")
    sample: list[dict] = []
    read_summary: dict = {}  # rows_read of source_rows, once a seeded subset has been read

    def lines():
        for row in agent.load_raw(read, seed=default_plan().hyperparameters.seed, subset_size=spec.subset_size,
                                  read=read_summary):
            if len(sample) < 5 and row.record is not None:
                sample.append(row.record)
            if row.raw is not None:  # JSONL: copied byte for byte; clean_examples parses and validates
                yield encode_raw_row(row.line, row.raw)
            elif row.record is None:
                yield encode_raw_row(row.line, error=row.error)
            else:
                yield encode_raw_row(row.line, orjson.dumps(row.record, default=str))

    def nonempty(rows):  # raising inside the stream aborts the write: the previous raw file stays
        any_row = False
        for row in rows:
            any_row = True
            yield row
        if not any_row:
            raise dg.Failure(description=f"{agent_name}: {source} holds no records (an empty file or folder); "
                                         f"check {agent.source_variable}")

    records_uri, count, sha = store.write_lines(layout.raw_records(agent_name), nonempty(lines()))
    store.write_json(layout.raw_manifest(agent_name), {"source": source, "rows": count, "sha256": sha,
                                                       "files": line_table(source), **pinned, **read_summary})
    context.log.info(f"{agent_name}: {count} rows from {read}" + (
        " (read {rows_read:,} of {source_rows:,} source rows: {subset_read})".format(**read_summary)
        if read_summary else ""))
    return dg.MaterializeResult(
        metadata={
            ROW_COUNT: count,
            "source": source,
            **{f"source_{k}": v for k, v in pinned.items()},
            **read_summary,
            "uri": uri(records_uri),
            "sha256": sha,
            "preview": preview(sample, sorted({k for r in sample for k in r})[:6]),
            **column_schema(sample),
        },
        data_version=dg.DataVersion(sha),
    )


@dg.asset(
    partitions_def=AGENT_PARTITIONS,
    group_name=DATA_GROUP,
    kinds={"python", "jsonl"},
    owners=OWNERS,
    code_version="1",
    deps=[raw_examples],
)
def clean_examples(context: dg.AssetExecutionContext, store: ArtifactStore):
    """Records that pass the agent's schema; the rest go to `quarantine/<agent>/<run>.jsonl` with line and reason."""
    agent_name = context.partition_key
    agent = get_agent(agent_name)
    limit = default_plan().agents[agent_name].max_invalid_share
    outcome = CleaningOutcome()
    index = tempfile.TemporaryFile()  # (id, prompt key) per record, spooled to disk: not held in memory
    sample: list[dict] = []
    quarantine_key = layout.quarantine(agent_name, context.run_id)

    def lines():
        raw = (line for _, line in store.iter_lines(layout.raw_records(agent_name)))
        for rec in clean(agent, raw, outcome):
            index.write(orjson.dumps([rec.id, rec.dedup_key], option=orjson.OPT_APPEND_NEWLINE))
            if len(sample) < 5:
                sample.append(rec.record)
            yield rec.line
        if outcome.quarantined:  # written before failing, so every rejected row can be inspected
            outcome.name_files(store.read_json(layout.raw_manifest(agent_name)).get("files") or [])
            store.write_jsonl(quarantine_key, outcome.quarantined)
        if outcome.invalid_share > limit:  # raising here aborts the clean file's write: nothing half-done
            raise dg.Failure(
                description=(
                    f"{agent_name}: {outcome.invalid_share:.1%} of rows are invalid (limit {limit:.0%}); "
                    f"see {store.uri(quarantine_key)}. First reasons: " + "; ".join(outcome.first_reasons())
                ),
                metadata={"quarantine": uri(store.uri(quarantine_key)), "invalid_rows": len(outcome.quarantined)},
            )

    with index:
        records_uri, count, sha = store.write_lines(layout.clean_records(agent_name), lines())
        index.seek(0)
        _, _, index_sha = store.write_lines(layout.clean_index(agent_name), (line.rstrip(b"\n") for line in index))
    quarantine_uri = store.uri(quarantine_key) if outcome.quarantined else None
    if quarantine_uri:
        context.log.warning(
            f"{agent_name}: quarantined {len(outcome.quarantined)}/{outcome.total} rows to {quarantine_uri}; "
            + " | ".join(outcome.first_reasons(3))
        )
    store.write_json(
        layout.clean_manifest(agent_name),
        {"rows": count, "quarantined": len(outcome.quarantined), "sha256": sha, "index_sha256": index_sha,
         "quarantine": quarantine_uri},
    )
    metadata = {
        ROW_COUNT: count,
        "quarantined_rows": len(outcome.quarantined),
        "invalid_share": round(outcome.invalid_share, 4),
        "uri": uri(records_uri),
        "preview": preview(sample, ["id", *agent.preview_columns]), **column_schema(sample),
    }
    if quarantine_uri:
        metadata["quarantine"] = uri(quarantine_uri)
        metadata["quarantine_reasons"] = dg.MetadataValue.md(
            "\n".join(f"- {r}" for r in outcome.first_reasons(10))
        )
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(sha))


class DatasetSplitsConfig(dg.Config):
    limit: int | None = Field(default=None, description="Smoke subset: keep only this many records (seeded)")
    think_wrapping: bool = Field(default=False, description="Wrap the thinking outline in `<think>` tags (router)")


@dg.asset(
    partitions_def=AGENT_PARTITIONS,
    group_name=DATA_GROUP,
    kinds={"python", "jsonl"},
    owners=OWNERS,
    code_version="1",
    deps=[clean_examples],
)
def dataset_splits(context: dg.AssetExecutionContext, config: DatasetSplitsConfig, store: ArtifactStore):
    """Deterministic train/validation/test splits with no id or normalised prompt in two splits. Each run writes
    its set to a folder of its own and publishes it by swapping the manifest last."""
    agent_name = context.partition_key
    agent = get_agent(agent_name)
    plan = default_plan()
    ratios, seed = plan.agents[agent_name].splits, plan.hyperparameters.seed
    clean_manifest = read_upstream(store, layout.clean_manifest(agent_name), producer=f"clean_examples for {agent_name}",
                                    partition=agent_name)
    verify(store, {layout.clean_records(agent_name): clean_manifest["sha256"],
                   layout.clean_index(agent_name): clean_manifest.get("index_sha256") or ""},
           producer="clean_examples", partition=agent_name)
    # To decide, each record is held as 32 bytes (the seeded rank of its prompt key, and of its id for a
    # smoke subset); each split file then streams the records' bytes from the clean file.
    ranks, id_ranks = [], []
    for rid, key in store.iter_jsonl(layout.clean_index(agent_name)):
        ranks.append(seeded_rank(key, seed))
        if config.limit is not None:
            id_ranks.append(seeded_rank(rid, seed))
    chosen = range(len(ranks))
    if config.limit is not None:  # the seeded_order of the ids (ties impossible: ids are unique)
        chosen = sorted(sorted(chosen, key=id_ranks.__getitem__)[: config.limit])
    assignment = assign_ranked([ranks[i] for i in chosen], validation=ratios.validation, test=ratios.test)
    split_of: list[str | None] = [None] * len(ranks)
    for i, split in zip(chosen, assignment, strict=True):
        split_of[i] = split
    del ranks, id_ranks
    counts = {s: assignment.count(s) for s in layout.SPLITS}
    version, previous = context.run_id, published_version(store, agent_name)
    train_sample: list[dict] = []

    def lines(split: str):
        """The clean records assigned to `split`, byte for byte (one pass over the clean file)."""
        n = 0
        for n, (_, line) in enumerate(store.iter_lines(layout.clean_records(agent_name)), start=1):
            if n <= len(split_of) and split_of[n - 1] == split:
                if split == "train" and len(train_sample) < 5:
                    train_sample.append(orjson.loads(line))
                yield line
        if n != len(split_of):  # raising aborts this split's write: nothing is published
            raise dg.Failure(f"{agent_name}: clean index and records disagree; re-materialise clean_examples")

    hashes = {}
    for split in layout.SPLITS:
        _, _, hashes[split] = store.write_lines(layout.split_records(agent_name, split, version), lines(split))
    # the think option changes what tuning_dataset renders from these same files: part of the version
    content_hash = hashlib.sha256(json.dumps({**hashes, "think_wrapping": config.think_wrapping},
                                             sort_keys=True).encode()).hexdigest()
    raw = store.read_json(layout.raw_manifest(agent_name))
    manifest = {
        "agent": agent_name, "counts": counts, "seed": seed, "ratios": ratios.model_dump(),
        "content_hash": content_hash, "sha256": hashes, "source": raw.get("source"),
        "limit": config.limit, "think_wrapping": config.think_wrapping, "version": version,
        "previous_version": previous, **({"source_revision": raw["revision"]} if raw.get("revision") else {}),
    }
    # a concurrent run for this agent that published first has pruned this run's set as stale: publish nothing
    if missing := [s for s in layout.SPLITS if not store.exists(layout.split_records(agent_name, s, version))]:
        raise dg.Failure(description=(
            f"{agent_name}: {store.uri(layout.split_records(agent_name, missing[0], version))} went missing before "
            "this run's split set was published (another dataset_splits run for the agent published meanwhile and "
            f"removed it as stale); the published set is unchanged. Re-materialise dataset_splits for {agent_name}"))
    manifest_uri = store.write_json(layout.splits_manifest(agent_name), manifest)  # publishes the set, atomically
    # what killed runs left (unpublished sets, temp files) goes; the set before stays for readers still on it
    stale = store.prune(layout.splits_root(agent_name), keep=[
        layout.splits_manifest(agent_name), *(layout.splits_dir(agent_name, v) for v in (version, previous) if v)])
    if stale:
        context.log.info(f"{agent_name}: removed {len(stale)} stale split files, e.g. {stale[0]}")
    context.log.info(f"{agent_name}: splits {counts} (seed {seed}) published as version {version}")
    return dg.MaterializeResult(
        metadata={
            ROW_COUNT: len(assignment),
            **{f"{s}_rows": n for s, n in counts.items()},
            "seed": seed,
            "content_hash": content_hash,
            "version": version,
            "stale_files_removed": len(stale),
            "manifest": uri(manifest_uri),
            "preview": preview(train_sample, ["id", *agent.preview_columns]),
            **column_schema(train_sample),
        },
        data_version=dg.DataVersion(content_hash),
    )


def published_version(store: ArtifactStore, agent_name: str) -> str | None:
    """The version of the split set the manifest publishes now (None: none yet, or an unversioned one)."""
    try:
        return store.read_json(layout.splits_manifest(agent_name)).get("version")
    except FileNotFoundError:
        return None


DATA_ASSETS = [raw_examples, clean_examples, dataset_splits]
