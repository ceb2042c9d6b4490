"""LoRA training throughput on a random-init Llama: tokens/s, peak memory and (on CUDA) model FLOPs utilisation.

The model is a `LlamaForCausalLM` built from a `LlamaConfig` preset with random weights (no download),
wrapped with PEFT LoRA using the plan's rank, alpha, dropout and target modules
(`coursegpt_assets.core.plan.default_plan()`), and trained for --steps optimizer steps on random token batches
(no padding: every position is a trained token). The --warmup steps before them are not timed.

- CUDA: bf16 weights, bf16 autocast, SDPA attention, fused AdamW on the LoRA parameters. Peak memory is
  `torch.cuda.max_memory_allocated()`. MFU = achieved model FLOP/s / the GPU's dense bf16 peak, looked up
  by `torch.cuda.get_device_name()` (H100 SXM and H200 989, H100 PCIe 756, A100 312, L4 121 TFLOPS) or
  given with --peak-tflops. Target: MFU ≥ 35 %.
- CPU: fp32; peak memory is the process's peak RSS; tokens/s only (MFU is reported on CUDA only).

Model FLOPs per trained token, the standard approximation (PaLM, appendix B):
    6·N + 12·L·H·S
N counts every parameter that takes part in a matmul (all of them, frozen ones included, LoRA ones too,
but not the input embedding table, which is a lookup); 6·N is forward (2·N) plus backward (4·N). The second
term is self-attention's QKᵀ and AV matmuls, forward and backward, for L layers, hidden size H, sequence S.
It is the model's work, not the GPU's: LoRA computes no weight gradients for the frozen weights (~4·N
executed, not 6·N) and --gradient-checkpointing recomputes the forward (~+2·N), neither counted.

    .venv/bin/python bench/train_throughput.py --size tiny                       # seconds on a CPU
    .venv/bin/python bench/train_throughput.py --size 300m --batch-size 8 --seq-len 2048 --steps 20
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from coursegpt_assets.core.plan import default_plan

MFU_TARGET = 0.35


@dataclass(frozen=True)
class Size:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int


SIZES = {
    "tiny": Size(128, 352, 2, 4, 2, 4096),  # tiny-llama's shape: a CPU smoke run in seconds
    "300m": Size(1024, 2816, 16, 16, 16, 32000),  # ~270 M parameters with an untied LM head
    "1b": Size(2048, 5632, 22, 32, 4, 32000),  # TinyLlama-1.1B's shape
}
#: dense bf16 tensor-core peak, TFLOPS, by a pattern of torch.cuda.get_device_name(); first match wins
PEAK_BF16_TFLOPS = (
    (r"H200", 989.0),
    (r"H100.*PCIe", 756.0),
    (r"H100", 989.0),  # SXM (HBM3); the NVL and PCIe parts are lower
    (r"A100", 312.0),
    (r"\bL4\b", 121.0),
)


def peak_tflops(device_name: str) -> float | None:
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops
    return None


def flops_per_token(matmul_params: int, size: Size, seq_len: int) -> float:
    """6·N + 12·L·H·S: the model's training FLOPs for one token (see the module docstring)."""
    return 6.0 * matmul_params + 12.0 * size.num_hidden_layers * size.hidden_size * seq_len


def build_model(size: Size, seq_len: int, device: torch.device, dtype: torch.dtype, seed: int):
    """A random-init Llama of `size` wrapped with the plan's LoRA config."""
    config = LlamaConfig(
        **asdict(size),
        max_position_embeddings=max(seq_len, 2048),
        tie_word_embeddings=False,
        attn_implementation="sdpa",
        use_cache=False,
    )
    torch.manual_seed(seed)
    with device:
        model = LlamaForCausalLM(config).to(dtype)
    hp = default_plan().hyperparameters
    lora = LoraConfig(
        r=hp.lora_rank,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=list(hp.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora), hp


def count_parameters(model) -> tuple[int, int, int]:
    """(all, trainable, in matmuls = all but the input embedding table)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embedding = model.get_input_embeddings().weight.numel()
    return total, trainable, total - embedding


def peak_memory_bytes(cuda: bool) -> int:
    if cuda:
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def train_steps(model, optimizer, batches: int, *, batch_size: int, seq_len: int, vocab: int,
                device: torch.device, cuda: bool, generator: torch.Generator) -> tuple[list[float], list[float]]:
    """`batches` optimizer steps on random tokens; (seconds per step, loss per step)."""
    times, losses = [], []
    for _ in range(batches):
        ids = torch.randint(0, vocab, (batch_size, seq_len), generator=generator).to(device, non_blocking=True)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    return times, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="300m")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 on CUDA, 1 on CPU")
    parser.add_argument("--seq-len", type=int, default=None, help="default: 2048 on CUDA, 256 on CPU")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocator, kernels, autotune)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not known")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="as the QLoRA child trains")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be ≥ 1 and --warmup ≥ 0")

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    batch_size = args.batch_size or (8 if cuda else 1)
    seq_len = args.seq_len or (2048 if cuda else 256)
    size = SIZES[args.size]
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    build_start = time.perf_counter()
    model, hp = build_model(size, seq_len, device, torch.bfloat16 if cuda else torch.float32, args.seed)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    total, trainable, matmul_params = count_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=cuda)
    build_s = time.perf_counter() - build_start

    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device      {name}; torch {torch.__version__}; {'bf16 autocast' if cuda else 'fp32'}")
    print(f"model       {args.size}: {total / 1e6:.1f} M parameters ({matmul_params / 1e6:.1f} M in matmuls), "
          f"LoRA r={hp.lora_rank} α={hp.lora_alpha} on {','.join(hp.target_modules)}: "
          f"{trainable / 1e6:.2f} M trainable; built in {build_s:.1f} s")
    print(f"workload    batch {batch_size} × seq {seq_len} = {batch_size * seq_len} tokens/step, "
          f"{args.warmup} warm-up + {args.steps} timed steps"
          f"{', gradient checkpointing' if args.gradient_checkpointing else ''}", flush=True)

    generator = torch.Generator().manual_seed(args.seed)
    common = dict(batch_size=batch_size, seq_len=seq_len, vocab=size.vocab_size, device=device, cuda=cuda,
                  generator=generator)
    if args.warmup:
        train_steps(model, optimizer, args.warmup, **common)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = train_steps(model, optimizer, args.steps, **common)

    elapsed = sum(times)
    tokens = batch_size * seq_len * args.steps
    tokens_per_s = tokens / elapsed
    peak = peak_memory_bytes(cuda)
    result = {
        "device": name, "size": args.size, "parameters": total, "matmul_parameters": matmul_params,
        "trainable_parameters": trainable, "batch_size": batch_size, "seq_len": seq_len, "steps": args.steps,
        "warmup": args.warmup, "gradient_checkpointing": args.gradient_checkpointing,
        "step_s_median": statistics.median(times), "tokens_per_s": tokens_per_s, "peak_memory_bytes": peak,
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if cuda else "peak RSS", "final_loss": losses[-1],
    }
    print(f"throughput  {tokens_per_s:,.0f} tokens/s ({statistics.median(times) * 1e3:.0f} ms/step median, "
          f"loss {losses[0]:.3f} → {losses[-1]:.3f})")
    print(f"peak memory {peak / 2**30:.2f} GiB ({result['peak_memory_kind']})")
    if cuda:
        per_token = flops_per_token(matmul_params, size, seq_len)
        achieved = per_token * tokens_per_s
        peak_tf = args.peak_tflops or peak_tflops(name)
        result.update(flops_per_token=per_token, achieved_tflops=achieved / 1e12, peak_tflops=peak_tf)
        line = f"MFU         {achieved / 1e12:.1f} TFLOP/s achieved (6·N + 12·L·H·S = {per_token / 1e9:.2f} GFLOP/token)"
        if peak_tf:
            mfu = achieved / (peak_tf * 1e12)
            result["mfu"] = mfu
            verdict = "met" if mfu >= MFU_TARGET else "NOT met"
            line += f" / {peak_tf:.0f} peak = {mfu:.1%} (target ≥ {MFU_TARGET:.0%}: {verdict})"
        else:
            line += f"; the peak of {name!r} is not known: pass --peak-tflops for the MFU"
        print(line)
    else:
        print("MFU         reported on CUDA only (no reliable CPU peak); tokens/s above is the CPU figure")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not all(math.isfinite(x) for x in losses):
        sys.exit(f"non-finite loss: {losses}")


if __name__ == "__main__":
    main()
