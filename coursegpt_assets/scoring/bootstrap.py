"""A seeded paired bootstrap over benchmark rows: 95 % intervals for each headline metric and each delta.

Paired because the adapter and the base model answered the same rows: one set of resampled rows serves
both, so the difference between the two is not blurred by which rows happened to be drawn. A row's value
may be None when the row did not record the metric (the router's metrics average over the predictions
that parse); each resample then averages the rows that recorded it, exactly as the report's number does. numpy is imported inside the functions: loading
the definitions (which import this module's constants) stays free of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95

PerRow = Mapping[str, Sequence[float | None]]


def _array(values: Sequence[float | None]) -> np.ndarray:
    import numpy as np

    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def row_mean(values: Sequence[float | None]) -> float | None:
    """The mean over the rows that recorded a value (None when none did): the point estimate."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(kept) / len(kept) if kept else None


def resample_indices(rows: int, *, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """(resamples, rows) row indices drawn with replacement from a generator seeded with `seed`."""
    import numpy as np

    if rows <= 0:
        raise ValueError("the bootstrap needs at least one benchmark row")
    return np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))


def _means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Each resample's mean over its recorded rows; NaN for a resample that drew none."""
    import numpy as np

    drawn = values[indices]
    recorded = ~np.isnan(drawn)
    counts = recorded.sum(axis=1)
    sums = np.where(recorded, drawn, 0.0).sum(axis=1)
    return np.divide(sums, counts, out=np.full(len(counts), np.nan), where=counts > 0)


def _interval(stats: np.ndarray, confidence: float) -> list[float] | None:
    import numpy as np

    finite = stats[np.isfinite(stats)]
    if not finite.size:
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def _checked_lengths(per_row: PerRow, what: str) -> int | None:
    lengths = {name: len(values) for name, values in per_row.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{what}: metrics hold different row counts {lengths}; each needs one value per row")
    return next(iter(lengths.values()), None)


def paired_bootstrap(adapter: PerRow, base: PerRow | None, *, seed: int, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE) -> dict[str, dict[str, list[float] | None]]:
    """{"adapter": {metric: [low, high]}, "base": {...}, "delta": {...}} (percentile intervals; None where a
    side recorded no value). `base` None or empty: only the adapter's intervals. Both sides must hold one
    value per benchmark row, in the same row order."""
    rows = _checked_lengths(adapter, "adapter")
    out: dict[str, dict[str, list[float] | None]] = {"adapter": {}, "base": {}, "delta": {}}
    if rows is None:
        return out
    base = base or {}
    if base and _checked_lengths(base, "base") != rows:
        raise ValueError(f"base scores cover {_checked_lengths(base, 'base')} rows, the adapter's {rows}: "
                         "a paired bootstrap needs both on the same rows")
    indices = resample_indices(rows, seed=seed, resamples=resamples)
    for metric, values in adapter.items():
        ours = _means(_array(values), indices)
        out["adapter"][metric] = _interval(ours, confidence)
        if metric in base:
            theirs = _means(_array(base[metric]), indices)
            out["base"][metric] = _interval(theirs, confidence)
            out["delta"][metric] = _interval(ours - theirs, confidence)
    return out


def excludes_zero(interval: Sequence[float] | None) -> bool:
    """Whether a delta's interval lies wholly above or below 0 (the difference is significant)."""
    return interval is not None and (interval[0] > 0 or interval[1] < 0)
