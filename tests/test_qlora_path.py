"""The training child's device paths: 4-bit NF4 QLoRA on CUDA, full precision on CPU.

The plans are plain data (`training.device_plan`), so both are checked on every machine, the CUDA one with
`cuda=True` passed explicitly (it only builds config objects). The tests marked `gpu` load the tiny base
model in 4-bit and train the real child on CUDA; they are skipped where `torch.cuda.is_available()` is
False. The same child run on CPU keeps their harness exercised everywhere.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.training import device_plan as dp
from coursegpt_assets.training import sft_child
from coursegpt_assets.training.spec import effective_hyperparameters
from coursegpt_assets.training.tiny_llama import build_tiny_llama
from coursegpt_assets.training.validation import validate_adapter
from tests.fakes.tuning_store import router_rows

PAIR = "router__tiny-llama"
requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"needs a CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__})",
)
gpu = [pytest.mark.gpu, requires_cuda]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("qlora_home"), max_length=1024)


# -- the plans, on every machine ------------------------------------------------------------------------
def test_cpu_plan_is_full_precision_without_quantisation():
    plan = dp.device_plan(cuda=False)
    assert plan.device == "cpu" and not plan.cuda
    assert "quantization_config" not in plan.model_kwargs and "device_map" not in plan.model_kwargs
    assert plan.model_kwargs["dtype"] == torch.float32
    over = plan.training_overrides
    assert over["use_cpu"] is True and over["bf16"] is False
    assert over["activation_checkpointing"] is False and over["optim"] == "adamw_torch"
    assert not plan.prepare_for_kbit and not plan.gradient_checkpointing
    assert (plan.precision, plan.quantization) == ("fp32", None)


def test_cuda_plan_is_nf4_double_quant_with_bf16_and_checkpointing():
    from transformers import BitsAndBytesConfig

    plan = dp.device_plan(cuda=True)
    assert plan.device == "cuda" and plan.cuda
    quant = plan.model_kwargs["quantization_config"]
    assert isinstance(quant, BitsAndBytesConfig)
    assert quant.load_in_4bit and not quant.load_in_8bit
    assert quant.bnb_4bit_quant_type == "nf4"
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16
    assert quant.bnb_4bit_use_double_quant is True
    assert plan.model_kwargs["dtype"] == torch.bfloat16 and plan.model_kwargs["device_map"] == {"": 0}
    over = plan.training_overrides
    assert over["bf16"] is True and over["use_cpu"] is False
    assert over["activation_checkpointing"] is True and over["optim"] == "paged_adamw_8bit"
    assert plan.gradient_checkpointing
    assert plan.prepare_for_kbit and plan.kbit_kwargs["use_gradient_checkpointing"] is True
    assert over["activation_checkpointing_kwargs"] == plan.kbit_kwargs["gradient_checkpointing_kwargs"]
    assert (plan.precision, plan.quantization) == ("bf16", dp.NF4_DOUBLE_QUANT)


def test_plans_are_fresh_objects():
    a, b = dp.device_plan(cuda=True), dp.device_plan(cuda=True)
    a.training_overrides["activation_checkpointing_kwargs"]["use_reentrant"] = True
    assert b.training_overrides["activation_checkpointing_kwargs"] == dp.CHECKPOINTING_KWARGS
    assert dp.CHECKPOINTING_KWARGS == {"use_reentrant": False}


def test_cpu_plan_reaches_the_sft_config(tmp_path):
    """TRL defaults gradient checkpointing to True: the CPU plan must switch it off in the real config."""
    hp = effective_hyperparameters(default_plan(), PAIR)
    args = sft_child.sft_arguments(hp, dp.device_plan(cuda=False), family("tiny").end_of_turn, str(tmp_path))
    assert args.use_cpu is True and args.bf16 is False
    assert args.gradient_checkpointing is False and args.activation_checkpointing is False
    assert str(getattr(args.optim, "value", args.optim)) == "adamw_torch"


@pytest.mark.parametrize(
    ("preference", "available", "expected"),
    [("auto", False, "cpu"), ("auto", True, "cuda"), ("cpu", True, "cpu"), ("cpu", False, "cpu"),
     ("cuda", True, "cuda")],
)
def test_choose_device(preference, available, expected):
    assert dp.choose_device(preference, available) == expected


def test_choose_device_refuses_cuda_without_a_gpu_and_unknown_names():
    with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
        dp.choose_device("cuda", False)
    with pytest.raises(ValueError, match="gpu"):
        dp.choose_device("gpu", True)


def test_device_follows_cuda_availability_not_bitsandbytes_import(monkeypatch):
    import bitsandbytes  # noqa: F401  (imports on CPU-only machines too, so it must not decide)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sft_child.pick_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sft_child.pick_device("auto") == "cuda"


def test_cpu_plan_loads_the_tiny_model_in_fp32(tiny_base):
    model = dp.load_base_model(str(tiny_base), dp.device_plan(cuda=False))
    assert not getattr(model, "is_loaded_in_4bit", False)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.device.type for p in model.parameters()} == {"cpu"}


# -- the real child: CPU everywhere, CUDA where there is one -------------------------------------------
class FakePipes:
    """The two things `sft_child.train` uses from a Dagster Pipes context."""

    def __init__(self):
        self.messages: list[dict] = []
        self.lines: list[str] = []
        self.log = self

    def report_custom_message(self, message):
        self.messages.append(message)

    def info(self, line):
        self.lines.append(line)

    warning = info


def child_extras(tmp_path, base_path, device: str) -> dict:
    rows = router_rows("tiny")
    splits = {"train": rows[:-4], "validation": rows[-4:]}
    for name, split_rows in splits.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    hp = effective_hyperparameters(default_plan(), PAIR)
    hp.update(epochs=1, batch_size=4, gradient_accumulation_steps=1, logging_steps=1, max_length=1024,
              max_train_examples=12, max_eval_examples=4)
    fam = family("tiny")
    return {
        "pair": PAIR, "agent": "router", "base_model": "tiny-llama", "base_model_id": "local/tiny-llama",
        "base_model_path": str(base_path), "base_model_revision": base_path.name, "version": f"qlora-{device}",
        "data_version": "test", "hyperparameters": hp, "smoke": True, "device": device,
        "train_path": str(tmp_path / "train.jsonl"), "validation_path": str(tmp_path / "validation.jsonl"),
        "output_dir": str(tmp_path / "adapter"), "chat_template": fam.template, "end_of_turn": fam.end_of_turn,
    }


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=gpu)])
def test_child_trains_and_saves_the_adapter(tmp_path, tiny_base, device):
    extras = child_extras(tmp_path, tiny_base, device)
    pipes = FakePipes()
    summary = sft_child.train(extras, pipes)

    plan = dp.device_plan(cuda=device == "cuda")
    assert summary["device"] == device
    used = summary["hyperparameters"]
    assert used["precision"] == plan.precision and used["quantization"] == plan.quantization
    assert used["gradient_checkpointing"] is plan.gradient_checkpointing
    assert used["optimizer"] == plan.training_overrides["optim"]
    assert summary["steps"] == 3 and math.isfinite(summary["final_loss"]) and math.isfinite(summary["eval_loss"])
    assert all(math.isfinite(p["loss"]) for p in summary["loss_history"])
    assert [m["step"] for m in pipes.messages] == [1, 2, 3]

    out = tmp_path / "adapter"
    for name in ("adapter_model.safetensors", "adapter_config.json", "training_summary.json", "chat_template.jinja"):
        assert (out / name).is_file(), name
    report = validate_adapter(out, rank=used["lora_rank"], target_modules=used["target_modules"],
                              base_model_id="local/tiny-llama")
    assert report.valid, report.problems


@pytest.mark.gpu
@requires_cuda
def test_tiny_model_loads_in_4bit_and_is_prepared_for_kbit_training(tiny_base):
    import bitsandbytes as bnb

    plan = dp.device_plan(cuda=True)
    model = dp.load_base_model(str(tiny_base), plan)
    assert model.is_loaded_in_4bit
    linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4, "no 4-bit linear layers"
    assert all(m.weight.quant_type == "nf4" and m.compute_dtype == torch.bfloat16 for m in linear4)
    assert all(m.weight.device.type == "cuda" for m in linear4)
    assert not [n for n, p in model.named_parameters() if p.requires_grad], "the base model must be frozen"
    upcast = [p for p in model.parameters() if p.__class__.__name__ != "Params4bit"]
    assert upcast and {p.dtype for p in upcast} == {torch.float32}  # norms and embeddings, per QLoRA
    assert model.is_gradient_checkpointing
