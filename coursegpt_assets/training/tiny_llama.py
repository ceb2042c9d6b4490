"""Builds `tiny-llama`, the embedded smoke base model, and resolves every base model to a loadable id.

`tiny-llama` is a small random-weight Llama with a byte-level BPE tokenizer trained on the shipped
fixtures, so every `*__tiny-llama` pair trains end to end on a CPU in seconds with no network. The build
is deterministic for its inputs (fixtures, sizes, seed, library versions) and cached under
`$COURSEGPT_HOME/models/tiny-llama/<hash>/`: built in a temp folder, then renamed into place.
Real base models are Hugging Face ids; they load by id from the HF cache or the Hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import version as package_version
from pathlib import Path

from coursegpt_assets.core import settings
from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.core.plan import TrainingPlan, default_plan

BUILD_FORMAT = 1
TINY_KEY = "tiny-llama"
PAD_TOKEN = "<pad>"
#: the `tiny` family's special tokens, in id order (pad is id 0)
TINY_SPECIAL_TOKENS = (PAD_TOKEN, "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>")
_VERSIONED_LIBRARIES = ("tokenizers", "transformers", "torch")


class BaseModelUnavailable(RuntimeError):
    """A base model can be neither built nor loaded; the message names the model and the fix."""


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Sizes of the smoke model: small enough that a smoke pair trains in seconds on 2 CPU cores."""

    vocab_size: int = 4096
    min_frequency: int = 2
    hidden_size: int = 128
    intermediate_size: int = 352
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    seed: int = 42


# -- the corpus -----------------------------------------------------------------------------------------
def fixture_files(fixtures_dir: Path | None = None) -> list[Path]:
    """The shipped fixture files, sorted by name so the corpus order never depends on the file system."""
    folder = Path(fixtures_dir or settings.FIXTURES_DIR)
    return sorted(folder.glob("*.jsonl"), key=lambda p: p.name) if folder.is_dir() else []


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for key in value:
            yield from _strings(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def corpus_texts(files: Iterable[Path]) -> Iterator[str]:
    """Every string value of every fixture record, in file then line order.

    Fixtures deliberately hold malformed rows (they exercise the quarantine); those count as plain text.
    """
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    yield line
                    continue
                yield from _strings(record)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_hash(spec: TinyLlamaSpec, files: list[Path], max_length: int) -> str:
    """Hash of everything the build reads: a changed fixture or library version gives a new folder."""
    inputs = {
        "format": BUILD_FORMAT,
        "spec": asdict(spec),
        "max_length": max_length,
        "special_tokens": TINY_SPECIAL_TOKENS,
        "chat_template": family("tiny").template,
        "fixtures": {p.name: _file_digest(p) for p in files},
        "libraries": {name: package_version(name) for name in _VERSIONED_LIBRARIES},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


# -- the tokenizer --------------------------------------------------------------------------------------
def train_tokenizer(
    texts: Iterable[str],
    *,
    special_tokens: Iterable[str],
    bos_token: str | None,
    eos_token: str,
    pad_token: str,
    chat_template: str,
    vocab_size: int = 4096,
    min_frequency: int = 2,
    model_max_length: int = 1024,
    prepend_bos: bool = False,
):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a transformers fast tokenizer.

    Newlines are split off before BPE so a prompt ending in "\\n" tokenizes as a prefix of prompt +
    completion. `prepend_bos` adds BOS automatically (as Llama 3's tokenizer does); tests use it.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys([pad_token, *([bos_token] if bos_token else []), eos_token, *special_tokens]))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if prepend_bos and bos_token:
        bos_id = tok.token_to_id(bos_token)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A $B", special_tokens=[(bos_token, bos_id)]
        )
    extra = [t for t in specials if t not in (pad_token, bos_token, eos_token)]
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        additional_special_tokens=extra,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = chat_template
    return wrapped


# -- the model ------------------------------------------------------------------------------------------
def _build_into(folder: Path, spec: TinyLlamaSpec, files: list[Path], max_length: int, build_id: str) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    fam = family("tiny")
    tokenizer = train_tokenizer(
        corpus_texts(files),
        special_tokens=TINY_SPECIAL_TOKENS,
        bos_token=fam.bos,
        eos_token=fam.end_of_turn,
        pad_token=PAD_TOKEN,
        chat_template=fam.template,
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        model_max_length=max_length,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=max(spec.max_position_embeddings, max_length),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    build_info = {
        "build_id": build_id,
        "fixtures": [p.name for p in files],
        "spec": asdict(spec),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
    }
    (folder / "tiny_llama_build.json").write_text(json.dumps(build_info, indent=2, sort_keys=True) + "\n")


def build_tiny_llama(
    home: Path | None = None,
    *,
    spec: TinyLlamaSpec | None = None,
    fixtures_dir: Path | None = None,
    max_length: int | None = None,
) -> Path:
    """The cached tiny-llama folder for the current fixtures, building it first when missing; its context
    is the plan's `base_models.tiny-llama.max_length` unless `max_length` says otherwise."""
    if max_length is None:
        max_length = default_plan().base_models[TINY_KEY].max_length
    spec = spec or TinyLlamaSpec()
    files = fixture_files(fixtures_dir)
    build_id = build_hash(spec, files, max_length)
    root = Path(home or settings.current().home) / "models" / TINY_KEY
    target = root / build_id
    if (target / "tiny_llama_build.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{build_id}.", dir=root))
    try:
        _build_into(staging, spec, files, max_length, build_id)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "tiny_llama_build.json").is_file():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def tiny_build_id(plan: TrainingPlan, base_model_key: str = TINY_KEY, fixtures_dir: Path | None = None) -> str:
    """The hash naming the tiny build (cheap: hashes the fixtures, builds nothing)."""
    max_length = plan.base_models[base_model_key].max_length
    return build_hash(TinyLlamaSpec(), fixture_files(fixtures_dir), max_length)


# -- resolving any base model ---------------------------------------------------------------------------
def is_local_build(base_model_key: str, plan: TrainingPlan) -> bool:
    spec = plan.base_models[base_model_key]
    return spec.hf_id.startswith("local/")


def base_model_revision(base_model_key: str, plan: TrainingPlan) -> str:
    """What pins the base model's weights: the tiny build hash, or the HF id (the Hub's revision floats)."""
    if is_local_build(base_model_key, plan):
        return tiny_build_id(plan, base_model_key)
    return plan.base_models[base_model_key].hf_id


def _hub_model(hf_id: str) -> str:
    from huggingface_hub import HfApi, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(hf_id, "config.json"), str):
        return hf_id
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    why = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") else ""
    if not why:
        try:
            HfApi().model_info(hf_id, token=os.environ.get("HF_TOKEN") or None)
            return hf_id
        except Exception as e:  # network, auth and gating errors all leave the model unloadable
            why = f"{type(e).__name__}: {e}"
    raise BaseModelUnavailable(
        f"base model {hf_id!r} is not in the Hugging Face cache (HF_HOME={hf_home}) and the Hub cannot serve it "
        f"({why}). Download it into HF_HOME on a machine with access, or set HF_TOKEN to a token that may read "
        f"{hf_id} (gated models need their licence accepted on huggingface.co)."
    )


def ensure_base_model(base_model_key: str, plan: TrainingPlan, *, home: Path | None = None) -> str:
    """A path (the local tiny build) or a Hugging Face id that `from_pretrained` can load now."""
    if base_model_key not in plan.base_models:
        raise KeyError(f"{base_model_key!r} is not a base model of the plan; known: {sorted(plan.base_models)}")
    spec = plan.base_models[base_model_key]
    if is_local_build(base_model_key, plan):
        if spec.family != "tiny":
            raise BaseModelUnavailable(
                f"base_models.{base_model_key}: only the `tiny` family can be built locally, not {spec.family!r}"
            )
        return str(build_tiny_llama(home, max_length=spec.max_length))
    return _hub_model(spec.hf_id)
