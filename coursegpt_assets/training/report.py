"""Artifacts written next to a trained adapter: the loss curve PNG and a description of the hardware."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def hardware_description(device: str) -> str:
    """One line naming the accelerator (or CPU) training ran on, for the summary and the model card."""
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {len(os.sched_getaffinity(0))} cores"


def plot_loss_curve(points: list[dict], path: Path, *, title: str, eval_loss: float | None = None) -> Path:
    """Training loss per logging step (and the final validation loss) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in points if p.get("loss") is not None]
    losses = [p["loss"] for p in points if p.get("loss") is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, marker="o", markersize=3, label="training loss")
    if eval_loss is not None and steps:
        ax.axhline(eval_loss, color="tab:orange", linestyle="--", label=f"validation loss {eval_loss:.3f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
