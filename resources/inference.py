"""The `inference` resource: who turns a pair's benchmark conversations into completions.

- `LocalGenerator` (default): transformers + PEFT on this machine (CPU or CUDA), base model + the stored
  adapter, batched greedy decoding. It proves the adapter acts: a probe batch must give different logits
  with the adapter enabled and disabled, or generation refuses to start (`AdapterNotApplied`).
- `OpenAICompatibleServer` (`resources/openai_compatible.py`): a vLLM / Ollama / TGI server by base URL (`/v1/completions` with the prompt
  rendered by the adapter's own template, or `/v1/chat/completions`), stdlib HTTP only.
- `VertexEndpoint` (COURSEGPT_ENV=gcp, `resources/vertex_endpoint.py`): Vertex AI online prediction.
Each backend also asks the base model the same prompts with the same decoding (`generate_with_base`), so the
report can say whether fine-tuning helped; `base_settings` raises `BaseNotMeasured` with the reason when it
has no base model to ask.
`score_tokens` measures held-out perplexity: the summed NLL of reference completions with the adapter and with
the base model alone (locally `local_generation.score_completions`; a server through `served_scoring`); a
backend that returns text only raises `TokenScoringUnavailable` and the report says "not measured".
For the remote backends the evidence that the adapter answered is the served model name / endpoint and
deployed model the server reports, recorded with the adapter weights' sha256; no logits are visible there.
They retry transient failures (`resources/http_retry.py`) and keep every finished answer in the request's
`PredictionLog` (`resources/prediction_log.py`), so a failed run's successor asks only for the rest.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from coursegpt_assets.agents.base import vertex_prompt_for_messages
from coursegpt_assets.core.chat_templates import render_template
from coursegpt_assets.core.layout import ADAPTER_WEIGHTS as WEIGHTS_FILE
from coursegpt_assets.core.layout import CHAT_TEMPLATE_FILE as TEMPLATE_FILE
from coursegpt_assets.scoring.perplexity import TokenScores
from resources.prediction_log import PredictionLog


class InferenceError(RuntimeError):
    """Generation could not run or its answer is unusable; the message names the pair, file or setting."""


class BaseNotMeasured(Exception):
    """The backend has no base model to ask for this pair; the message says why and what to configure."""


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
    vertex_base_endpoint: str | None = None  # the plan's endpoint serving the base model on Vertex AI
    # remote backends keep each finished answer here and skip the ones an earlier run kept
    prediction_log: PredictionLog = field(default_factory=PredictionLog, repr=False, compare=False)

    @property
    def chat_template(self) -> str:
        path = self.adapter_dir / TEMPLATE_FILE
        if not path.is_file():
            raise InferenceError(f"{self.pair}: {path} is missing; the adapter must carry the exact template it was "
                                 "trained with (re-materialise adapter)")
        return path.read_text(encoding="utf-8")

    @property
    def chat_template_kwargs(self) -> dict:
        """The template variables the adapter's tuning text was rendered with (Qwen3: enable_thinking)."""
        return dict(self.summary.get("chat_template_kwargs") or {})

    def prompts(self, bos_token: str = "") -> list[str]:
        """Each conversation rendered verbatim with the adapter's template and template variables, up to and
        including the generation prompt, as training rendered its prompts."""
        template, kwargs = self.chat_template, self.chat_template_kwargs
        return [render_template(template, c, bos_token=bos_token, add_generation_prompt=True, **kwargs)
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

    def prompt_digest(self) -> str:
        """A hash of what the prompts are made of (template or Vertex prompt format, conversations, stop):
        equal digests mean the base model is asked exactly the same prompts."""
        source = {"vertex_prompt_format": self.vertex_prompt_format} if self.tuned_on_vertex else {
            "chat_template": self.chat_template, "chat_template_kwargs": self.chat_template_kwargs}
        body = json.dumps({**source, "conversations": self.conversations, "stop": self.end_of_turn}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()


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

    def base_settings(self, request: GenerationRequest) -> dict:
        """What determines the base model's completions (part of their cache key); raises BaseNotMeasured
        when this backend has no base model to ask for the pair."""
        raise BaseNotMeasured(f"the {type(self).__name__} inference resource cannot ask the base model")

    def generate_with_base(self, request: GenerationRequest, log=None) -> tuple[Generation, Generation]:
        """The adapter's completions and the base model's, same prompts and decoding."""
        raise NotImplementedError(f"{type(self).__name__} must implement generate_with_base")

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
    merge_lora: bool = Field(default=True, description="Fold the LoRA into the weights for the adapter's answers "
                             "(faster; W + BA rounded once, as a merged export serves it; the base answers first)")
    cpu_threads: int = Field(default=0, ge=0, description="torch threads while generating on CPU; 0 = one for "
                             "a small model (resources.local_generation.SMALL_MODEL_PARAMETERS), torch's otherwise")

    def _device(self) -> str:
        from resources.local_generation import pick_device

        return pick_device(self.device)

    def settings(self, request: GenerationRequest) -> dict:
        device = self._device()
        return {"backend": "transformers+peft", "base_model_id": request.base_model_id, "decoding": "greedy",
                "device": device, "dtype": self.dtype, "template": f"{TEMPLATE_FILE} beside the adapter",
                "stop": request.end_of_turn, "merge_lora": self.merge_lora}

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

    def base_settings(self, request: GenerationRequest) -> dict:
        from coursegpt_assets.core.plan import default_plan
        from coursegpt_assets.training.tiny_llama import base_model_revision, is_local_build

        plan = default_plan()
        revision = base_model_revision(request.base_model, plan) if is_local_build(request.base_model, plan) else None
        return {**{k: v for k, v in self.settings(request).items() if k != "merge_lora"},  # base: never merged
                "model": "the base model (PEFT disable_adapter on the same load)",
                "base_model_revision": revision}

    def generate(self, request: GenerationRequest, log=None) -> Generation:
        return self._generate(request, log, with_base=False)[0]

    def generate_with_base(self, request: GenerationRequest, log=None) -> tuple[Generation, Generation]:
        """One load: the base model's answers with PEFT's `disable_adapter()`, then the adapter's."""
        adapter, base = self._generate(request, log, with_base=True)
        assert base is not None
        return adapter, base

    def _generate(self, request: GenerationRequest, log, *, with_base: bool) -> tuple[Generation, Generation | None]:
        from resources import local_generation as lg

        started = time.perf_counter()
        settings = self.settings(request)
        base_settings = self.base_settings(request) if with_base else {}
        sha = adapter_sha256(request.adapter_dir)
        loaded = lg.load(self._base_path(request), request.adapter_dir, device=settings["device"],
                         dtype=self.dtype, end_of_turn=request.end_of_turn)
        try:
            prompts = request.prompts(bos_token=loaded.tokenizer.bos_token or "")
            probe = lg.logit_probe(loaded, prompts[: self.probe_prompts], tolerance=self.probe_tolerance,
                                   max_tokens=self.probe_max_tokens, threads=self.cpu_threads)
            if log is not None:
                log.info(f"{request.pair}: adapter applied (max |logit diff| {probe['max_abs_logit_diff']:.4g} "
                         f"over {probe['tokens']} probe tokens)")
            base = self._base_answers(loaded, prompts, request, base_settings, log) if with_base else None
            if self.merge_lora:
                lg.merge_adapter(loaded, self.cpu_threads)
            if log is not None:
                log.info(f"{request.pair}: the adapter answers {len(prompts)} prompts")
            texts, reasons, tokens = lg.generate(loaded, prompts, max_new_tokens=request.max_new_tokens,
                                                 batch_size=self.batch_size, threads=self.cpu_threads, log=log)
            adapter_s = time.perf_counter() - started - (base.wall_time_s if base else 0.0)
        finally:
            lg.release(loaded)
        settings = {**settings, "dtype": loaded.dtype, "batch_size": self.batch_size,
                    "load_s": round(loaded.load_s, 3)}
        return Generation(texts, reasons, settings, {"adapter_sha256": sha, **probe}, adapter_s, tokens), base

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

    def _base_answers(self, loaded, prompts: list[str], request: GenerationRequest, base_settings: dict,
                      log) -> Generation:
        """The base model's answers: the same load with PEFT's `disable_adapter()`, before any merge."""
        from resources import local_generation as lg

        if log is not None:
            log.info(f"{request.pair}: the base model answers the same {len(prompts)} prompts (adapter disabled)")
        started = time.perf_counter()
        with loaded.model.disable_adapter():
            texts, reasons, tokens = lg.generate(loaded, prompts, max_new_tokens=request.max_new_tokens,
                                                 batch_size=self.batch_size, threads=self.cpu_threads, log=log)
        return Generation(texts, reasons, {**base_settings, "dtype": loaded.dtype},
                          {"kind": "adapter_disabled", "base_model_id": request.base_model_id},
                          time.perf_counter() - started, tokens)
