"""What identifies and describes a Vertex AI tuning job: its labels (the job's identity), resource name,
console link, and the `TuningJobInfo` the pipeline records; no SDK calls (those are in `vertex_tuning.py`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from coursegpt_assets.training.spec import VertexJob

RESOURCE_NAME = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/tuningJobs/(?P<job>[^/]+)$")
CONSOLE_URL = ("https://console.cloud.google.com/vertex-ai/generative/language/locations/{location}"
               "/tuning/tuningJob/{job}?project={project}")
ENDED_STATES = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})
# A job in one of these will never produce an adapter, so a new submission is allowed.
DEAD_STATES = frozenset({"JOB_STATE_FAILED", "JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


class VertexTuningError(RuntimeError):
    """A Vertex tuning call failed or a job did not succeed; the message names the job, field or fix."""


# -- labels ------------------------------------------------------------------------------------------------
def label_value(value: str) -> str:
    """A Vertex label value for `value`: kept when already valid, else lower-cased, invalid characters
    replaced and a hash of the original appended, so distinct inputs stay distinct."""
    value = str(value)
    if LABEL_VALUE.match(value):
        return value
    readable = re.sub(r"[^a-z0-9_-]+", "-", value.lower())[:54]
    return f"{readable}-{hashlib.sha256(value.encode('utf-8')).hexdigest()[:8]}"


def job_labels(pair: str, job: VertexJob) -> dict[str, str]:
    """The labels that identify one tuning job: the pair and the job's identity hash (`VertexJob.key`: source
    model, train and validation data digests, epochs, LR multiplier, adapter size, tuning mode), both valid
    Vertex labels. Nothing Vertex does not receive is in them, so a local-only setting finds the same job."""
    return {"coursegpt-pair": label_value(pair), "coursegpt-job": job.key}


def validate_labels(labels: dict[str, str]) -> None:
    for key, value in labels.items():
        if not LABEL_KEY.match(key):
            raise VertexTuningError(f"label key {key!r} is not a valid Vertex label key ([a-z][a-z0-9_-]{{0,62}})")
        if not LABEL_VALUE.match(value):
            raise VertexTuningError(f"label {key}={value!r} is not a valid Vertex label value "
                                    "([a-z0-9_-]{0,63}); build it with label_value()")


def label_filter(labels: dict[str, str]) -> str:
    """The list filter (AIP-160) selecting jobs that carry all `labels`."""
    return " AND ".join(f'labels.{k}="{v}"' for k, v in sorted(labels.items()))


# -- job info ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuningJobInfo:
    """What the pipeline records about one Vertex tuning job."""

    resource_name: str
    state: str  # JOB_STATE_*
    console_url: str
    created: bool  # True when this call submitted it, False when an existing job was found
    error: str | None
    output_uri: str
    labels: dict[str, str] = field(default_factory=dict)
    create_time: str | None = None  # RFC 3339, UTC
    display_name: str = ""
    base_model: str = ""
    tuned_model: str = ""  # projects/.../models/...@n once the job succeeded
    endpoint: str = ""  # projects/.../endpoints/... when Vertex deployed one
    start_time: str | None = None  # RFC 3339, UTC: when the job started running
    end_time: str | None = None  # RFC 3339, UTC: when it ended
    experiment: str = ""  # the Vertex Experiment holding the job's training metrics, when Vertex names one
    data_stats: dict[str, int] = field(default_factory=dict)  # tuningDataStats as Vertex reported them

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end as Vertex reports them; None until both are known."""
        if not (self.start_time and self.end_time):
            return None
        from datetime import datetime

        return (datetime.fromisoformat(self.end_time) - datetime.fromisoformat(self.start_time)).total_seconds()

    @property
    def job_id(self) -> str:
        return self.resource_name.rsplit("/", 1)[-1]

    @property
    def is_terminal(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "JOB_STATE_SUCCEEDED"

    def raise_for_failure(self) -> None:
        """Raise with Vertex's own error text unless the job succeeded."""
        if not self.succeeded:
            detail = f": {self.error}" if self.error else ""
            raise VertexTuningError(f"Vertex tuning job {self.resource_name} is {self.state}{detail} "
                                    f"(console: {self.console_url})")

    def metadata(self) -> dict[str, Any]:
        """Dagster metadata for the `tuning_job` materialisation (and for the sensor's log lines)."""
        meta: dict[str, Any] = {
            "resource_name": self.resource_name,
            "state": self.state,
            "console_url": dg.MetadataValue.url(self.console_url),
            "created": self.created,
            "output_uri": self.output_uri,
            "labels": dg.MetadataValue.json(self.labels),
        }
        for key in ("create_time", "error", "tuned_model", "endpoint", "experiment"):
            if getattr(self, key):
                meta[key] = getattr(self, key)
        return meta


def console_url(resource_name: str, project: str | None = None) -> str:
    match = RESOURCE_NAME.match(resource_name)
    if not match:
        raise VertexTuningError(f"{resource_name!r} is not a tuning job name "
                                "(projects/<project>/locations/<location>/tuningJobs/<id>)")
    return CONSOLE_URL.format(location=match["location"], job=match["job"], project=project or match["project"])


#: SupervisedTuningDataStats scalars a job reports once it has read its data (v1beta1 TuningJob.tuningDataStats)
DATA_STATS = ("tuning_dataset_example_count", "tuning_step_count", "total_billable_token_count",
              "total_tuning_character_count", "total_billable_character_count", "total_truncated_example_count")


def _data_stats(gca) -> dict[str, int]:
    """The supervised tuning data statistics Vertex reported for the job ({} when it reported none)."""
    if "supervised_tuning_data_stats" not in gca.tuning_data_stats:
        return {}
    stats = gca.tuning_data_stats.supervised_tuning_data_stats
    return {name: int(getattr(stats, name)) for name in DATA_STATS}


def _time(value) -> str | None:
    return value.isoformat() if value else None


def job_info(gca, *, created: bool, project: str | None) -> TuningJobInfo:
    """TuningJobInfo from the SDK's TuningJob proto (google.cloud.aiplatform_v1beta1.types.TuningJob)."""
    error = gca.error.message or (f"error code {gca.error.code}" if gca.error.code else None)
    return TuningJobInfo(
        resource_name=gca.name,
        state=gca.state.name,
        console_url=console_url(gca.name, project),
        created=created,
        error=error,
        output_uri=gca.output_uri,
        labels=dict(gca.labels),
        create_time=_time(gca.create_time),
        display_name=gca.tuned_model_display_name,
        base_model=gca.base_model,
        tuned_model=gca.tuned_model.model,
        endpoint=gca.tuned_model.endpoint,
        start_time=_time(gca.start_time),
        end_time=_time(gca.end_time),
        experiment=gca.experiment,
        data_stats=_data_stats(gca),
    )


# -- resource ----------------------------------------------------------------------------------------------


def same_request(info: TuningJobInfo, source_model: str, output_uri: str) -> bool:
    """Guard against a label collision: a listed job that tunes another base model, or writes its adapter
    somewhere else (another store), is not ours to follow."""
    return ((not info.base_model or info.base_model == source_model)
            and (not info.output_uri or info.output_uri.rstrip("/") == output_uri.rstrip("/")))
