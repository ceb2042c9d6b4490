"""`OpenAICompatibleServer`: evaluation through a vLLM / Ollama / TGI server by base URL, stdlib HTTP only.

`/v1/completions` with the prompt rendered by the adapter's own template, or `/v1/chat/completions` (the server
applies the base model's template, with the template variables training used). The adapter is served under
the pair's name, the base model under its HF id (`base_model_name`); requests are retried on transient
failures (`resources/http_retry.py`) and finished answers kept in the request's prediction log.
"""

from __future__ import annotations

import json
import time
import urllib.error
from typing import Literal

from pydantic import Field

from coursegpt_assets.core.layout import CHAT_TEMPLATE_FILE as TEMPLATE_FILE
from coursegpt_assets.core.names import split_pair
from coursegpt_assets.scoring.perplexity import TokenScores
from resources import http_retry
from resources.inference import (
    BaseNotMeasured,
    Generation,
    GenerationRequest,
    Inference,
    InferenceError,
    adapter_sha256,
    cut_at_stop,
)
from resources.prediction_log import answer_all


# -- OpenAI-compatible HTTP servers -----------------------------------------------------------------------
def http_json(url: str, payload: dict | None, *, api_key: str | None, timeout_s: float,
               retry: http_retry.RetryPolicy, on_retry=None) -> dict:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        return http_retry.request_json(url, payload, headers=headers, timeout_s=timeout_s, policy=retry,
                                       on_retry=on_retry)
    except urllib.error.URLError as e:  # not worth retrying: TLS, an unsupported URL
        raise InferenceError(f"{url}: {e.reason}") from None
    except (http_retry.HTTPStatusError, http_retry.RetriesExhausted, ValueError) as e:
        raise InferenceError(str(e)) from None


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
    max_attempts: int = Field(default=6, gt=0, description="Tries per request on 408/429/5xx, timeouts, refusals")
    max_retry_delay_s: float = Field(default=60.0, ge=0, description="Longest wait between tries (Retry-After "
                                                                     "included; a longer Retry-After gives up)")
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

    def _retry(self) -> http_retry.RetryPolicy:
        return http_retry.RetryPolicy(max_attempts=self.max_attempts, max_delay_s=self.max_retry_delay_s)

    def _base_name(self, request: GenerationRequest) -> str:
        return self.base_model_name.format(base_model=request.base_model, base_model_id=request.base_model_id)

    def _listed(self, on_retry=None) -> list[str]:
        served = http_json(f"{self.base_url.rstrip('/')}/models", None, api_key=self.api_key, timeout_s=self.timeout_s,
                            retry=self._retry(), on_retry=on_retry)
        return sorted(str(m.get("id")) for m in served.get("data", []) if isinstance(m, dict))

    def base_settings(self, request: GenerationRequest) -> dict:
        name = self._base_name(request)
        if not name:
            raise BaseNotMeasured("OpenAICompatibleServer.base_model_name is empty")
        if self.require_listed and name not in (listed := self._listed()):
            raise BaseNotMeasured(f"{self.base_url.rstrip('/')} does not serve the base model {name!r} (it serves "
                                  f"{listed}); serve it under that name or set OpenAICompatibleServer.base_model_name")
        return {**self.settings(request), "model": name}

    def settings(self, request: GenerationRequest) -> dict:
        return {"backend": "openai-compatible", "base_url": self.base_url.rstrip("/"), "model": self._model(request),
                "api": self.api, "decoding": "greedy (temperature 0)", "stop": request.end_of_turn,
                "template": f"{TEMPLATE_FILE} beside the adapter" if self.api == "completions" else "server's"}

    def _call(self, url: str, payload: dict, on_retry=None) -> list:
        """[text, finish reason, model answered as, completion tokens] of one request."""
        body = http_json(url, payload, api_key=self.api_key, timeout_s=self.timeout_s, retry=self._retry(),
                          on_retry=on_retry)
        try:
            choice = body["choices"][0]
            text = choice["text"] if self.api == "completions" else choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise InferenceError(f"{url}: unexpected answer shape {json.dumps(body)[:300]}") from None
        text, stopped = cut_at_stop(text or "", payload["stop"][0])
        reason = "stop" if stopped == "stop" or choice.get("finish_reason") == "stop" else "length"
        tokens = (body.get("usage") or {}).get("completion_tokens")
        answered = str(body.get("model", ""))
        if answered and answered != payload["model"]:  # checked before the answer is kept
            raise InferenceError(f"{url}: asked for {payload['model']!r} but it answered as {answered!r}")
        return [text, reason, answered, tokens]

    def generate(self, request: GenerationRequest, log=None) -> Generation:
        sha = adapter_sha256(request.adapter_dir)
        return self._served(request, self._model(request), self.settings(request), {"adapter_sha256": sha})

    def generate_with_base(self, request: GenerationRequest, log=None) -> tuple[Generation, Generation]:
        adapter = self.generate(request, log)
        if log is not None:
            log.info(f"{request.pair}: the base model {self._base_name(request)!r} answers the same prompts")
        return adapter, self._served(request, self._base_name(request), self.base_settings(request), {})

    def _served(self, request: GenerationRequest, model: str, settings: dict, proof: dict) -> Generation:
        """Every prompt sent to `model`; the answers must come back under that name."""
        started = time.perf_counter()
        root = self.base_url.rstrip("/")
        listed = None
        if self.require_listed:
            listed = self._listed(request.prediction_log.note_retry)
            if model not in listed:
                raise InferenceError(f"{request.pair}: {root} does not serve {model!r} (it serves {listed}); load the "
                                     "adapter under that name (vLLM --lora-modules, an Ollama Modelfile ADAPTER)")
        common = {"model": model, "max_tokens": request.max_new_tokens, "temperature": 0.0, "top_p": 1.0,
                  "stop": [request.end_of_turn]}
        if self.api == "completions":
            url, payloads = f"{root}/completions", [{**common, "prompt": p} for p in request.prompts()]
        else:
            # the server applies its own (the base model's) template; pass the variables training used with it
            extra = {"chat_template_kwargs": request.chat_template_kwargs} if request.chat_template_kwargs else {}
            url, payloads = f"{root}/chat/completions", [{**common, **extra, "messages": c} for c in request.conversations]
        kept = request.prediction_log
        answers = answer_all([{"url": url, "payload": p} for p in payloads], concurrency=self.concurrency, log=kept,
                             send=lambda batch: [self._call(r["url"], r["payload"], kept.note_retry) for r in batch],
                             thread_name="openai-gen")
        reported = sorted({a[2] for a in answers if a[2]})
        counts = [a[3] for a in answers]
        proof = {"kind": "served_model", **proof, "model": model, "answered_as": reported, "listed": listed,
                 "base_url": root}
        return Generation([a[0] for a in answers], [a[1] for a in answers], settings, proof,
                          time.perf_counter() - started, sum(counts) if all(c is not None for c in counts) else None)

    def score_tokens(self, request: GenerationRequest, texts: list[tuple[str, str]], *, max_length: int,
                     bos: str, log=None) -> TokenScores:
        """`/v1/completions` with echo + logprobs, for the adapter's served name and the base model's."""
        from resources.served_scoring import score_on_server

        return score_on_server(self, request, texts, bos=bos, log=log)

