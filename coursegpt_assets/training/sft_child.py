"""The LoRA training program, run out of the orchestrator process as a Dagster Pipes subprocess.

    python -m coursegpt_assets.training.sft_child      (launched by resources.tuning.LocalTrainer)

It reads everything from the Pipes extras (data files, base model, hyperparameters, chat template,
output folder), trains TRL's SFTTrainer with a PEFT LoRA config on prompt/completion pairs (loss on the
completion only, the family's end-of-turn token inside the labels), streams progress to the run log,
reports one custom message per logging step (the parent records them as AssetObservations) and writes
the adapter folder with `training_summary.json` last. On CUDA the base model is loaded in 4-bit NF4 with
double quantisation and bf16 compute (QLoRA), prepared for k-bit training, with gradient checkpointing; on
CPU in full precision. `training.device_plan` holds those differences.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coursegpt_assets.core.layout import ADAPTER_CONFIG, CHAT_TEMPLATE_FILE, LOSS_CURVE_FILE, SUMMARY_FILE
from coursegpt_assets.core.progress import format_progress
from coursegpt_assets.training.device_plan import DevicePlan, device_plan, load_base_model, pick_device
from coursegpt_assets.training.labels import completion_labels, prepare_pair, terminator_is_trained
from coursegpt_assets.training.library_noise import silence_library_noise
from coursegpt_assets.training.report import hardware_description, plot_loss_curve

LOG_MESSAGE = "training_log"
ERROR_MESSAGE = "training_error"


def read_rows(path: str) -> list[dict]:
    """The tuning rows' rendered prompt/completion; a missing or empty field names the file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            for field in ("text_prompt", "text_completion"):
                if not isinstance(row.get(field), str) or not row[field].strip():
                    raise ValueError(f"{path}:{line_no}: field {field!r} is missing or empty")
            rows.append(row)
    return rows


def sft_arguments(hp: dict, plan: DevicePlan, end_of_turn: str, scratch: str):
    """SFTConfig for the plan's hyperparameters; the CPU/GPU differences come from `device_plan`."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=scratch,
        num_train_epochs=hp["epochs"],
        per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=hp["batch_size"],
        gradient_accumulation_steps=hp["gradient_accumulation_steps"],
        learning_rate=hp["learning_rate"],
        warmup_steps=hp["warmup_ratio"],  # transformers 5: a float < 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        logging_steps=hp["logging_steps"],
        max_length=hp["max_length"],
        completion_only_loss=True,
        eos_token=end_of_turn,
        packing=False,
        seed=hp["seed"],
        data_seed=hp["seed"],
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        **plan.training_overrides,
    )


def name_base_model(config_path: Path, base_model_id: str) -> None:
    """Point adapter_config.json at the HF id / logical name (PEFT writes the local path it loaded from)."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model_id
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def make_progress_callback(pipes, history: list[dict], started: list[float]):
    from transformers import TrainerCallback

    class PipesProgress(TrainerCallback):
        """One custom Pipes message and one log line per logging step: loss, learning rate, tokens/s."""

        def on_train_begin(self, args, state, control, **kwargs):
            started[:] = [time.perf_counter(), 0.0]

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            now = time.perf_counter()
            tokens = float(logs.get("num_tokens", 0.0))
            elapsed = max(now - started[0], 1e-9)
            point = {
                "type": LOG_MESSAGE,
                "step": int(state.global_step),
                "max_steps": int(state.max_steps),
                "epoch": float(logs.get("epoch", state.epoch or 0.0)),
                "loss": float(logs["loss"]),
                "learning_rate": float(logs.get("learning_rate", 0.0)),
                "grad_norm": float(logs.get("grad_norm", float("nan"))),
                "num_tokens": int(tokens),
                "tokens_per_second": (tokens - started[1]) / elapsed,
            }
            if "mean_token_accuracy" in logs:
                point["mean_token_accuracy"] = float(logs["mean_token_accuracy"])
            started[:] = [now, tokens]
            history.append(point)
            pipes.report_custom_message(point)
            pipes.log.info(format_progress(point["step"], point["max_steps"], "steps", loss=point["loss"],
                                           lr=point["learning_rate"], tok_s=point["tokens_per_second"]))

    return PipesProgress()


def fit_to_length(tokenizer, pairs: list[tuple[str, str]], max_length: int, end_of_turn: str, source: str):
    """The pairs that fit `max_length` tokens, and how many did not; every kept pair trains its terminator."""
    kept = []
    for index, (prompt, completion) in enumerate(pairs):
        ex = completion_labels(tokenizer, prompt, completion, eos_token=end_of_turn)
        if not terminator_is_trained(tokenizer, ex["labels"], end_of_turn):
            raise ValueError(f"{source} row {index + 1}: {end_of_turn!r} would not be a trained label")
        if ex["full_length"] <= max_length:
            kept.append((prompt, completion))
    if pairs and not kept:
        raise ValueError(
            f"{source}: all {len(pairs)} examples exceed max_length {max_length} tokens; raise max_length in "
            "training_plan.yaml (hyperparameters, or smoke for smoke models)"
        )
    return kept, len(pairs) - len(kept)


def _dataset(pairs: list[tuple[str, str]]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p, "completion": c} for p, c in pairs])


@dataclass(frozen=True)
class Examples:
    """The prompt/completion pairs that train and validate, and how many training rows were too long."""

    train: list[tuple[str, str]]
    validation: list[tuple[str, str]]
    dropped: int


def load_examples(extras: dict, tokenizer, pipes) -> Examples:
    """Read the tuning files and do once the preparation SFTTrainer would apply: drop rows longer than
    max_length (truncating would cut the end-of-turn label or the instruction), and refuse a terminator
    that would not be trained."""
    hp, end_of_turn = extras["hyperparameters"], extras["end_of_turn"]
    train_rows = read_rows(extras["train_path"])
    val_rows = read_rows(extras["validation_path"]) if extras.get("validation_path") else []
    if not train_rows:
        raise ValueError(f"{extras['train_path']}: no training rows")
    train_pairs = [prepare_pair(tokenizer, r["text_prompt"], r["text_completion"], end_of_turn) for r in train_rows]
    val_pairs = [prepare_pair(tokenizer, r["text_prompt"], r["text_completion"], end_of_turn) for r in val_rows]
    train_pairs, dropped = fit_to_length(tokenizer, train_pairs, hp["max_length"], end_of_turn, extras["train_path"])
    val_pairs, _ = fit_to_length(tokenizer, val_pairs, hp["max_length"], end_of_turn, extras["validation_path"])
    train_pairs = train_pairs[: hp.get("max_train_examples") or None]
    val_pairs = val_pairs[: hp.get("max_eval_examples") or None]
    if dropped:
        pipes.log.warning(
            f"{dropped} of {dropped + len(train_pairs)} training examples exceed max_length {hp['max_length']} "
            "tokens and are left out"
        )
    return Examples(train_pairs, val_pairs, dropped)


def build_trainer(extras: dict, plan: DevicePlan, tokenizer, examples: Examples, scratch: Path, callback):
    """SFTTrainer on the base model with the plan's LoRA config; progress goes through `callback` only."""
    from peft import LoraConfig
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    hp = extras["hyperparameters"]
    model = load_base_model(extras["base_model_path"], plan)
    lora = LoraConfig(
        r=hp["lora_rank"],
        lora_alpha=hp["lora_alpha"],
        lora_dropout=hp["lora_dropout"],
        target_modules=list(hp["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=sft_arguments(hp, plan, extras["end_of_turn"], str(scratch)),
        train_dataset=_dataset(examples.train),
        eval_dataset=_dataset(examples.validation) if examples.validation else None,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # progress goes through Pipes, not raw dicts on stdout
    return trainer


def save_adapter(trainer, out: Path, extras: dict, history: list[dict], eval_loss: float | None) -> None:
    """The adapter named by its logical base id (never a local path), tokenizer, the exact template, loss curve."""
    trainer.save_model(str(out))
    name_base_model(out / ADAPTER_CONFIG, extras["base_model_id"])
    for leftover in ("README.md", "training_args.bin"):  # PEFT's stub card (the model_card asset writes one)
        (out / leftover).unlink(missing_ok=True)
    (out / CHAT_TEMPLATE_FILE).write_text(extras["chat_template"], encoding="utf-8")
    plot_loss_curve(history, out / LOSS_CURVE_FILE, title=f"{extras['pair']} ({extras['version']})", eval_loss=eval_loss)


def hyperparameters_used(hp: dict, plan: DevicePlan, trainer, end_of_turn: str) -> dict:
    """The plan's hyperparameters plus what the device plan and the trainer chose."""
    optim = trainer.args.optim
    return {
        **hp,
        "optimizer": optim.value if hasattr(optim, "value") else str(optim),
        "precision": plan.precision,
        "quantization": plan.quantization,
        "gradient_checkpointing": plan.gradient_checkpointing,
        "completion_only_loss": True,
        "eos_token": end_of_turn,
        "lr_scheduler": "linear",
    }


def training_summary(extras: dict, device: str, used: dict, trainer, result, history: list[dict],
                     eval_loss: float | None, examples: Examples, wall_start: float) -> dict:
    """What `training_summary.json` records: the run's inputs, losses, sizes, speed and library versions."""
    import torch
    import transformers

    runtime = float(result.metrics.get("train_runtime", 0.0)) or 1e-9
    total_tokens = history[-1]["num_tokens"] if history else 0
    return {
        "pair": extras["pair"],
        "agent": extras["agent"],
        "base_model": extras["base_model"],
        "base_model_id": extras["base_model_id"],
        "base_model_revision": extras.get("base_model_revision"),
        "version": extras["version"],
        "data_version": extras["data_version"],
        "backend": "trl",
        "device": device,
        "hardware": hardware_description(device),
        "hyperparameters": used,
        "steps": int(result.global_step),
        "epochs_completed": float(trainer.state.epoch or 0.0),
        "final_loss": history[-1]["loss"] if history else float(result.training_loss),
        "train_loss_mean": float(result.training_loss),
        "eval_loss": eval_loss,
        "loss_history": [{"step": p["step"], "loss": p["loss"]} for p in history],
        "wall_time_s": round(time.perf_counter() - wall_start, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),  # orders adapters found by the sensor
        "train_runtime_s": round(runtime, 3),
        "train_examples": len(examples.train),
        "validation_examples": len(examples.validation),
        "dropped_examples": int(examples.dropped),
        "smoke": bool(extras.get("smoke", False)),
        # the template variables the tuning text was rendered with; inference renders its prompts with them
        "chat_template_kwargs": dict(extras.get("chat_template_kwargs") or {}),
        "tokens_trained": int(total_tokens),
        "tokens_per_second": total_tokens / runtime,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }


def train(extras: dict, pipes) -> dict:
    """Train one adapter into `extras["output_dir"]`; returns the training summary."""
    import datasets
    import transformers
    from transformers import AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    hp = extras["hyperparameters"]
    out = Path(extras["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    wall_start = time.perf_counter()
    device = pick_device(extras.get("device", "auto"))
    plan = device_plan(cuda=device == "cuda")
    transformers.set_seed(hp["seed"])

    tokenizer = AutoTokenizer.from_pretrained(extras["base_model_path"])
    tokenizer.chat_template = extras["chat_template"]
    examples = load_examples(extras, tokenizer, pipes)
    pipes.log.info(
        f"training {extras['pair']} on {device}: {len(examples.train)} train / {len(examples.validation)} "
        f"validation examples, base {extras['base_model_id']}"
    )
    history: list[dict] = []
    scratch = out.parent / f".{out.name}.trainer"
    progress = make_progress_callback(pipes, history, [time.perf_counter(), 0.0])
    trainer = build_trainer(extras, plan, tokenizer, examples, scratch, progress)
    result = trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"] if examples.validation else None
    if eval_loss is not None:
        pipes.log.info(f"validation loss {eval_loss:.4f} on {len(examples.validation)} examples")

    save_adapter(trainer, out, extras, history, eval_loss)
    used = hyperparameters_used(hp, plan, trainer, extras["end_of_turn"])
    summary = training_summary(extras, device, used, trainer, result, history, eval_loss, examples, wall_start)
    if not math.isfinite(summary["final_loss"]):
        raise FloatingPointError(f"{extras['pair']}: final training loss is {summary['final_loss']}; the adapter is not saved")
    shutil.rmtree(scratch, ignore_errors=True)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    silence_library_noise()
    with open_dagster_pipes() as pipes:
        try:
            summary = train(dict(pipes.extras), pipes)
        except Exception as e:  # the parent puts this line into its own error; the traceback goes to the log
            pipes.report_custom_message({"type": ERROR_MESSAGE, "error": f"{type(e).__name__}: {e}"})
            raise
        pipes.log.info(
            f"saved adapter to {pipes.extras['output_dir']}: {summary['steps']} steps, "
            f"final loss {summary['final_loss']:.4f}, {summary['wall_time_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
