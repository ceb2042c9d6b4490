"""The card body's base-vs-adapter table, from report.json's `base`, `delta`, `ci` and `bootstrap`.

The model-index holds the adapter's numbers only (it describes this model); the body shows, per headline
metric, the base model's number beside the adapter's, the delta and the 95 % intervals, or why the base
model was not measured.
"""

from __future__ import annotations

from typing import Any

from coursegpt_assets.scoring.comparison import (
    NOT_MEASURED,
    comparison_rows,
    interval_text,
    measured,
    signed,
    significance,
    value_text,
)


def base_comparison_context(report: dict) -> dict[str, Any]:
    """Template variables: `base_comparison` rows of cells, `base_not_measured` (the reason) and `bootstrap_note`."""
    if not measured(report):
        reason = (report.get("base") or {}).get(NOT_MEASURED, "this report predates base-model scoring")
        return {"base_comparison": [], "base_not_measured": str(reason).replace("\n", " "), "bootstrap_note": ""}
    how = report.get("bootstrap") or {}
    rows = [(row["metric"], value_text(row["base"]), value_text(row["adapter"]), signed(row["delta"]),
             interval_text(row["adapter_ci"]), interval_text(row["base_ci"]), interval_text(row["delta_ci"]),
             significance(row)) for row in comparison_rows(report)]
    return {"base_comparison": rows, "base_not_measured": "",
            "bootstrap_note": f"{how.get('resamples')} resamples of the benchmark rows, seed {how.get('seed')}"}
