"""The `inference` resource: who turns a pair's benchmark conversations into completions.

- `LocalGenerator` (default): transformers + PEFT on this machine (CPU or CUDA), base model + the stored
  adapter, batched greedy decoding. It proves the adapter acts: a probe batch must give different logits
  with the adapter enabled and disabled, or generation refuses to start (`AdapterNotApplied`).
- `OpenAICompatibleServer`: a vLLM / Ollama / TGI server by base URL (`/v1/completions` with the prompt
  rendered by the adapter's own template, or `/v1/chat/completions`), stdlib HTTP only.
- `VertexEndpoint` (COURSEGPT_ENV=gcp): `aiplatform.Endpoint(...).predict` for pairs tuned on Vertex AI, on the
  endpoint the tuning job reported (training_summary.json `endpoint`) unless `endpoints` names another; a
  Vertex-tuned adapter is asked in the prompt format it was tuned on (the summary's `vertex_prompt_format`,
  the tuning rows' `prompt`), not the chat template. Pairs without a Vertex model (the tiny smoke model) are
  generated locally, as `VertexTrainer` trains them.
`score_tokens` measures held-out perplexity: the summed NLL of reference completions with the adapter and with
the base model alone (locally `local_generation.score_completions`; a server through `served_scoring`); a
backend that returns text only raises `TokenScoringUnavailable` and the report says "not measured".
For the remote backends the evidence that the adapter answered is the served model name / endpoint and
deployed model the server reports, recorded with the adapter weights' sha256; no logits are visible there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from coursegpt_assets.agents.base import vertex_prompt_for_messages
from coursegpt_assets.core.chat_templates import render_template
from coursegpt_assets.core.layout import ADAPTER_WEIGHTS as WEIGHTS_FILE
from coursegpt_assets.core.layout import CHAT_TEMPLATE_FILE as TEMPLATE_FILE
from coursegpt_assets.core.names import split_pair
from coursegpt_assets.scoring.perplexity import TokenScores

_VERTEX_LOCK = threading.RLock()  # aiplatform.init is process-global: init + predict happen under one lock
ENDPOINT_NAME = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/endpoints/(?P<id>[^/]+)$")


class InferenceError(RuntimeError):
    """Generation could not run or its answer is unusable; the message names the pair, file or setting."""


class TokenScoringUnavailable(RuntimeError):
    """The backend returns text only, no token log-probabilities: held-out perplexity is not measured."""


@dataclass(frozen=True)
class GenerationRequest:
    """One pair's benchmark conversations and everything needed to answer them with its adapter."""

    pair: str
    base_model: str  # plan key, e.g. tiny-llama
    base_model_id: str  # HF id (local/... for the built smoke model)
    vertex_model_id: str | None
    adapter_dir: Path  # a local folder holding the adapter files (ArtifactStore.local_dir)
    adapter_version: str
    conversations: list[list[dict]] = field(repr=False)
    max_new_tokens: int
    end_of_turn: str
    summary: dict = field(default_factory=dict, repr=False)  # the adapter's training_summary.json

    @property
    def chat_template(self) -> str:
        path = self.adapter_dir / TEMPLATE_FILE
        if not path.is_file():
            raise InferenceError(f"{self.pair}: {path} is missing; the adapter must carry the exact template it was "
                                 "trained with (re-materialise adapter)")
        return path.read_text(encoding="utf-8")

    def prompts(self, bos_token: str = "") -> list[str]:
        """Each conversation rendered verbatim with the adapter's template, up to the assistant header."""
        template = self.chat_template
        return [render_template(template, c, bos_token=bos_token, add_generation_prompt=True)
                for c in self.conversations]

    @property
    def tuned_on_vertex(self) -> bool:
        """Vertex tuned this adapter on the tuning rows' `prompt` strings, not on the chat template."""
        return self.summary.get("backend") == "vertex"

    @property
    def vertex_prompt_format(self) -> str:
        """The prompt format Vertex tuned this adapter on, as its training summary records it."""
        fmt = self.summary.get("vertex_prompt_format")
        if not fmt:
            why = self.summary.get("vertex_prompt_check") or "it was collected before prompt formats were recorded"
            raise InferenceError(
                f"{self.pair}: adapter {self.adapter_version} was tuned on Vertex AI but its training_summary.json "
                f"records no vertex_prompt_format ({why}), so the format it was tuned on is unknown. Give the agent "
                "a vertex_prompt_format matching its tuning rows' `prompt`, delete "
                f"adapters/{self.pair}/{self.adapter_version}/training_summary.json and re-materialise adapter "
                "(it copies the export again from the finished job; nothing is tuned or paid again)")
        return fmt

    def vertex_prompts(self) -> list[str]:
        """Each conversation as the Vertex tuning `prompt` string it would have been in the tuning data."""
        fmt = self.vertex_prompt_format
        try:
            return [vertex_prompt_for_messages(fmt, c) for c in self.conversations]
        except ValueError as e:
            raise InferenceError(f"{self.pair}: adapter {self.adapter_version}: {e}") from None

    def trained_prompts(self) -> list[str]:
        """The prompts in the form this adapter was trained on: the Vertex prompt format for an adapter
        Vertex tuned, the chat template (no BOS: a server adds its own) for one trained locally."""
        return self.vertex_prompts() if self.tuned_on_vertex else self.prompts()


@dataclass
class Generation:
    completions: list[str]
    finish_reasons: list[str]  # "stop" (end of turn) or "length" (max_new_tokens reached)
    settings: dict  # what produced them (also hashed into the report version)
    proof: dict  # evidence that the adapter, not the base model, answered
    wall_time_s: float
    generated_tokens: int | None = None


def adapter_sha256(adapter_dir: Path) -> str:
    path = Path(adapter_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise InferenceError(f"{path} is missing: no adapter weights to evaluate")
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cut_at_stop(text: str, stop: str) -> tuple[str, str]:
    """The text before the first end-of-turn marker and whether it stopped there or ran out of tokens."""
    cut = text.find(stop)
    return (text, "length") if cut < 0 else (text[:cut], "stop")


class Inference(dg.ConfigurableResource):
    """The interface `evaluation_report` uses."""

    def settings(self, request: GenerationRequest) -> dict:
        """What determines the completions (backend, model, decoding): part of the report version."""
        raise NotImplementedError(f"{type(self).__name__} must describe its settings")

    def generate(self, request: GenerationRequest, log=None) -> Generation:
        raise NotImplementedError(f"{type(self).__name__} must implement generate")

    def score_tokens(self, request: GenerationRequest, texts: list[tuple[str, str]], *, max_length: int,
                     bos: str, log=None) -> TokenScores:
        """Summed NLL of each rendered completion given its rendered prompt (`texts`), with the adapter and
        with the base model alone (held-out perplexity); TokenScoringUnavailable where the backend cannot."""
        raise TokenScoringUnavailable(f"{type(self).__name__} scores no tokens")


class LocalGenerator(Inference):
    """Base model + LoRA adapter with transformers + PEFT on this machine; greedy, left-padded batches."""

    device: str = Field(default="auto", description="auto (CUDA when available) | cpu | cuda")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto: bfloat16 on CUDA, float32 on CPU")
    batch_size: int = Field(default=8, gt=0, description="Prompts generated together")
    probe_prompts: int = Field(default=4, gt=0, description="Benchmark prompts in the adapter-applied logit probe")
    probe_max_tokens: int = Field(default=256, gt=0, description="Probe prompts are cut to this many tokens")
    probe_tolerance: float = Field(default=1e-6, ge=0, description="Max |logit diff| at or under this = not applied")
    models_home: str = Field(default="", description="Where the smoke base model is built; empty = $COURSEGPT_HOME")

    def _device(self) -> str:
        from resources.local_generation import pick_device

        return pick_device(self.device)

    def settings(self, request: GenerationRequest) -> dict:
        device = self._device()
        return {"backend": "transformers+peft", "base_model_id": request.base_model_id, "decoding": "greedy",
                "device": device, "dtype": self.dtype, "template": f"{TEMPLATE_FILE} beside the adapter",
                "stop": request.end_of_turn}

    def _base_path(self, request: GenerationRequest) -> str:
        from coursegpt_assets.core.plan import default_plan
        from coursegpt_assets.training.tiny_llama import (
            base_model_revision,
            ensure_base_model,
            is_local_build,
        )

        plan = default_plan()
        path = ensure_base_model(request.base_model, plan, home=Path(self.models_home) if self.models_home else None)
        trained_on = request.summary.get("base_model_revision")
        if is_local_build(request.base_model, plan) and trained_on and trained_on != base_model_revision(
                request.base_model, plan):
            raise InferenceError(
                f"{request.pair}: adapter {request.adapter_version} was trained on {request.base_model} build "
                f"{trained_on}, but the current build is {Path(path).name}; its LoRA weights mean nothing on "
                "another random base. Re-materialise tuning_job and adapter for this pair")
        return path

    def generate(self, request: GenerationRequest, log=None) -> Generation:
        from resources import local_generation as lg

        started = time.perf_counter()
        settings = self.settings(request)
        sha = adapter_sha256(request.adapter_dir)
        loaded = lg.load(self._base_path(request), request.adapter_dir, device=settings["device"],
                         dtype=self.dtype, end_of_turn=request.end_of_turn)
        try:
            prompts = request.prompts(bos_token=loaded.tokenizer.bos_token or "")
            probe = lg.logit_probe(loaded, prompts[: self.probe_prompts], tolerance=self.probe_tolerance,
                                   max_tokens=self.probe_max_tokens)
            if log is not None:
                log.info(f"{request.pair}: adapter applied (max |logit diff| {probe['max_abs_logit_diff']:.4g} "
                         f"over {probe['tokens']} probe tokens); generating {len(prompts)} completions")
            texts, reasons, tokens = lg.generate(loaded, prompts, max_new_tokens=request.max_new_tokens,
                                                 batch_size=self.batch_size, log=log)
        finally:
            lg.release(loaded)
        settings = {**settings, "dtype": loaded.dtype, "batch_size": self.batch_size,
                    "load_s": round(loaded.load_s, 3)}
        return Generation(texts, reasons, settings, {"adapter_sha256": sha, **probe},
                          time.perf_counter() - started, tokens)

    def score_tokens(self, request: GenerationRequest, texts: list[tuple[str, str]], *, max_length: int,
                     bos: str, log=None) -> TokenScores:
        from resources import local_generation as lg

        settings = self.settings(request)
        if settings["backend"] != "transformers+peft":  # a VertexEndpoint pair served by its endpoint
            raise TokenScoringUnavailable(f"the {settings['backend']} backend returns generated text only, no "
                                          "token log-probabilities")
        loaded = lg.load(self._base_path(request), request.adapter_dir, device=settings["device"],
                         dtype=self.dtype, end_of_turn=request.end_of_turn)
        try:
            return lg.score_completions(loaded, texts, end_of_turn=request.end_of_turn, max_length=max_length,
                                        batch_size=self.batch_size, log=log)
        finally:
            lg.release(loaded)


# -- OpenAI-compatible HTTP servers -----------------------------------------------------------------------
def _http_json(url: str, payload: dict | None, *, api_key: str | None, timeout_s: float) -> dict:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = json.dumps(payload).encode("utf-8") if payload is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")[:500]
        raise InferenceError(f"{url}: HTTP {e.code} {e.reason}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise InferenceError(f"{url}: server not reachable ({getattr(e, 'reason', e)}); is it running?") from None
    except json.JSONDecodeError as e:
        raise InferenceError(f"{url}: the answer is not JSON ({e.msg})") from None


class OpenAICompatibleServer(Inference):
    """A server speaking the OpenAI API (vLLM with `--lora-modules`, Ollama, TGI), by base URL."""

    base_url: str = Field(description="API root including /v1, e.g. http://localhost:8000/v1 or :11434/v1")
    model: str = Field(default="{pair}", description="Served model name; {pair}, {agent}, {base_model} and "
                                                     "{adapter_version} are filled in")
    api: Literal["completions", "chat"] = Field(
        default="completions", description="completions: prompt rendered with the adapter's template (exact); "
                                           "chat: messages, the server applies its own template")
    api_key: str | None = Field(default=None, description="Bearer token, from dg.EnvVar when the server needs one")
    timeout_s: float = Field(default=300.0, gt=0)
    concurrency: int = Field(default=4, gt=0, description="Requests in flight (the server batches them)")
    require_listed: bool = Field(default=True, description="Fail unless GET /models lists the model name")
    base_model_name: str = Field(
        default="{base_model_id}", description="Served name of the base model, asked the same prompts for the "
        "base-vs-adapter comparison (vLLM serves --model under its HF id); {base_model} and {base_model_id} are "
        "filled in; empty: the base model is not measured")
    echo_max_tokens: int = Field(default=0, ge=0, description="max_tokens of the echo + logprobs scoring requests "
                                                              "(vLLM refuses 0: set 1; generated tokens are ignored)")

    def _model(self, request: GenerationRequest) -> str:
        agent, base = split_pair(request.pair)
        return self.model.format(pair=request.pair, agent=agent, base_model=base,
                                 adapter_version=request.adapter_version)

    def _base_name(self, request: GenerationRequest) -> str:
        return self.base_model_name.format(base_model=request.base_model, base_model_id=request.base_model_id)

    def settings(self, request: GenerationRequest) -> dict:
        return {"backend": "openai-compatible", "base_url": self.base_url.rstrip("/"), "model": self._model(request),
                "api": self.api, "decoding": "greedy (temperature 0)", "stop": request.end_of_turn,
                "template": f"{TEMPLATE_FILE} beside the adapter" if self.api == "completions" else "server's"}

    def _call(self, url: str, payload: dict) -> tuple[str, str, str, int | None]:
        body = _http_json(url, payload, api_key=self.api_key, timeout_s=self.timeout_s)
        try:
            choice = body["choices"][0]
            text = choice["text"] if self.api == "completions" else choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise InferenceError(f"{url}: unexpected answer shape {json.dumps(body)[:300]}") from None
        text, stopped = cut_at_stop(text or "", payload["stop"][0])
        reason = "stop" if stopped == "stop" or choice.get("finish_reason") == "stop" else "length"
        tokens = (body.get("usage") or {}).get("completion_tokens")
        return text, reason, str(body.get("model", "")), tokens

    def generate(self, request: GenerationRequest, log=None) -> Generation:
        started = time.perf_counter()
        root, model = self.base_url.rstrip("/"), self._model(request)
        sha = adapter_sha256(request.adapter_dir)
        listed = None
        if self.require_listed:
            served = _http_json(f"{root}/models", None, api_key=self.api_key, timeout_s=self.timeout_s)
            listed = sorted(str(m.get("id")) for m in served.get("data", []) if isinstance(m, dict))
            if model not in listed:
                raise InferenceError(f"{request.pair}: {root} does not serve {model!r} (it serves {listed}); load the "
                                     "adapter under that name (vLLM --lora-modules, an Ollama Modelfile ADAPTER)")
        common = {"model": model, "max_tokens": request.max_new_tokens, "temperature": 0.0, "top_p": 1.0,
                  "stop": [request.end_of_turn]}
        if self.api == "completions":
            url, payloads = f"{root}/completions", [{**common, "prompt": p} for p in request.prompts()]
        else:
            url, payloads = f"{root}/chat/completions", [{**common, "messages": c} for c in request.conversations]
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai-gen") as pool:
            answers = list(pool.map(lambda p: self._call(url, p), payloads))
        reported = sorted({a[2] for a in answers if a[2]})
        if reported and reported != [model]:
            raise InferenceError(f"{request.pair}: asked {root} for {model!r} but it answered as {reported}")
        counts = [a[3] for a in answers]
        proof = {"kind": "served_model", "adapter_sha256": sha, "model": model, "answered_as": reported,
                 "listed": listed, "base_url": root}
        return Generation([a[0] for a in answers], [a[1] for a in answers], self.settings(request), proof,
                          time.perf_counter() - started, sum(counts) if all(c is not None for c in counts) else None)

    def score_tokens(self, request: GenerationRequest, texts: list[tuple[str, str]], *, max_length: int,
                     bos: str, log=None) -> TokenScores:
        """`/v1/completions` with echo + logprobs, for the adapter's served name and the base model's."""
        from resources.served_scoring import score_on_server

        return score_on_server(self, request, texts, bos=bos, log=log)


# -- Vertex AI endpoints -------------------------------------------------------------------------------
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

    def _endpoint(self, request: GenerationRequest) -> str | None:
        name = self.endpoints.get(request.pair) or request.summary.get("endpoint") or ""
        if not name:
            return None
        if name.startswith("projects/"):
            if not ENDPOINT_NAME.match(name):
                raise InferenceError(f"{request.pair}: {name!r} is not an endpoint resource name "
                                     "(projects/<project>/locations/<location>/endpoints/<id>)")
            return name
        return f"projects/{self._project()}/locations/{self.location}/endpoints/{name}"

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
        if request.tuned_on_vertex:
            prompt = {"prompt": "vertex_prompt_format from training_summary.json (the tuning rows' prompt)",
                      "prompt_format": request.vertex_prompt_format}
        else:
            prompt = {"template": f"{TEMPLATE_FILE} beside the adapter"}
        return {"backend": "vertex-endpoint", "endpoint": endpoint, "decoding": "greedy (temperature 0)",
                **prompt, "stop": request.end_of_turn}

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
        from google.api_core import exceptions as gexc

        started = time.perf_counter()
        sha = adapter_sha256(request.adapter_dir)
        prompts = request.trained_prompts()
        texts, reasons, deployed = [], [], set()
        with _VERTEX_LOCK:
            aiplatform = self._init_sdk(endpoint)
            try:
                ep = aiplatform.Endpoint(endpoint)
                for start in range(0, len(prompts), self.instances_per_request):
                    chunk = prompts[start:start + self.instances_per_request]
                    instances = [{"prompt": p, "max_tokens": request.max_new_tokens, "temperature": 0.0,
                                  "top_p": 1.0, "raw_response": True} for p in chunk]
                    answer = ep.predict(instances=instances)
                    if len(answer.predictions) != len(chunk):
                        raise InferenceError(f"{endpoint}: {len(answer.predictions)} predictions for {len(chunk)} "
                                             "instances")
                    deployed.add((answer.deployed_model_id, answer.model_resource_name, answer.model_version_id))
                    for prompt, prediction in zip(chunk, answer.predictions, strict=True):
                        text, reason = cut_at_stop(self._text(prediction, prompt), request.end_of_turn)
                        texts.append(text)
                        reasons.append(reason)
                    if log is not None:
                        log.info(f"{request.pair}: {len(texts)}/{len(prompts)} completions from {endpoint}")
            except gexc.NotFound as e:
                raise InferenceError(f"{request.pair}: Vertex endpoint {endpoint} not found: {e.message}") from e
            except gexc.GoogleAPICallError as e:
                raise InferenceError(f"{request.pair}: prediction on {endpoint} failed: {e}") from e
        proof = {"kind": "vertex_endpoint", "adapter_sha256": sha, "endpoint": endpoint,
                 "deployed_models": [{"deployed_model_id": d, "model": m, "model_version_id": v}
                                     for d, m, v in sorted(deployed)]}
        return Generation(texts, reasons, self.settings(request), proof, time.perf_counter() - started)

