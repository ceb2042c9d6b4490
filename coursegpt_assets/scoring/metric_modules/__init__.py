"""Load the project's `evaluate` metric modules from their local paths, so no hub lookup happens.

`evaluate.load("exact_match")` needs the Hugging Face hub; ours ship inside the package
(`coursegpt_assets/scoring/metric_modules/<name>/<name>.py`) and load by path, offline. `evaluate` is imported
here, inside the function, because importing it costs seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

METRICS_DIR = Path(__file__).resolve().parent


def metric_names() -> list[str]:
    """Names of the shipped metric modules."""
    return sorted(path.parent.name for path in METRICS_DIR.glob("*/*.py") if path.stem == path.parent.name)


def metric_path(name: str) -> Path:
    """The module script of metric `name`; a clear error lists the known ones."""
    path = METRICS_DIR / name / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"unknown metric {name!r}: no {path} (known: {', '.join(metric_names())})")
    return path


def load_metric(name: str, **kwargs: Any):
    """`evaluate.load` of a shipped metric by absolute path (works with HF_HUB_OFFLINE=1)."""
    import evaluate

    return evaluate.load(str(metric_path(name)), **kwargs)
