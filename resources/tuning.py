"""The `trainer` resource: who turns a pair's tuning data into a LoRA adapter.

- `LocalTrainer` (default): runs `coursegpt_assets.training.sft_child` (TRL + PEFT) as a Dagster Pipes
  subprocess, so training never runs in the orchestrator process. Each logging step the child sends a
  custom Pipes message; `run_child` turns them into `AssetObservation`s while the child is still running
  (the asset yields them), so loss / learning rate / tokens-per-second appear in the UI live.
- `VertexTrainer` (COURSEGPT_ENV=gcp): submits Vertex AI PEFT tuning jobs through
  `resources.vertex_tuning.VertexTuning` (given as the `vertex` dependency) and trains pairs that have
  no Vertex model id (the tiny smoke model) locally, exactly as `LocalTrainer` does.
"""


import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Generator
from typing import Any

import dagster as dg
from pydantic import Field

from coursegpt_assets.core.plan import PROJECT_ROOT, BaseModelSpec
from coursegpt_assets.training.spec import backend_for

CHILD_MODULE = "coursegpt_assets.training.sft_child"
LOG_MESSAGE = "training_log"  # the `type` of the child's per-step messages (sft_child.LOG_MESSAGE)
ERROR_MESSAGE = "training_error"  # the child's last word when it fails (sft_child.ERROR_MESSAGE)
_OBSERVED = ("step", "epoch", "loss", "learning_rate", "tokens_per_second", "grad_norm", "mean_token_accuracy")


class TrainingFailed(RuntimeError):
    """The training child exited with an error; its traceback is in the run's [pipes] log lines."""


def observation_for(context, message: dict) -> dg.AssetObservation | None:
    """An AssetObservation (numeric metadata the UI plots) for one of the child's per-step messages."""
    if not isinstance(message, dict) or message.get("type") != LOG_MESSAGE:
        return None
    metadata: dict[str, Any] = {}
    for key in _OBSERVED:
        value = message.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            metadata[key] = int(value) if key == "step" else float(value)
    return dg.AssetObservation(
        asset_key=context.asset_key,
        partition=context.partition_key if context.has_partition_key else None,
        metadata=metadata,
        description=f"training step {metadata.get('step')}",
    )


class Trainer(dg.ConfigurableResource):
    """The interface the adapter assets use; `backend_for` picks how a base model is trained."""

    def backend_for(self, base: BaseModelSpec) -> str:
        raise NotImplementedError(f"{type(self).__name__} must say which backend trains {base.hf_id}")


class LocalTrainer(Trainer):
    """TRL + PEFT on this machine (4-bit QLoRA on CUDA, full precision on CPU), in a Pipes subprocess."""

    python_executable: str = Field(default="", description="Interpreter for the training child; empty = this one")
    device: str = Field(default="auto", description="auto (CUDA when available) | cpu | cuda")
    poll_interval_s: float = Field(default=0.5, gt=0, description="How often progress messages are turned into events")
    termination_timeout_s: float = Field(default=30.0, gt=0, description="Grace period after SIGINT on cancel")

    def backend_for(self, base: BaseModelSpec) -> str:
        return backend_for(base, gcp=False)

    def run_child(self, context, extras: dict) -> Generator[dg.AssetObservation, None, list[dict]]:
        """Run the training child; yields observations while it trains, returns its per-step messages.

        Use as `messages = yield from trainer.run_child(context, extras)` inside a generator asset.
        """
        extras = {**extras, "device": extras.get("device", self.device)}
        command = [self.python_executable or sys.executable, "-m", CHILD_MODULE]
        received: list[dict] = []
        with dg.open_pipes_session(
            context=context,
            extras=extras,
            context_injector=dg.PipesTempFileContextInjector(),
            message_reader=dg.PipesTempFileMessageReader(),
        ) as session:
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **session.get_bootstrap_env_vars()}
            process = subprocess.Popen(command, cwd=str(PROJECT_ROOT), env=env)
            try:
                while True:
                    finished = process.poll() is not None
                    yield from self._drain(context, session, received)
                    if finished:
                        break
                    time.sleep(self.poll_interval_s)
            except BaseException:
                if process.poll() is None:
                    context.log.info("[pipes] run interrupted; sending SIGINT to the training child")
                    process.send_signal(signal.SIGINT)
                    try:
                        process.wait(timeout=self.termination_timeout_s)
                    except subprocess.TimeoutExpired:
                        process.kill()
                raise
        yield from self._drain(context, session, received)  # messages read while the session closed
        if process.returncode != 0:
            errors = [m["error"] for m in received if isinstance(m, dict) and m.get("type") == ERROR_MESSAGE]
            raise TrainingFailed(
                f"training child for {extras.get('pair')} exited with code {process.returncode}: "
                + (errors[-1] if errors else "no error reported; see the [pipes] lines of this run's log")
            )
        return received

    @staticmethod
    def _drain(context, session, received: list[dict]):
        messages = session.get_custom_messages()
        for message in messages[len(received):]:
            received.append(message)
            observation = observation_for(context, message)
            if observation is not None:
                yield observation


class VertexTrainer(LocalTrainer):
    """Vertex AI PEFT tuning for pairs with a Vertex model id; local training for the rest.

    `vertex` is a `resources.vertex_tuning.VertexTuning` (submit_or_find / get_job / job_labels); this
    module never imports it, so the local path needs no Google libraries.
    """

    vertex: dg.ResourceDependency[Any]

    def backend_for(self, base: BaseModelSpec) -> str:
        return backend_for(base, gcp=True)

    def submit_or_find(self, **kwargs):
        """Delegates to VertexTuning.submit_or_find: an existing job of the same identity is followed, and
        concurrent runs create it once."""
        return self.vertex.submit_or_find(**kwargs)

    def get_job(self, resource_name: str):
        return self.vertex.get_job(resource_name)

    def job_labels(self, pair: str, job) -> dict:
        """The labels a job for `job` (a training.spec.VertexJob) carries and is found by."""
        from resources.vertex_jobs import job_labels

        return job_labels(pair, job)


def trainer_for(env: str, vertex: Any | None = None) -> Trainer:
    """The trainer for an environment: local by default; for `gcp`, Vertex through the given VertexTuning."""
    if env == "gcp":
        if vertex is None:
            raise ValueError(
                "COURSEGPT_ENV=gcp trains through Vertex AI: pass a resources.vertex_tuning.VertexTuning as `vertex`"
            )
        return VertexTrainer(vertex=vertex)
    return LocalTrainer()
