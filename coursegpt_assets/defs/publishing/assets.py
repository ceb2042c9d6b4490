"""Publishing assets (pair partitions): model_card → [blocking card checks] → published_adapter.

`model_card` writes the Hugging Face README for the newest evaluated adapter to `cards/<pair>/README.md`;
`card_is_valid` validates that stored card (metadata round-trip, no secrets); `not_a_smoke_model`
refuses a smoke-test model (tiny-llama: random weights, a few steps). `published_adapter` sends the card
with the adapter and tokenizer files through the `hub` resource. Publishing is its own asset, and runs
only in `publish_job`, so a reviewer can read the card before anything leaves the machine; it refuses a
smoke pair itself too, so no selection (a UI materialisation of it alone) can publish one.
"""


import hashlib
import tempfile
from pathlib import Path

import dagster as dg

from coursegpt_assets.cards.builder import CardInputs, build_card, inputs_from_plan
from coursegpt_assets.cards.validation import validate_card
from coursegpt_assets.core import layout
from coursegpt_assets.core.names import ADAPTER_VERSION_TAG, split_pair
from coursegpt_assets.core.plan import TrainingPlan, default_plan
from coursegpt_assets.defs.common import OWNERS, read_latest_version, read_upstream, uri
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from resources.hub import Hub, repo_id_for, stage_repo
from resources.storage import ArtifactStore

PUBLISHING_GROUP = "publishing"
CARD_CHECK = "card_is_valid"
SMOKE_CHECK = "not_a_smoke_model"
#: the job that publishes (defs/jobs.py); the smoke check blocks there and only warns in any other run
PUBLISH_JOB = "publish_job"


def load_card_inputs(store: ArtifactStore, plan: TrainingPlan, pair: str, repo_id: str,
                     adapter_version: str | None = None) -> tuple[CardInputs, dict]:
    """Read the newest report, the adapter it evaluated and the data manifests; refuse a stale pairing.
    `adapter_version` (a sensor-requested run's tag) replaces the newest adapter as the one to describe."""
    agent = plan.pair(pair).agent

    def upstream(key: str, producer: str, *, latest: bool = False, partition: str = pair):
        read = read_latest_version if latest else read_upstream
        return read(store, key, producer=f"{producer} for partition {partition}", partition=partition)

    report_version = upstream(layout.report_latest(pair), "evaluation_report", latest=True)
    report_dir = layout.report_dir(pair, report_version)
    report = upstream(layout.report_file(pair, report_version), "evaluation_report")
    adapter_version = adapter_version or upstream(layout.adapter_latest(pair), "adapter", latest=True)
    evaluated = str(report.get("adapter_version"))
    if evaluated != adapter_version:
        raise dg.Failure(
            description=(
                f"{pair}: the newest adapter is {adapter_version} but the newest report "
                f"({store.uri(report_dir)}) evaluates {evaluated}; materialise evaluation_report for {pair} first"
            )
        )
    summary_key = layout.adapter_summary(pair, adapter_version)
    summary = upstream(summary_key, "adapter")
    if str(summary.get("version", adapter_version)) != adapter_version or summary.get("pair", pair) != pair:
        raise dg.Failure(description=f"{pair}: {store.uri(summary_key)} describes another pair or version")
    try:
        report_md = store.read_text(f"{report_dir}/report.md")
    except FileNotFoundError:
        report_md = ""
    inputs = inputs_from_plan(
        plan, pair, repo_id=repo_id, summary=summary, report=report, report_markdown=report_md,
        tuning_manifest=upstream(layout.tuning_manifest(pair), "tuning_dataset"),
        splits_manifest=upstream(layout.splits_manifest(agent), "dataset_splits", partition=agent),
    )
    versions = {"adapter_version": adapter_version, "report_version": report_version}
    return inputs, versions


def _body(card_text: str) -> str:
    """The card without its YAML front matter (what the Hub renders as the page)."""
    parts = card_text.split("\n---\n", 1)
    return parts[1].lstrip() if card_text.startswith("---") and len(parts) == 2 else card_text


@dg.asset(
    partitions_def=PAIR_PARTITIONS,
    deps=[dg.AssetDep("evaluation_report"), dg.AssetDep("adapter")],
    group_name=PUBLISHING_GROUP,
    kinds={"huggingface", "markdown"},
    owners=OWNERS,
    code_version="1",
)
def model_card(context: dg.AssetExecutionContext, store: ArtifactStore) -> dg.MaterializeResult:
    """Hugging Face model card (README.md) of the newest evaluated adapter, generated from its artifacts."""
    pair = context.partition_key
    plan = default_plan()
    repo_id = repo_id_for(plan.hub_organization, pair)
    inputs, versions = load_card_inputs(store, plan, pair, repo_id,
                                        adapter_version=context.run.tags.get(ADAPTER_VERSION_TAG))
    text = build_card(inputs)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    card_uri = store.write_text(layout.card(pair), text, "text/markdown")
    store.write_json(layout.card_manifest(pair), {"pair": pair, "repo_id": repo_id, "card_sha256": sha, **versions})
    headline = inputs.report.get("headline") or {}
    context.log.info(f"{pair}: card for adapter {versions['adapter_version']} written to {card_uri}")
    return dg.MaterializeResult(
        metadata={
            "card": uri(card_uri),
            "preview": dg.MetadataValue.md(_body(text)),
            "repo_id": repo_id,
            "adapter_version": versions["adapter_version"],
            "report_version": versions["report_version"],
            "eval_results": len(headline),
            "smoke": inputs.smoke,
            "card_sha256": sha,
        },
        data_version=dg.DataVersion(sha),
    )


@dg.asset_check(
    asset=model_card,
    name=CARD_CHECK,
    partitions_def=PAIR_PARTITIONS,
    blocking=True,
    description="The stored card's metadata round-trips through huggingface_hub and it holds no secret or local path.",
)
def card_is_valid(context: dg.AssetCheckExecutionContext, store: ArtifactStore) -> dg.AssetCheckResult:
    pair = context.partition_key
    text = store.read_text(layout.card(pair))
    problems = validate_card(text)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "problem_count": len(problems),
            "card": uri(store.uri(layout.card(pair))),
        },
    )


def smoke_reasons(store: ArtifactStore, plan: TrainingPlan, pair: str) -> list[str]:
    """Why this pair's adapter is a smoke-test model (empty when it is not): the plan marks its base model
    `smoke: true`, or the adapter the stored card describes was trained with the smoke tier."""
    base_model = split_pair(pair)[1]
    reasons = []
    if plan.is_smoke(pair):
        reasons.append(f"base model {base_model} is a smoke-test model (smoke: true in training_plan.yaml)")
    if store.exists(layout.card_manifest(pair)):
        version = store.read_json(layout.card_manifest(pair)).get("adapter_version")
        summary_key = layout.adapter_summary(pair, str(version))
        if version and store.exists(summary_key) and store.read_json(summary_key).get("smoke"):
            reasons.append(f"adapter {version} was trained as a smoke test ({store.uri(summary_key)}: smoke true)")
    return reasons


@dg.asset_check(
    asset=model_card,
    name=SMOKE_CHECK,
    partitions_def=PAIR_PARTITIONS,
    blocking=True,
    description=(f"The adapter is not a smoke-test model. Blocks published_adapter in {PUBLISH_JOB}; anywhere "
                 "else a smoke pair only warns (its card is rendered, never published)."),
)
def not_a_smoke_model(context: dg.AssetCheckExecutionContext, store: ArtifactStore) -> dg.AssetCheckResult:
    pair = context.partition_key
    reasons = smoke_reasons(store, default_plan(), pair)
    publishing = context.run.job_name == PUBLISH_JOB
    return dg.AssetCheckResult(
        passed=not reasons,
        severity=dg.AssetCheckSeverity.ERROR if publishing else dg.AssetCheckSeverity.WARN,
        description=(f"{pair}: a smoke-test model is never published: " + "; ".join(reasons)) if reasons else None,
        metadata={"smoke": bool(reasons), "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in reasons) or "none"),
                  "blocks_publishing": publishing},
    )


def _card_to_publish(store: ArtifactStore, pair: str, repo_id: str, log) -> tuple[str, dict]:
    """The stored card, checked again (publishing may run apart from the check) and aimed at `repo_id`."""
    text = store.read_text(layout.card(pair))
    manifest = read_upstream(store, layout.card_manifest(pair), producer=f"model_card for partition {pair}",
                             partition=pair)
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != manifest.get("card_sha256"):
        raise dg.Failure(description=f"{pair}: {store.uri(layout.card(pair))} changed since model_card wrote it; "
                                     f"re-materialise model_card for {pair} and review it")
    if manifest["repo_id"] != repo_id:  # the hub resource names another organisation than the plan
        log.info(f"{pair}: card written for {manifest['repo_id']}, publishing to {repo_id}")
        text = text.replace(manifest["repo_id"], repo_id)
    problems = validate_card(text)
    if problems:
        raise dg.Failure(description=f"{pair}: the model card fails validation: " + "; ".join(problems))
    return text, manifest


@dg.asset(
    partitions_def=PAIR_PARTITIONS,
    deps=[model_card],
    group_name=PUBLISHING_GROUP,
    kinds={"huggingface"},
    owners=OWNERS,
    code_version="1",
)
def published_adapter(context: dg.AssetExecutionContext, store: ArtifactStore, hub: Hub) -> dg.MaterializeResult:
    """The reviewed card, adapter and tokenizer files published as a Hugging Face model repository."""
    pair = context.partition_key
    plan = default_plan()
    reasons = smoke_reasons(store, plan, pair)
    if reasons:
        raise dg.Failure(description=f"{pair}: refusing to publish a smoke-test model: " + "; ".join(reasons)
                         + ". Publish a pair of a real base model (coursegpt run --publish --base-model <model>)")
    repo_id = hub.repo_id(pair, plan.hub_organization)
    text, manifest = _card_to_publish(store, pair, repo_id, context.log)
    version = manifest["adapter_version"]
    with tempfile.TemporaryDirectory(prefix="coursegpt-publish-") as tmp:
        adapter_local = store.local_dir(layout.adapter_dir(pair, version), Path(tmp) / "cache")
        staged = Path(tmp) / "repo"
        stage_repo(adapter_local, text, staged, plan.base_model_for(pair).hf_id)
        result = hub.publish(staged, repo_id, commit_message=f"Publish {pair} adapter {version}")
    verb = "published" if result.uploaded else "dry run, would publish"
    context.log.info(f"{pair}: {verb} {len(result.files)} files to {result.location}")
    location = (dg.MetadataValue.url(result.location) if result.location.startswith("http")
                else dg.MetadataValue.path(result.location))
    return dg.MaterializeResult(
        metadata={
            "repo_id": repo_id,
            "location": location,
            "files": dg.MetadataValue.json(list(result.files)),
            "file_count": len(result.files),
            "bytes": result.bytes_total,
            "uploaded": result.uploaded,
            "dry_run": result.dry_run,
            "private": result.private if result.private is not None else "n/a (local folder)",
            "commit": result.commit or "",
            "adapter_version": version,
            "hub": type(hub).__name__,
        },
    )


MODEL_CARD_ASSETS = [model_card, published_adapter]
MODEL_CARD_CHECKS = [card_is_valid, not_a_smoke_model]
