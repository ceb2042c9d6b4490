"""`VertexEndpoint` (COURSEGPT_ENV=gcp): Vertex AI online prediction for the pairs tuned on Vertex AI.

`aiplatform.Endpoint(...).predict` on the endpoint the tuning job reported (training_summary.json `endpoint`)
unless `endpoints` names another; a Vertex-tuned adapter is asked in the prompt format it was tuned on (the
summary's `vertex_prompt_format`, the tuning rows' `prompt`), not the chat template. The base model is asked
the same prompts on the endpoint the plan names for it (`base_models.<name>.vertex_base_endpoint`); without
one the base is not measured. Pairs without a Vertex model (the tiny smoke model) are generated locally, as
`VertexTrainer` trains them, base model included.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any, Literal

from pydantic import Field

from coursegpt_assets.core.layout import CHAT_TEMPLATE_FILE as TEMPLATE_FILE
from resources import http_retry
from resources.inference import (
    BaseNotMeasured,
    Generation,
    GenerationRequest,
    InferenceError,
    LocalGenerator,
    adapter_sha256,
    cut_at_stop,
)
from resources.prediction_log import answer_all

_VERTEX_LOCK = threading.RLock()  # aiplatform.init is process-global: init + predict happen under one lock
ENDPOINT_NAME = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/endpoints/(?P<id>[^/]+)$")


class VertexEndpoint(LocalGenerator):
    """Vertex AI online prediction for pairs tuned on Vertex; local transformers + PEFT for the others.

    Instances are `{"prompt", "max_tokens", "temperature", "raw_response"}` (the Model Garden vLLM serving
    container's schema). The prompt is the one the adapter was trained on (`GenerationRequest.trained_prompts`):
    the Vertex prompt format for a Vertex-tuned adapter, the adapter's chat template for a locally trained one.
    The endpoint is `endpoints[pair]` when set, else the one the tuning job reported (training_summary.json).
    """

    project: str | None = Field(default=None, description="GCP project; falls back to GOOGLE_CLOUD_PROJECT")
    location: str = Field(default="us-central1")
    endpoints: dict[str, str] = Field(
        default_factory=dict, description="pair -> endpoint id or resource name; overrides the endpoint the "
                                          "tuning job reported (training_summary.json `endpoint`)")
    api_endpoint: str | None = Field(default=None, description="Override the regional API host (tests, PSC)")
    api_transport: Literal["rest", "grpc"] = Field(default="rest")
    credentials: Literal["adc", "anonymous"] = Field(default="adc", description="anonymous: loopback fakes only")
    instances_per_request: int = Field(default=8, gt=0)
    timeout_s: float = Field(default=600.0, gt=0, description="Per predict call; a timeout is retried")
    max_attempts: int = Field(default=6, gt=0, description="Tries per predict call on 408/429/5xx, timeouts, "
                                                           "refused connections")
    max_retry_delay_s: float = Field(default=60.0, ge=0, description="Longest wait between tries (Retry-After "
                                                                     "included; a longer Retry-After gives up)")

    def _endpoint(self, request: GenerationRequest) -> str | None:
        return self._resource_name(request, self.endpoints.get(request.pair) or request.summary.get("endpoint") or "")

    def _resource_name(self, request: GenerationRequest, name: str) -> str | None:
        if not name:
            return None
        if name.startswith("projects/"):
            if not ENDPOINT_NAME.match(name):
                raise InferenceError(f"{request.pair}: {name!r} is not an endpoint resource name "
                                     "(projects/<project>/locations/<location>/endpoints/<id>)")
            return name
        return f"projects/{self._project()}/locations/{self.location}/endpoints/{name}"

    def _base_endpoint(self, request: GenerationRequest) -> str:
        endpoint = self._resource_name(request, request.vertex_base_endpoint or "")
        if endpoint is None:
            raise BaseNotMeasured(
                f"training_plan.yaml names no vertex_base_endpoint for base model {request.base_model}: deploy "
                f"{request.vertex_model_id or request.base_model_id} (Model Garden) to an endpoint and set "
                f"base_models.{request.base_model}.vertex_base_endpoint to its id or resource name")
        return endpoint

    def _project(self) -> str:
        project = (self.project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")).strip()
        if not project:
            raise InferenceError("No GCP project for Vertex AI prediction: set VertexEndpoint.project or "
                                 "GOOGLE_CLOUD_PROJECT")
        return project

    def _check_configured(self, request: GenerationRequest) -> str | None:
        endpoint = self._endpoint(request)
        if endpoint is None and (request.vertex_model_id or request.tuned_on_vertex):
            summary = request.summary
            job = summary.get("resource_name") or "its tuning job"
            model = summary.get("tuned_model") or "the tuned model"
            raise InferenceError(
                f"{request.pair}: adapter {request.adapter_version} was tuned on Vertex AI "
                f"({request.vertex_model_id or summary.get('vertex_model_id')}) but no endpoint serves it: "
                f"adapters/{request.pair}/{request.adapter_version}/training_summary.json records none ({job} "
                "reported no tunedModel.endpoint) and VertexEndpoint.endpoints has no entry for the pair. Deploy "
                f"{model} to an endpoint and set VertexEndpoint.endpoints={{'{request.pair}': '<endpoint id, or "
                "projects/<project>/locations/<location>/endpoints/<id>>'} on the gcp inference resource")
        return endpoint

    def settings(self, request: GenerationRequest) -> dict:
        endpoint = self._check_configured(request)
        if endpoint is None:
            return super().settings(request)
        return self._endpoint_settings(request, endpoint)

    @staticmethod
    def _endpoint_settings(request: GenerationRequest, endpoint: str) -> dict:
        if request.tuned_on_vertex:
            prompt = {"prompt": "vertex_prompt_format from training_summary.json (the tuning rows' prompt)",
                      "prompt_format": request.vertex_prompt_format}
        else:
            prompt = {"template": f"{TEMPLATE_FILE} beside the adapter"}
        return {"backend": "vertex-endpoint", "endpoint": endpoint, "decoding": "greedy (temperature 0)",
                **prompt, "stop": request.end_of_turn}

    def base_settings(self, request: GenerationRequest) -> dict:
        if self._check_configured(request) is None:
            return super().base_settings(request)
        return self._endpoint_settings(request, self._base_endpoint(request))

    def _init_sdk(self, endpoint: str):
        """aiplatform pointed at the endpoint's own project and region (called with _VERTEX_LOCK held)."""
        from google.cloud import aiplatform

        where = ENDPOINT_NAME.match(endpoint)

        if self.credentials == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            creds = AnonymousCredentials()
        else:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            try:
                creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            except DefaultCredentialsError as e:
                raise InferenceError("No Application Default Credentials for Vertex AI prediction: run `gcloud auth "
                                     f"application-default login` or set GOOGLE_APPLICATION_CREDENTIALS ({e})") from e
        host = self.api_endpoint or f"{where['location']}-aiplatform.googleapis.com"
        aiplatform.init(project=where["project"], location=where["location"], credentials=creds, api_endpoint=host,
                        api_transport=self.api_transport)
        return aiplatform

    @staticmethod
    def _text(prediction: Any, prompt: str) -> str:
        if isinstance(prediction, dict):
            prediction = next((prediction[k] for k in ("generated_text", "text", "content", "output")
                               if isinstance(prediction.get(k), str)), None)
        if not isinstance(prediction, str):
            raise InferenceError(f"Vertex prediction is not text: {str(prediction)[:200]}")
        if prediction.startswith("Prompt:\n") and "\nOutput:\n" in prediction:  # vLLM without raw_response
            prediction = prediction.split("\nOutput:\n", 1)[1]
        return prediction[len(prompt):] if prediction.startswith(prompt) else prediction

    def generate(self, request: GenerationRequest, log=None) -> Generation:
        endpoint = self._check_configured(request)
        if endpoint is None:
            return super().generate(request, log)
        started = time.perf_counter()
        sha = adapter_sha256(request.adapter_dir)
        texts, reasons, deployed = self._predict(request, endpoint, log)
        return Generation(texts, reasons, self.settings(request), self._proof(endpoint, deployed, sha),
                          time.perf_counter() - started)

    def generate_with_base(self, request: GenerationRequest, log=None) -> tuple[Generation, Generation]:
        if self._check_configured(request) is None:
            return super().generate_with_base(request, log)
        adapter = self.generate(request, log)
        endpoint = self._base_endpoint(request)
        started = time.perf_counter()
        texts, reasons, deployed = self._predict(request, endpoint, log)
        return adapter, Generation(texts, reasons, self.base_settings(request), self._proof(endpoint, deployed),
                                   time.perf_counter() - started)

    @staticmethod
    def _proof(endpoint: str, deployed: set, sha: str | None = None) -> dict:
        return {"kind": "vertex_endpoint", **({"adapter_sha256": sha} if sha else {}), "endpoint": endpoint,
                "deployed_models": [{"deployed_model_id": d, "model": m, "model_version_id": v}
                                    for d, m, v in sorted(deployed)]}

    def _predict(self, request: GenerationRequest, endpoint: str, log) -> tuple[list[str], list[str], set]:
        """The trained prompts on `endpoint`: texts, finish reasons and the deployed models that answered. Each
        call is retried on transient errors; finished answers are kept in the request's prediction log."""
        from google.api_core import exceptions as gexc

        instances = [{"prompt": p, "max_tokens": request.max_new_tokens, "temperature": 0.0, "top_p": 1.0,
                      "raw_response": True} for p in request.trained_prompts()]
        kept = request.prediction_log
        policy = http_retry.RetryPolicy(max_attempts=self.max_attempts, max_delay_s=self.max_retry_delay_s)

        def predict(batch: list[dict]) -> list[list]:
            """[text, finish reason, deployed model id, model, model version] per instance of one call (`ep` is
            set below, under the lock)."""
            chunk = [r["instance"] for r in batch]
            answer = http_retry.call_with_retries(
                lambda: ep.predict(instances=chunk, timeout=self.timeout_s), target=f"{endpoint}:predict",
                policy=policy, transient=http_retry.transient_google_error, on_retry=kept.note_retry)
            if len(answer.predictions) != len(chunk):
                raise InferenceError(f"{endpoint}: {len(answer.predictions)} predictions for {len(chunk)} instances")
            where = [answer.deployed_model_id, answer.model_resource_name, answer.model_version_id]
            return [[*cut_at_stop(self._text(p, i["prompt"]), request.end_of_turn), *where]
                    for i, p in zip(chunk, answer.predictions, strict=True)]

        with _VERTEX_LOCK:
            ep = self._init_sdk(endpoint).Endpoint(endpoint)  # names the resource; the first predict fetches it
            try:
                answers = answer_all([{"endpoint": endpoint, "instance": i} for i in instances], predict, log=kept,
                                     batch_size=self.instances_per_request, thread_name="vertex-predict")
            except gexc.NotFound as e:
                raise InferenceError(f"{request.pair}: Vertex endpoint {endpoint} not found: {e.message}") from e
            except (gexc.GoogleAPICallError, http_retry.RetriesExhausted) as e:
                raise InferenceError(f"{request.pair}: prediction on {endpoint} failed: {e}") from e
        return [a[0] for a in answers], [a[1] for a in answers], {tuple(a[2:]) for a in answers}
