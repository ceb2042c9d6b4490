"""transformers + PEFT for `LocalGenerator`: load base + adapter, prove the adapter acts, decode, score tokens.

Why a proof: peers have scored the base model while reporting the adapter (a wrong folder, LoRA keys
that silently did not load, an untrained adapter whose B matrices are still zero). `logit_probe` runs
the same batch with the adapter enabled and disabled and fails unless the logits differ.
Every function imports torch / transformers / peft inside, so importing this module is free.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from coursegpt_assets.core.progress import format_progress
from coursegpt_assets.scoring.perplexity import TokenScores

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
#: `cpu_threads` gives a model under this size one thread (tiny-llama, 0.7M parameters, on 2 cores: decoding
#: 5-13x faster than on two threads at load average 5-11, about as fast at load 4; bench/generation.py)
SMALL_MODEL_PARAMETERS = 50_000_000


class AdapterNotApplied(RuntimeError):
    """The adapted model's logits equal the base model's: the report would describe the base model."""


@dataclass
class LoadedModel:
    model: object  # peft.PeftModel
    tokenizer: object
    device: str
    dtype: str
    stop_ids: list[int]
    load_s: float


def pick_device(preference: str) -> str:
    import torch

    if preference == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if preference == "cuda":
        raise RuntimeError("LocalGenerator.device is 'cuda' but torch.cuda.is_available() is False on this machine")
    return "cpu"


def _dtype(name: str, device: str):
    import torch

    if name == "auto":
        name = "bfloat16" if device == "cuda" else "float32"
    return getattr(torch, name), name


def stop_token_ids(tokenizer, end_of_turn: str) -> list[int]:
    """The family's end-of-turn id (it must be one token) plus the tokenizer's EOS."""
    eot = tokenizer.convert_tokens_to_ids(end_of_turn)
    if eot is None or eot == tokenizer.unk_token_id:
        raise ValueError(f"end-of-turn {end_of_turn!r} is not a single token of this tokenizer; "
                         "generation could not stop where training taught it to")
    ids = [eot]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def load(base_path: str, adapter_dir: Path, *, device: str, dtype: str, end_of_turn: str) -> LoadedModel:
    """Base model + the stored adapter (tokenizer from the adapter folder when training saved one)."""
    from coursegpt_assets.training.library_noise import silence_library_noise

    silence_library_noise()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    torch_dtype, dtype_name = _dtype(dtype, device)
    tokenizer_source = adapter_dir if all((adapter_dir / f).is_file() for f in TOKENIZER_FILES) else base_path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype)
    base.to(device)
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    model.eval()
    return LoadedModel(model, tokenizer, device, dtype_name, stop_token_ids(tokenizer, end_of_turn),
                       time.perf_counter() - started)


def _without_auto_bos(tokenizer, prompts: list[str]) -> list[str]:
    """The template writes BOS; a tokenizer that adds BOS itself (Llama 3) gets the prompt without it,
    exactly as training tokenised it (training.labels.prepare_pair)."""
    from coursegpt_assets.training.labels import auto_bos

    bos = tokenizer.bos_token
    if bos and auto_bos(tokenizer):
        return [p[len(bos):] if p.startswith(bos) else p for p in prompts]
    return prompts


def encode(tokenizer, prompts: list[str], device: str, max_tokens: int | None = None):
    """Left-padded batch of rendered prompts (BOS as `_without_auto_bos` leaves it)."""
    batch = tokenizer(text=_without_auto_bos(tokenizer, prompts), return_tensors="pt", padding=True,
                      truncation=max_tokens is not None, max_length=max_tokens)
    return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}


def zero_lora_b(model) -> tuple[int, int]:
    """(LoRA B tensors that are all zero, LoRA B tensors): all zero means the adapter is a no-op."""
    zero = total = 0
    for name, param in model.named_parameters():
        if "lora_B" in name:
            total += 1
            zero += int(not bool(param.detach().abs().sum()))
    return zero, total


def logit_probe(loaded: LoadedModel, prompts: list[str], *, tolerance: float, max_tokens: int,
                threads: int = 0) -> dict:
    """Max |logit(adapted) - logit(base)| over the probe batch's real tokens; raises when not > tolerance."""
    import torch

    if not prompts:
        raise ValueError("the logit probe needs at least one prompt")
    batch = encode(loaded.tokenizer, prompts, loaded.device, max_tokens=max_tokens)
    mask = batch["attention_mask"].bool()
    with torch.no_grad(), cpu_threads(loaded, threads):
        adapted = loaded.model(**batch).logits.float()
        with loaded.model.disable_adapter():
            base = loaded.model(**batch).logits.float()
    diff = (adapted - base).abs()[mask]
    max_diff, mean_diff = float(diff.max()), float(diff.mean())
    zero, total = zero_lora_b(loaded.model)
    result = {"kind": "logit_probe", "prompts": len(prompts), "tokens": int(mask.sum()),
              "max_abs_logit_diff": max_diff, "mean_abs_logit_diff": mean_diff, "tolerance": tolerance,
              "lora_b_tensors": total, "lora_b_all_zero": zero, "passed": max_diff > tolerance}
    if not result["passed"]:
        raise AdapterNotApplied(
            f"the adapter changes no logit: max |adapted - base| = {max_diff:.3g} <= tolerance {tolerance:g} over "
            f"{result['tokens']} probe tokens ({zero} of {total} LoRA B tensors are all zero). Scoring now would "
            "report the base model under the adapter's name; check that the adapter was trained and its keys load"
        )
    return result


def token_rows(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Each rendered prompt's token ids, unpadded, tokenised as `encode` tokenises it."""
    return tokenizer(text=_without_auto_bos(tokenizer, prompts))["input_ids"]


def shared_prefix(rows: list[list[int]]) -> int:
    """Leading tokens every row of a batch shares (the system prompt), leaving each row at least one token."""
    if len(rows) < 2:
        return 0
    shortest = min(len(r) for r in rows) - 1
    first = rows[0]
    for n in range(shortest):
        if any(r[n] != first[n] for r in rows):
            return n
    return max(shortest, 0)


def greedy(model, rows: list[list[int]], *, pad_id: int, stop_ids: list[int], max_new_tokens: int,
           device: str) -> list[list[int]]:
    """Greedy continuations of one batch of tokenised prompts, the tokens `model.generate()` would pick.

    The prefix every row shares (a benchmark's system prompt) is run once and its KV cache copied to each
    row; the rest is one padded forward (padding after the shared prefix, the mask hides it; logits of the
    last position only), then one forward per step over the cache feeding the argmax back. A row leaves the
    batch (and the cache) at its first stop token. No generate() machinery runs per step.
    Returns each row's new tokens, up to and including its stop token.
    """
    import torch

    count, shared = len(rows), shared_prefix(rows)
    width = max(len(r) for r in rows)
    ids = torch.full((count, width - shared), pad_id, dtype=torch.long)
    mask = torch.ones((count, width + max_new_tokens), dtype=torch.long)
    for i, row in enumerate(rows):
        pad = width - len(row)
        ids[i, pad:] = torch.tensor(row[shared:], dtype=torch.long)
        mask[i, shared:shared + pad] = 0
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask[:, :width].cumsum(-1) - 1).clamp(min=0)[:, shared:]
    stops = torch.tensor(stop_ids, device=device)
    new: list[list[int]] = [[] for _ in rows]
    alive, cache, length = list(range(count)), None, width
    with torch.inference_mode():
        if shared:
            prefix = torch.tensor([rows[0][:shared]], dtype=torch.long, device=device)
            cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).cache
            cache.batch_repeat_interleave(count)
        for step in range(max_new_tokens):
            out = model(input_ids=ids, attention_mask=mask[:, :length], position_ids=positions, cache=cache,
                        use_cache=True, logits_to_keep=1)
            cache, token = out.cache, out.logits[:, -1].argmax(-1)
            for row, t in zip(alive, token.tolist(), strict=True):
                new[row].append(t)
            if step == max_new_tokens - 1:
                break
            stopped = torch.isin(token, stops)
            if bool(stopped.any()):
                keep = (~stopped).nonzero().squeeze(1)
                if not keep.numel():
                    break
                alive = [alive[i] for i in keep.tolist()]
                cache.batch_select_indices(keep)
                token, mask, positions = token[keep], mask[keep], positions[keep]
            ids, positions, length = token[:, None], positions[:, -1:] + 1, length + 1
    return new


def generate(loaded: LoadedModel, prompts: list[str], *, max_new_tokens: int, batch_size: int, threads: int = 0,
             log=None):
    """Greedy completions, batched by prompt length; returns (texts, finish reasons, generated token count).

    Prompts are tokenised once and sorted by length, so a batch pads little. `threads`: see `cpu_threads`.
    """
    tok = loaded.tokenizer
    rows = token_rows(tok, prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(rows[i]))  # less padding per batch
    texts, reasons = [""] * len(prompts), [""] * len(prompts)
    generated = 0
    with cpu_threads(loaded, threads):
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            new = greedy(loaded.model, [rows[i] for i in chunk], pad_id=tok.pad_token_id, stop_ids=loaded.stop_ids,
                         max_new_tokens=max_new_tokens, device=loaded.device)
            for i, ids in zip(chunk, new, strict=True):
                stopped = bool(ids) and ids[-1] in loaded.stop_ids
                generated += len(ids)
                reasons[i] = "stop" if stopped else "length"
                texts[i] = tok.decode(ids[:-1] if stopped else ids, skip_special_tokens=True)
            if log is not None:
                log.info(format_progress(min(start + batch_size, len(order)), len(order), "completions"))
    return texts, reasons, generated


def score_completions(loaded: LoadedModel, texts: list[tuple[str, str]], *, end_of_turn: str, max_length: int,
                      batch_size: int, log=None) -> TokenScores:
    """Summed NLL of each reference completion given its prompt, with the adapter and (PEFT's
    `disable_adapter()`, no second load) without it, on exactly the label tokens training computes its loss
    on (`training.labels`); right-padded batches, no grad. Rows over `max_length` are cut as TRL cuts them."""
    import torch

    from coursegpt_assets.training.labels import IGNORE_INDEX, completion_labels, prepare_pair

    tok = loaded.tokenizer
    examples = [completion_labels(tok, *prepare_pair(tok, p, c, end_of_turn), eos_token=end_of_turn,
                                  max_length=max_length) for p, c in texts]
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    nll = {"adapter": 0.0, "base": 0.0}
    tokens = 0
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start:start + batch_size]]
        width = max(len(e["input_ids"]) for e in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, e in enumerate(chunk):
            n = len(e["input_ids"])
            ids[row, :n], labels[row, :n], mask[row, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
        batch = {"input_ids": ids.to(loaded.device), "attention_mask": mask.to(loaded.device)}
        targets = labels[:, 1:].to(loaded.device)  # position t predicts token t + 1
        keep = targets != IGNORE_INDEX
        tokens += int(keep.sum())
        with torch.no_grad(), cpu_threads(loaded):
            nll["adapter"] += _summed_nll(loaded.model(**batch).logits, targets, keep)
            with loaded.model.disable_adapter():
                nll["base"] += _summed_nll(loaded.model(**batch).logits, targets, keep)
        if log is not None:
            log.info(f"scored {min(start + batch_size, len(order))}/{len(order)} held-out completions")
    truncated = sum(e["full_length"] > max_length for e in examples)
    return TokenScores(nll["adapter"], nll["base"], tokens, truncated)


def _summed_nll(logits, targets, keep) -> float:
    import torch.nn.functional as F

    picked = logits[:, :-1][keep].float()  # only the label positions: never the whole vocabulary x sequence
    return float(F.cross_entropy(picked, targets[keep], reduction="sum"))


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@contextmanager
def cpu_threads(loaded: LoadedModel, threads: int = 0):
    """torch's intra-op threads while generating on CPU: `threads`, or with 0 one thread for a model under
    SMALL_MODEL_PARAMETERS and torch's setting otherwise. A small model's matrices are too small to split:
    each op would wait for a second core, which on a shared machine is often busy."""
    import torch

    if loaded.device != "cpu" or (threads == 0 and parameter_count(loaded.model) >= SMALL_MODEL_PARAMETERS):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def merge_adapter(loaded: LoadedModel, threads: int = 0) -> None:
    """Fold the LoRA into the base weights (PEFT `merge_and_unload`) so the adapter's answers come from a
    plain model, with no per-layer LoRA matmuls or PEFT wrappers in every decode step. The base model is
    gone afterwards: generate its answers (`disable_adapter()`) and run the logit probe before."""
    with cpu_threads(loaded, threads):
        loaded.model = loaded.model.merge_and_unload()


def release(loaded: LoadedModel) -> None:
    """Drop the model. One on CUDA or a large one is collected at once, so its memory is free before the
    next load; a small CPU model is left to the collector (a full collection of a Dagster run's heap took
    0.3 s, more than tiny-llama's answers)."""
    import gc

    import torch

    collect = loaded.device != "cpu" or parameter_count(loaded.model) >= SMALL_MODEL_PARAMETERS
    loaded.model = None
    if collect:
        gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
