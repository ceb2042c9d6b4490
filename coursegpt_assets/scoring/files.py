"""Reading gold and prediction JSONL files and writing score reports, for the agents' file scorers.

Row i of a predictions file goes with row i of its gold file; every error names the file and line, and a
report is written atomically (temp file + rename) so a failed run never leaves half a report behind.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def read_jsonl(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """(line number, value) for every non-blank line (of a `.gz` file too); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows: list[tuple[int, Any]] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append((line_no, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def objects(path: str | os.PathLike, rows: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    """The values of `read_jsonl`, each required to be a JSON object."""
    for line_no, row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
    return [row for _, row in rows]


def check_pairing(gold_path: str | os.PathLike, gold: list, pred_path: str | os.PathLike, preds: list) -> None:
    if len(gold) != len(preds):
        raise ValueError(
            f"{gold_path} has {len(gold)} rows but {pred_path} has {len(preds)}; "
            "row i of the predictions must go with row i of the gold"
        )


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write JSON atomically: a temp file in the same folder, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table for the terminal (floats to 3 places, None as '-')."""
    cells = [[f"{c:.3f}" if isinstance(c, float) else ("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
