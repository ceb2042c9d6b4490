"""Hugging Face model cards for the adapters, generated from the artifacts rather than typed by hand.

The seed wrote its READMEs by hand and its numbers drifted from the reports. Here the metadata is a
`huggingface_hub.ModelCardData` (with a `model-index` of every headline metric of the evaluation
report) and the body is a Jinja template rendered by `ModelCard.from_template`. Every string taken
from a training summary, report or manifest is scrubbed of tokens and local paths first, and
`cards/validation.py`'s `validate_card` is what the blocking card check runs.

huggingface_hub's card classes cost ~0.15 s to import, so they are imported inside the functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from coursegpt_assets.agents import get_agent
from coursegpt_assets.cards.base_comparison import base_comparison_context
from coursegpt_assets.cards.perplexity import perplexity_results, perplexity_rows
from coursegpt_assets.cards.sources import benchmark_sources, dataset_split, without_sources_section
from coursegpt_assets.cards.template import CARD_TEMPLATE, citation_for
from coursegpt_assets.cards.validation import SMOKE_PHRASE, SMOKE_TAG
from coursegpt_assets.core.plan import TrainingPlan
from coursegpt_assets.core.secrets_scan import find_secrets, scrub, scrub_obj
from coursegpt_assets.training.spec import VertexJob

TASK_TYPE = "text-generation"
MISSING_VALUE = "not measured"  # shown in the body; the model-index holds measured numbers only
NOT_REPORTED = "not reported by Vertex"
# What sft.train sends for each VertexJob field (the v1beta1 TuningJob JSON field it becomes).
VERTEX_FIELDS = {"source_model": "baseModel", "tuning_mode": "supervisedTuningSpec.tuningMode",
                 "epochs": "hyperParameters.epochCount",
                 "learning_rate_multiplier": "hyperParameters.learningRateMultiplier",
                 "adapter_size": "hyperParameters.adapterSize",
                 "train_sha256": "trainingDatasetUri (sha256 of the file)",
                 "validation_sha256": "validationDatasetUri (sha256 of the file)"}
assert set(VERTEX_FIELDS) == set(VertexJob.__dataclass_fields__), "describe every field Vertex receives"
# SupervisedTuningDataStats as the tuning job reports them (TuningJobInfo.data_stats)
VERTEX_STATS = {"tuning_dataset_example_count": "Tuning examples", "tuning_step_count": "Tuning steps",
                "total_billable_token_count": "Billable tokens",
                "total_tuning_character_count": "Tuning characters",
                "total_billable_character_count": "Billable characters",
                "total_truncated_example_count": "Examples Vertex dropped (too long or invalid)"}


class CardError(ValueError):
    """The inputs cannot make a valid card; the message names the artifact and the field."""


@dataclass(frozen=True)
class CardInputs:
    """Everything a card says, gathered from the plan and the store (already scrubbed)."""

    pair: str
    agent: str
    base_model: str
    base_model_id: str
    base_model_license: str
    license: str
    smoke: bool
    agent_description: str
    intended_use: str
    system_prompt: str
    synthetic_data: bool
    source: str
    source_license: str
    pipeline_tag: str
    repo_id: str
    summary: dict
    report: dict
    report_markdown: str
    tuning_manifest: dict
    splits_manifest: dict


def inputs_from_plan(
    plan: TrainingPlan,
    pair: str,
    *,
    repo_id: str,
    summary: dict,
    report: dict,
    report_markdown: str,
    tuning_manifest: dict,
    splits_manifest: dict,
) -> CardInputs:
    """Join the plan's view of the pair, its agent's card wording and the artifacts; scrub every artifact string."""
    p = plan.pair(pair)
    spec = plan.agents[p.agent]
    agent = get_agent(p.agent, plan)
    model = plan.base_models[p.base_model]
    return CardInputs(
        pair=pair,
        agent=p.agent,
        base_model=p.base_model,
        base_model_id=model.hf_id,
        base_model_license=model.license,
        license=plan.license,
        smoke=model.smoke,
        agent_description=spec.description,
        intended_use=agent.intended_use,
        system_prompt=agent.system_prompt,
        synthetic_data=agent.synthetic_data,
        source=spec.source,
        source_license=spec.source_license,
        pipeline_tag=spec.pipeline_tag,
        repo_id=repo_id,
        summary=scrub_obj(summary),
        report=scrub_obj(report),
        report_markdown=scrub(report_markdown),
        tuning_manifest=scrub_obj(tuning_manifest),
        splits_manifest=scrub_obj(splits_manifest),
    )


# -- metadata --------------------------------------------------------------------------------------------
def dataset_id(source: str) -> str | None:
    """The Hub dataset id of a plan source (`owner/name[:config][@revision]`), or None for paths and URIs."""
    name = source.removeprefix("hf://").split("@", 1)[0].split(":", 1)[0]
    return name if re.fullmatch(r"[\w.\-]+/[\w.\-]+", name) else None


def dataset_read(splits_manifest: dict) -> tuple[str | None, str | None]:
    """(Hub dataset id, commit) the splits were actually read from; (None, None) for a path, a gs:// URI or
    the shipped fixture: the card credits what was read, not what the plan names."""
    source = str(splits_manifest.get("source") or "")
    if not source.startswith("hf://"):
        return None, None
    return dataset_id(source), splits_manifest.get("source_revision")


def _backend_tag(summary: dict) -> str:
    backend = str(summary.get("backend", "")).lower()
    if backend not in ("trl", "vertex"):
        raise CardError(f"training_summary.json: backend {backend!r} is not 'trl' or 'vertex'")
    return "vertex-ai" if backend == "vertex" else "trl"


def _metric_value(value: Any) -> float | None:
    """A headline value for the model-index: a finite number, or None when the report could not measure it
    (e.g. route_plan_exact when no prediction parsed as JSON: the seed averages it over parsed predictions)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def model_name(inputs: CardInputs) -> str:
    return inputs.repo_id.rsplit("/", 1)[-1]


def build_card_data(inputs: CardInputs):
    """The card's YAML metadata as a `ModelCardData` (model-index via `EvalResult`)."""
    from huggingface_hub import EvalResult, ModelCardData

    headline = inputs.report.get("headline") or {}
    if not headline:
        raise CardError(f"reports/{inputs.pair}: report.json has no headline metrics to put in the model-index")
    # the model-index cannot hold null: unmeasured metrics are left out of it and named in the body instead
    measured = {metric: _metric_value(value) for metric, value in headline.items()
                if _metric_value(value) is not None}
    if not measured:
        raise CardError(f"reports/{inputs.pair}: report.json measured none of its headline metrics "
                        f"({', '.join(headline)})")
    benchmark = inputs.report.get("benchmark_version", "unknown")
    ds, _ = dataset_read(inputs.splits_manifest)  # the benchmark is held out of what was read, not the plan's
    ds_type = ds or inputs.agent
    results = [
        EvalResult(
            task_type=TASK_TYPE,
            task_name=f"{inputs.agent} agent",
            dataset_type=ds_type,
            dataset_name=f"CourseGPT {inputs.agent} benchmark",
            dataset_split=dataset_split(inputs.report),
            dataset_revision=str(benchmark),
            metric_type=metric,
            metric_name=metric.replace("_", " "),
            metric_value=value,
        )
        for metric, value in measured.items()
    ]
    results += perplexity_results(inputs.report, agent=inputs.agent, dataset_type=ds_type, task_type=TASK_TYPE,
                                  splits_manifest=inputs.splits_manifest)
    tags = [inputs.agent, f"{inputs.agent}-agent", "coursegpt-pro", "lora", "peft", _backend_tag(inputs.summary)]
    if inputs.smoke:
        tags.append(SMOKE_TAG)
    return ModelCardData(
        base_model=inputs.base_model_id,
        base_model_relation="adapter",
        library_name="peft",
        pipeline_tag=inputs.pipeline_tag,
        license=inputs.license,
        datasets=[ds] if ds else None,
        tags=tags,
        model_name=model_name(inputs),
        eval_results=results,
    )


# -- body ------------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) or "—"
    if value is None:
        return "—"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return "unknown"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    parts = [f"{h} h"] if h else []
    parts += [f"{m} min"] if h or m else []
    return " ".join([*parts, f"{sec} s"]) + f" ({seconds:.1f} s)"


def _demote_headings(markdown: str, levels: int = 2) -> str:
    """Nest the report's own headings under the card's Evaluation section."""
    out, fenced = [], False
    for line in markdown.strip().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6}\s", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def _headline_rows(inputs: CardInputs) -> list[tuple[str, str]]:
    return [(m, _fmt(_metric_value(v)) if _metric_value(v) is not None else MISSING_VALUE)
            for m, v in (inputs.report.get("headline") or {}).items()]


def _vertex_settings(pair: str, s: dict) -> list[tuple[str, str, str]]:
    """(setting, value, the TuningJob field it is sent as): the job record's VertexJob, or the summary's
    hyperparameters restricted to what Vertex receives (older summaries also held local-only settings)."""
    sent = s.get("vertex_job") or {k: v for k, v in (s.get("hyperparameters") or {}).items() if k in VERTEX_FIELDS}
    if not sent:
        raise CardError(f"adapters/{pair}: training_summary.json names none of the settings sent to Vertex "
                        f"({', '.join(VERTEX_FIELDS)})")
    return [(k, f"`{_fmt(sent[k])}`" if k.endswith("sha256") else _fmt(sent[k]), f"`{VERTEX_FIELDS[k]}`")
            for k in VERTEX_FIELDS if k in sent]


def _vertex_reported(s: dict) -> list[tuple[str, str]]:
    """What the tuning job itself reported about its run, each missing figure saying so."""
    stats = s.get("vertex_data_stats") or {}
    rows = [(label, _fmt(stats[key]) if key in stats else NOT_REPORTED) for key, label in VERTEX_STATS.items()]
    experiment = s.get("experiment")
    loss = NOT_REPORTED + (f" in the job (its Experiment `{_fmt(experiment)}` may hold it)" if experiment else "")
    return [*rows, ("Training loss", loss)]


def _vertex_job_facts(s: dict) -> list[tuple[str, str]]:
    url = s.get("console_url")
    return [
        ("Backend", "vertex"),
        ("Tuning job", f"`{_fmt(s.get('resource_name'))}`"),
        ("Console", f"[{_fmt(s.get('resource_name', '').rsplit('/', 1)[-1])}]({url})" if url else NOT_REPORTED),
        ("Tuned model", f"`{_fmt(s.get('tuned_model'))}`" if s.get("tuned_model") else NOT_REPORTED),
        ("Endpoint", f"`{_fmt(s.get('endpoint'))}`" if s.get("endpoint") else "none deployed by the job"),
        ("Job started", _fmt(s.get("job_start_time")) if s.get("job_start_time") else NOT_REPORTED),
        ("Job ended", _fmt(s.get("job_end_time")) if s.get("job_end_time") else NOT_REPORTED),
        ("Job duration", _duration(s["wall_time_s"]) if s.get("wall_time_s") is not None else NOT_REPORTED),
        ("Adapter version", _fmt(s.get("version"))),
    ]


def _load_snippet_prompt(inputs: CardInputs) -> str | None:
    """Python that builds the prompt a Vertex adapter was tuned on (None: use the chat template)."""
    fmt = inputs.summary.get("vertex_prompt_format")
    if str(inputs.summary.get("backend", "")).lower() != "vertex" or not fmt:
        return None
    return (f"SYSTEM_PROMPT = {inputs.system_prompt!r}\n"
            f"prompt = {fmt!r}.format(system=SYSTEM_PROMPT, user=\"...\")")


def render_body_context(inputs: CardInputs) -> dict[str, Any]:
    """Template variables for the card body (all values already scrubbed). A Vertex adapter's card states the
    settings sent to Vertex and what its job reported; a local one its TRL settings and loss curve."""
    s, tm, sm = inputs.summary, inputs.tuning_manifest, inputs.splits_manifest
    hyper = s.get("hyperparameters") or {}
    if not hyper:
        raise CardError(f"adapters/{inputs.pair}: training_summary.json has no hyperparameters")
    split_counts = sm.get("counts") or {}
    tuning_counts = tm.get("counts") or {}
    backend = str(s.get("backend", "")).lower()
    vertex = backend == "vertex"
    read_id, read_revision = dataset_read(sm)
    return {
        "model_name": model_name(inputs),
        "inputs": inputs,
        "smoke": inputs.smoke,
        "smoke_phrase": SMOKE_PHRASE,
        "vertex": vertex,
        "backend_name": "Vertex AI supervised tuning (PEFT adapter)" if vertex else "TRL SFTTrainer + PEFT",
        "intended_use": inputs.intended_use,
        "synthetic_data": inputs.synthetic_data,
        "dataset_id": read_id,
        "dataset_revision": read_revision,
        "records_read_from": _fmt(sm.get("source")),
        "hyperparameters": [] if vertex else [(k, _fmt(v)) for k, v in hyper.items()],
        "vertex_settings": _vertex_settings(inputs.pair, s) if vertex else [],
        "vertex_reported": _vertex_reported(s) if vertex else [],
        "vertex_prompt_format": _fmt(repr(s["vertex_prompt_format"])) if vertex and s.get("vertex_prompt_format") else "",
        "training_facts": _vertex_job_facts(s) if vertex else [
            ("Backend", backend or "unknown"),
            ("Hardware", _fmt(s.get("hardware"))),
            ("Device", _fmt(s.get("device"))),
            ("Wall time", _duration(s.get("wall_time_s"))),
            ("Optimizer steps", _fmt(s.get("steps"))),
            ("Final training loss", _fmt(s.get("final_loss"))),
            ("Adapter version", _fmt(s.get("version"))),
        ],
        "data_facts": [
            ("Data version (tuning data hash)", f"`{_fmt(tm.get('data_version') or s.get('data_version'))}`"),
            ("Splits content hash", f"`{_fmt(sm.get('content_hash'))}`"),
            ("Split seed", _fmt(sm.get("seed"))),
            ("Records read from", _fmt(sm.get("source"))),
            ("Chat template family", _fmt(tm.get("family"))),
        ],
        "split_counts": [(k, _fmt(split_counts.get(k))) for k in ("train", "validation", "test") if k in split_counts],
        "tuning_counts": [(k, _fmt(v)) for k, v in tuning_counts.items()],
        "examples_used": (_fmt(s.get("train_examples")), _fmt(s.get("validation_examples"))),
        "headline_rows": _headline_rows(inputs),
        **base_comparison_context(inputs.report),
        "perplexity_rows": perplexity_rows(inputs.report, _fmt, MISSING_VALUE),
        "benchmark_version": _fmt(inputs.report.get("benchmark_version")),
        "benchmark_sources": benchmark_sources(inputs.report),
        "report_tables": _demote_headings(without_sources_section(inputs.report_markdown))
        if inputs.report_markdown.strip() else "",
        "load_prompt": _load_snippet_prompt(inputs),
        # the template variables training rendered with (Qwen3: enable_thinking=False), so serving matches
        "template_kwargs": "".join(f", {k}={v!r}" for k, v in sorted((s.get("chat_template_kwargs") or {}).items())),
        "citation": citation_for(inputs.source, inputs.source_license),
    }


def build_card(inputs: CardInputs) -> str:
    """The full README.md text: YAML metadata from ModelCardData plus the rendered body."""
    from huggingface_hub import ModelCard

    card = ModelCard.from_template(build_card_data(inputs), template_str=CARD_TEMPLATE, **render_body_context(inputs))
    text = str(card).rstrip() + "\n"
    leaks = find_secrets(text)
    if leaks:  # the template itself or an unscrubbed field leaked; never hand such a card on
        raise CardError(f"cards/{inputs.pair}/README.md: " + "; ".join(f.describe() for f in leaks))
    return text
