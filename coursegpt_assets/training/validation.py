"""Gates around training: tuning data fit to train (and to pay for), and adapters that match the plan.

Pure functions over rows and files, so the asset checks, the assets themselves (before a paid job) and
the tests all use the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from coursegpt_assets.core.layout import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from coursegpt_assets.core.tokens import estimate_tokens

REQUIRED_FIELDS = ("prompt", "completion", "text_prompt", "text_completion")
_MAX_LISTED = 10


@dataclass
class TuningDataReport:
    """What the pre-training checks found in one pair's tuning data."""

    rows: int = 0
    problems: list[str] = field(default_factory=list)
    over_model_length: int = 0
    over_training_length: int = 0
    max_tokens: int = 0
    train_tokens: int = 0
    local_train_tokens: int = 0  # what local training takes of them: rows within max_length, up to a smoke cap
    local_train_rows: int = 0

    @property
    def valid(self) -> bool:
        return not self.problems and self.rows > 0 and self.over_model_length == 0


def inspect_rows(
    rows: Iterable[tuple[int, dict]],
    *,
    source: str,
    end_of_turn: str,
    model_max_length: int,
    training_max_length: int,
    report: TuningDataReport | None = None,
    count_tokens: bool = True,
    local_max_examples: int | None = None,
) -> TuningDataReport:
    """Check (line, row) pairs: required non-empty strings, the end-of-turn token, estimated length.

    With `count_tokens` (the train split) it also counts the tokens local training would take: the rows
    within `training_max_length`, the first `local_max_examples` of them (the training child's choice)."""
    report = report or TuningDataReport()
    for line, row in rows:
        report.rows += 1
        missing = [f for f in REQUIRED_FIELDS if not isinstance(row.get(f), str) or not row[f].strip()]
        if missing:
            report.problems.append(f"{source} line {line}: empty or missing {', '.join(missing)}")
            continue
        if end_of_turn not in row["text_completion"]:
            report.problems.append(f"{source} line {line}: text_completion lacks the end-of-turn {end_of_turn!r}")
        tokens = estimate_tokens(row["text_prompt"] + row["text_completion"])
        report.max_tokens = max(report.max_tokens, tokens)
        report.over_model_length += tokens > model_max_length
        report.over_training_length += tokens > training_max_length
        if count_tokens:
            report.train_tokens += tokens
            if tokens <= training_max_length and (local_max_examples is None
                                                  or report.local_train_rows < local_max_examples):
                report.local_train_rows += 1
                report.local_train_tokens += tokens
    return report


def paid_data_problems(*, train_rows: int, min_train_rows: int, source: str | None, is_fixture: bool) -> list[str]:
    """Why the data is not worth a paid tuning job: the shipped fixture, or fewer train rows than the plan's
    floor (`cost.min_train_rows`); empty when it is."""
    problems = []
    if is_fixture:
        problems.append(f"the data comes from the shipped fixture {source} (name the agent's real source)")
    if train_rows < min_train_rows:
        problems.append(f"the train split has {train_rows} rows, fewer than cost.min_train_rows = {min_train_rows}")
    return problems


def summarise_problems(problems: list[str]) -> str:
    shown = problems[:_MAX_LISTED]
    more = f"\n… and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    return "\n".join(shown) + more


# -- adapters -------------------------------------------------------------------------------------------
@dataclass
class AdapterReport:
    problems: list[str] = field(default_factory=list)
    lora_tensors: int = 0
    modules: dict[str, int] = field(default_factory=dict)  # target module -> LoRA layers found
    rank: int | None = None
    size_bytes: int = 0

    @property
    def valid(self) -> bool:
        return not self.problems


def validate_adapter(
    folder: Path, *, rank: int, target_modules: Iterable[str], base_model_id: str, exact_targets: bool = True
) -> AdapterReport:
    """adapter_config.json agrees with the plan, and the safetensors file holds finite LoRA A/B tensors of
    that rank for every target module. `exact_targets=False` (Vertex exports) allows extra modules."""
    report = AdapterReport()
    folder = Path(folder)
    config_path, weights_path = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            report.problems.append(f"{path}: missing")
    if report.problems:
        return report
    targets = sorted(target_modules)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        report.problems.append(f"{config_path}: not valid JSON ({e})")
        return report
    if config.get("r") != rank:
        report.problems.append(f"{config_path}: r={config.get('r')!r}, the plan says lora_rank {rank}")
    configured = config.get("target_modules") or []
    configured = sorted([configured] if isinstance(configured, str) else configured)
    if (configured != targets) if exact_targets else not set(targets) <= set(configured):
        report.problems.append(f"{config_path}: target_modules {configured}, the plan says {targets}")
    if config.get("base_model_name_or_path") != base_model_id:
        report.problems.append(
            f"{config_path}: base_model_name_or_path {config.get('base_model_name_or_path')!r}, "
            f"expected {base_model_id!r}"
        )
    _check_tensors(weights_path, rank, targets, report)
    return report


def _check_tensors(weights_path: Path, rank: int, targets: list[str], report: AdapterReport) -> None:
    import torch
    from safetensors import safe_open

    report.size_bytes = weights_path.stat().st_size
    counts = {t: {"lora_A": 0, "lora_B": 0} for t in targets}
    try:
        with safe_open(str(weights_path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                parts = key.split(".")
                kind = next((p for p in parts if p in ("lora_A", "lora_B")), None)
                if kind is None:
                    continue
                report.lora_tensors += 1
                module = parts[parts.index(kind) - 1]
                tensor = fh.get_tensor(key)
                if not torch.isfinite(tensor.float()).all():
                    report.problems.append(f"{weights_path}: tensor {key} holds NaN or inf")
                found_rank = tensor.shape[0] if kind == "lora_A" else tensor.shape[-1]
                if found_rank != rank:
                    report.problems.append(f"{weights_path}: tensor {key} has rank {found_rank}, expected {rank}")
                    report.rank = found_rank
                elif report.rank is None:
                    report.rank = rank
                if module in counts:
                    counts[module][kind] += 1
    except Exception as e:  # a truncated or foreign file: safetensors raises its own error types
        report.problems.append(f"{weights_path}: cannot be read as safetensors ({type(e).__name__}: {e})")
        return
    for module, kinds in counts.items():
        if kinds["lora_A"] == 0 or kinds["lora_A"] != kinds["lora_B"]:
            report.problems.append(
                f"{weights_path}: target module {module} has {kinds['lora_A']} lora_A and {kinds['lora_B']} "
                "lora_B tensors (expected one pair per layer, at least one)"
            )
        report.modules[module] = kinds["lora_A"]
