"""VertexTuning: submit-or-find Vertex AI supervised tuning jobs (PEFT adapters) and read their state.

How the pipeline uses it (COURSEGPT_ENV=gcp):
- `tuning_job` asset (pair partition): `info = vertex.submit_or_find(pair=..., job=<training.spec.VertexJob>,
  train_uri=store.uri(...), validation_uri=..., output_uri=store.uri(<adapter prefix>), display_name=...,
  store=store, log=context.log)` and return at once with `info.metadata()` (resource name, console URL,
  state, created). The job's labels are its identity (`job_labels`: the pair and `VertexJob.key`, a hash of
  exactly what `sft.train` receives), so re-materialising after a crash finds the job instead of paying for
  a second one, and concurrent runs for one identity create it once: the creator holds a lease in the
  store (resources/store_lease.py) between finding no job and creating one; the others wait and follow.
- A sensor in `schedules/` reads the resource name from the latest `tuning_job` materialisation and calls
  `vertex.get_job(name)` each tick; when `info.is_terminal` it requests an `adapter` run (run_key = resource
  name + state). The `adapter` asset calls `get_job(name).raise_for_failure()`, so a failed job fails that run
  with Vertex's own error text, and a succeeded one copies/validates the export under `output_uri`.
  No run worker waits hours; `wait()` is for scripts and tests.

SDK facts (google-cloud-aiplatform 2.7.0): `vertexai.tuning.sft.train` takes tuning_mode (FULL/PEFT_ADAPTER),
epochs, learning_rate or learning_rate_multiplier, adapter_size (1/4/8/16/32), labels and output_uri; it has
no warm-up, batch size or dropout argument. Its client speaks v1beta1 and has no retry or timeout on these
calls. `vertexai.tuning` warns that it is deprecated (removal announced for 2026-06-24, google-genai's
`client.tunings` replaces it); that warning is silenced here and the dependency pin keeps 2.7.0 working.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from coursegpt_assets.training.spec import VertexJob
from resources.storage import ArtifactStore
from resources.store_lease import StoreLease, describe
from resources.vertex_jobs import (
    DEAD_STATES,
    TuningJobInfo,
    VertexTuningError,
    console_url,
    job_info,
    job_labels,
    label_filter,
    label_value,
    same_request,
    validate_labels,
)

ADAPTER_SIZES = (1, 4, 8, 16, 32)
TUNING_MODES = ("PEFT_ADAPTER", "FULL")
_DEPRECATION = r"This feature is deprecated as of June 24, 2025"
_SDK_LOCK = threading.RLock()  # aiplatform.init is process-global: init + call happen under one lock


class VertexTuning(dg.ConfigurableResource):
    """Vertex AI supervised tuning (managed OSS models, PEFT adapters) for the gcp environment."""

    project: str | None = Field(default=None, description="GCP project; falls back to GOOGLE_CLOUD_PROJECT")
    location: str = Field(default="us-central1", description="Vertex AI region that runs the tuning jobs")
    api_endpoint: str | None = Field(
        default=None, description="Override the regional endpoint (tests, private endpoints), e.g. http://127.0.0.1:8080")
    api_transport: Literal["rest", "grpc"] = Field(default="rest")
    credentials: Literal["adc", "anonymous"] = Field(
        default="adc", description="adc: Application Default Credentials; anonymous: loopback fakes only")
    poll_interval_seconds: float = Field(default=60.0, ge=0, description="Pause between polls in wait()")
    wait_timeout_seconds: float = Field(default=8 * 3600.0, gt=0, description="wait() gives up after this long")
    lease_timeout_seconds: float = Field(
        default=900.0, gt=0, description="How long a submitter's lease keeps others from creating the same job; "
        "a crashed submitter blocks the job's identity for at most this long")
    lease_poll_seconds: float = Field(default=5.0, gt=0,
                                      description="Pause between looks while another run holds the lease")

    # -- SDK setup ---------------------------------------------------------------------------------------
    def resolved_project(self) -> str:
        project = (self.project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")).strip()
        if not project:
            raise VertexTuningError("No GCP project for Vertex AI tuning: set VertexTuning.project "
                                    "(resource config) or the GOOGLE_CLOUD_PROJECT environment variable")
        return project

    def _credentials(self):
        if self.credentials == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except DefaultCredentialsError as e:
            raise VertexTuningError("No Application Default Credentials for Vertex AI: run `gcloud auth "
                                    "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS "
                                    f"to a service-account key file ({e})") from e
        return creds

    def _init_sdk(self) -> None:
        """Point the process-global aiplatform config at this resource (called with _SDK_LOCK held).
        Every field is passed explicitly so a previous init (another resource, a test) cannot leak in."""
        from google.cloud import aiplatform

        endpoint = self.api_endpoint or ("aiplatform.googleapis.com" if self.location == "global"
                                         else f"{self.location}-aiplatform.googleapis.com")
        aiplatform.init(project=self.resolved_project(), location=self.location, credentials=self._credentials(),
                        api_endpoint=endpoint, api_transport=self.api_transport)

    @contextmanager
    def _sdk(self) -> Iterator[Any]:
        """`vertexai.tuning.sft`, with aiplatform pointed at this resource for the duration of the block."""
        with _SDK_LOCK, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_DEPRECATION, category=UserWarning)
            self._init_sdk()
            from vertexai.tuning import sft

            yield sft

    # -- reads -------------------------------------------------------------------------------------------
    def get_job(self, resource_name: str) -> TuningJobInfo:
        """Current state of one job; raises VertexTuningError naming the job when Vertex does not know it."""
        console_url(resource_name)  # validates the name before any network call
        from google.api_core import exceptions as gexc

        with self._sdk() as sft:
            try:
                job = sft.SupervisedTuningJob(resource_name)
            except gexc.NotFound as e:
                raise VertexTuningError(f"Vertex tuning job {resource_name} not found "
                                        f"(project {self.resolved_project()}): {e.message}") from e
            except gexc.GoogleAPICallError as e:
                raise VertexTuningError(f"reading Vertex tuning job {resource_name} failed: {e}") from e
            return job_info(job.gca_resource, created=False, project=self.resolved_project())

    def list_jobs(self, labels: dict[str, str] | None = None, log=None) -> list[TuningJobInfo]:
        """Jobs in project/location carrying all `labels`, newest first. The label filter is sent to Vertex
        and checked again here; if Vertex rejects the filter, all jobs are listed and filtered here."""
        labels = dict(labels or {})
        validate_labels(labels)
        from google.api_core import exceptions as gexc

        with self._sdk() as sft:
            try:
                try:
                    jobs = sft.SupervisedTuningJob.list(filter=label_filter(labels) if labels else None)
                except gexc.BadRequest as e:  # HTTP 400 (InvalidArgument over gRPC)
                    if not labels:
                        raise
                    if log:
                        log.warning(f"Vertex rejected the label filter ({e.message}); filtering locally")
                    jobs = sft.SupervisedTuningJob.list()
            except gexc.GoogleAPICallError as e:
                raise VertexTuningError(f"listing Vertex tuning jobs in {self.resolved_project()}/"
                                        f"{self.location} failed: {e}") from e
            infos = [job_info(j.gca_resource, created=False, project=self.resolved_project()) for j in jobs]
        matching = [i for i in infos if all(i.labels.get(k) == v for k, v in labels.items())]
        return sorted(matching, key=lambda i: i.create_time or "", reverse=True)

    # -- submit ------------------------------------------------------------------------------------------
    def submit_or_find(self, *, pair: str, job: VertexJob, train_uri: str, validation_uri: str, output_uri: str,
                       display_name: str, store: ArtifactStore, log=None) -> TuningJobInfo:
        """Return the live or succeeded job for `job`, or submit one tuning job and return it.

        Creating happens only while holding the identity's lease in `store`, after looking again under it;
        a caller that finds the lease held waits for the holder's job and follows it (or takes over once
        the lease expired). Jobs that failed, were cancelled or expired do not block a new submission.
        """
        self._check_request(pair, job, train_uri, validation_uri, output_uri, display_name)
        labels = job_labels(pair, job)
        lease = StoreLease(store, f"vertex-tuning/{label_value(pair)}/{job.key}",
                           timeout_s=self.lease_timeout_seconds, note={"pair": pair, "labels": labels})
        deadline = time.monotonic() + 2 * self.lease_timeout_seconds
        waiting = False
        while True:
            found = self._find(pair, labels, job, output_uri, log, warn=not waiting)
            if found:
                return found
            if lease.acquire():
                return self._create_holding(lease, pair, job, labels, train_uri, validation_uri, output_uri,
                                            display_name, log)
            entry = (lease.latest() or (0, {}))[1]
            if time.monotonic() > deadline:
                raise VertexTuningError(f"[{pair}] no Vertex job with labels {labels} appeared while waiting "
                                        f"{2 * self.lease_timeout_seconds:.0f} s for the lease ({describe(entry)})")
            if log and not waiting:
                log.info(f"[{pair}] another run is submitting this Vertex job (lease {describe(entry)}); "
                         "waiting for its job to appear")
            waiting = True
            time.sleep(self.lease_poll_seconds)

    def _find(self, pair: str, labels: dict[str, str], job: VertexJob, output_uri: str, log,
              warn: bool = True) -> TuningJobInfo | None:
        """The newest live or succeeded job carrying `labels` that tunes `job` into `output_uri`, if any;
        `warn` reports dead and colliding jobs (once per call of submit_or_find, not on every poll)."""
        existing = self.list_jobs(labels, log=log)
        log_warning = log.warning if log and warn else (lambda msg: None)
        for dead in (i for i in existing if i.state in DEAD_STATES):
            log_warning(f"[{pair}] earlier Vertex tuning job {dead.resource_name} is {dead.state}"
                        f"{': ' + dead.error if dead.error else ''} ({dead.console_url})")
        live = [i for i in existing if i.state not in DEAD_STATES]
        reusable = [i for i in live if same_request(i, job.source_model, output_uri)]
        for other in (i for i in live if i not in reusable):
            log_warning(f"[{pair}] {other.resource_name} carries the same labels but tunes {other.base_model} "
                        f"into {other.output_uri}, not {job.source_model} into {output_uri}; ignoring it")
        if reusable and log:
            log.info(f"[{pair}] following existing Vertex tuning job {reusable[0].resource_name} "
                     f"({reusable[0].state}), not submitting another: {reusable[0].console_url}")
        return reusable[0] if reusable else None

    def _create_holding(self, lease: StoreLease, pair: str, job: VertexJob, labels: dict[str, str], train_uri: str,
                        validation_uri: str, output_uri: str, display_name: str, log) -> TuningJobInfo:
        """Under the lease: look once more (a job created while we listed), else create; then release."""
        outcome: dict = {}
        try:
            found = self._find(pair, labels, job, output_uri, log, warn=False)
            if found:
                outcome = {"followed": found.resource_name}
                return found
            info = self._create(pair, job, labels, train_uri, validation_uri, output_uri, display_name)
            outcome = {"created": info.resource_name}
        finally:
            try:
                lease.release(**outcome)
            except Exception as e:  # harmless: waiters find the job by its labels, the lease expires
                if log:
                    log.warning(f"[{pair}] could not release the submission lease {lease.name}: {e}")
        if log:
            log.info(f"[{pair}] submitted Vertex tuning job {info.resource_name} ({info.state}): {info.console_url}")
        return info

    def _create(self, pair: str, job: VertexJob, labels: dict[str, str], train_uri: str, validation_uri: str,
                output_uri: str, display_name: str) -> TuningJobInfo:
        """One `sft.train` call: every argument that shapes the job comes from `job`."""
        from google.api_core import exceptions as gexc

        with self._sdk() as sft:
            try:
                created = sft.train(
                    source_model=job.source_model,
                    train_dataset=train_uri,
                    validation_dataset=validation_uri,
                    tuned_model_display_name=display_name,
                    tuning_mode=job.tuning_mode,
                    epochs=job.epochs,
                    learning_rate_multiplier=job.learning_rate_multiplier,
                    adapter_size=job.adapter_size,
                    labels=dict(labels),  # the SDK adds "mg-source" to the dict it is given
                    output_uri=output_uri,
                )
            except gexc.GoogleAPICallError as e:
                raise VertexTuningError(
                    f"[{pair}] submitting the Vertex tuning job ({job.source_model}, {train_uri}) failed: {e}. "
                    "If Vertex created it before the error, the next attempt finds it by its labels") from e
            return job_info(created.gca_resource, created=True, project=self.resolved_project())

    def wait(self, resource_name: str, log=None) -> TuningJobInfo:
        """Poll until the job ends (scripts and tests; the pipeline uses the sensor instead)."""
        deadline = time.monotonic() + self.wait_timeout_seconds
        last_state = None
        while True:
            info = self.get_job(resource_name)
            if log and info.state != last_state:
                log.info(f"{resource_name}: {info.state}")
            last_state = info.state
            if info.is_terminal:
                return info
            if time.monotonic() >= deadline:
                raise VertexTuningError(f"Vertex tuning job {resource_name} still {info.state} after "
                                        f"{self.wait_timeout_seconds:.0f} s ({info.console_url})")
            time.sleep(self.poll_interval_seconds)

    @staticmethod
    def _check_request(pair: str, job: VertexJob, train_uri: str, validation_uri: str, output_uri: str,
                       display_name: str) -> None:
        if not job.source_model:
            raise VertexTuningError(f"[{pair}] no Vertex model id: set base_models.<model>.vertex_id in "
                                    "training_plan.yaml (pairs without one train locally only)")
        for name, uri in (("train_uri", train_uri), ("validation_uri", validation_uri), ("output_uri", output_uri)):
            if not str(uri).startswith("gs://"):
                raise VertexTuningError(f"[{pair}] {name}={uri!r}: Vertex AI reads and writes gs:// URIs only "
                                        "(set COURSEGPT_STORE=gs://<bucket>/<prefix>)")
        if job.tuning_mode not in TUNING_MODES:
            raise VertexTuningError(f"[{pair}] tuning_mode={job.tuning_mode!r}: Vertex supports {TUNING_MODES}")
        if job.adapter_size not in ADAPTER_SIZES:
            raise VertexTuningError(f"[{pair}] adapter_size={job.adapter_size}: Vertex supports {ADAPTER_SIZES}")
        if job.epochs < 1 or job.learning_rate_multiplier <= 0:
            raise VertexTuningError(f"[{pair}] epochs={job.epochs}, learning_rate_multiplier="
                                    f"{job.learning_rate_multiplier}: both must be positive")
        if not display_name or len(display_name) > 128:
            raise VertexTuningError(f"[{pair}] display_name {display_name!r} must be 1-128 characters")
