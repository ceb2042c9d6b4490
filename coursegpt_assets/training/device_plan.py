"""How the training child loads and trains a base model on each device, as plain data it can be tested by.

`device_plan(cuda)` is the whole CPU/GPU difference of `sft_child`:

- CUDA (QLoRA): the base model is loaded in 4-bit NF4 with double quantisation and bf16 compute
  (bitsandbytes), on GPU 0; `peft.prepare_model_for_kbit_training` then freezes it, upcasts the
  non-quantised weights to fp32 and turns on gradient checkpointing; training runs in bf16 with
  gradient checkpointing and the paged 8-bit AdamW.
- CPU: full precision (fp32), no quantisation, no gradient checkpointing, `use_cpu=True`, `bf16=False`.

`pick_device` chooses between them with `torch.cuda.is_available()`, never by whether bitsandbytes
imports: it imports (and even quantises) on CPU-only machines too. `device_plan(cuda=True)` only builds
config objects, so the CUDA plan can be inspected on a machine without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
NF4_DOUBLE_QUANT = "nf4-double-quant"
#: non-reentrant checkpointing: no input-grad hook is needed and it is what transformers 5 defaults to
CHECKPOINTING_KWARGS = {"use_reentrant": False}


@dataclass(frozen=True)
class DevicePlan:
    """What differs between a CUDA (QLoRA) and a CPU training run."""

    device: str  # "cuda" | "cpu"
    model_kwargs: dict[str, Any]  # for AutoModelForCausalLM.from_pretrained
    training_overrides: dict[str, Any]  # for SFTConfig / TrainingArguments
    prepare_for_kbit: bool  # call peft.prepare_model_for_kbit_training after loading
    precision: str  # "bf16" | "fp32", for the training summary
    quantization: str | None  # NF4_DOUBLE_QUANT | None, for the training summary
    kbit_kwargs: dict[str, Any] = field(default_factory=dict)  # for prepare_model_for_kbit_training

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def gradient_checkpointing(self) -> bool:
        return bool(self.training_overrides.get("activation_checkpointing"))


def choose_device(preference: str, cuda_available: bool) -> str:
    """`cuda` for "auto" or "cuda" when a GPU is usable, else `cpu`; "cuda" without one is an error."""
    if preference not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {preference!r}")
    if preference == "cpu":
        return "cpu"
    if cuda_available:
        return "cuda"
    if preference == "cuda":
        raise RuntimeError("device 'cuda' was requested but torch.cuda.is_available() is False on this machine")
    return "cpu"


def pick_device(preference: str) -> str:
    """`choose_device` with this machine's `torch.cuda.is_available()`."""
    import torch

    return choose_device(preference, torch.cuda.is_available())


def nf4_config():
    """The QLoRA quantisation: 4-bit NF4 weights, double-quantised constants, bf16 compute."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def device_plan(cuda: bool) -> DevicePlan:
    """The loading kwargs and training overrides for a CUDA (`cuda=True`) or a CPU run; needs no GPU."""
    import torch

    if cuda:
        return DevicePlan(
            device="cuda",
            model_kwargs={"quantization_config": nf4_config(), "dtype": torch.bfloat16, "device_map": {"": 0}},
            training_overrides={
                "bf16": True,
                "use_cpu": False,
                "activation_checkpointing": True,
                "activation_checkpointing_kwargs": dict(CHECKPOINTING_KWARGS),
                "optim": "paged_adamw_8bit",
            },
            prepare_for_kbit=True,
            kbit_kwargs={
                "use_gradient_checkpointing": True,
                "gradient_checkpointing_kwargs": dict(CHECKPOINTING_KWARGS),
            },
            precision="bf16",
            quantization=NF4_DOUBLE_QUANT,
        )
    return DevicePlan(
        device="cpu",
        model_kwargs={"dtype": torch.float32},
        training_overrides={
            "bf16": False,
            "use_cpu": True,
            "activation_checkpointing": False,
            "optim": "adamw_torch",
        },
        prepare_for_kbit=False,
        precision="fp32",
        quantization=None,
    )


def load_base_model(base_path: str, plan: DevicePlan):
    """The base model as the plan says: 4-bit and prepared for k-bit training on CUDA, fp32 on CPU."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, **plan.model_kwargs)
    if plan.prepare_for_kbit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, **plan.kbit_kwargs)
    return model
