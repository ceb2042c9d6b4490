"""Compiles schema.yml into Dagster asset checks, one partitioned multi-check per tested asset.

Each check step reads only its own partition from the store (via `layout`, once for all of that
asset's tests) and emits one AssetCheckResult per test with the failure count and up to 20 failing
rows. Building the definitions only parses YAML: no store access and no heavy imports at load time.
"""

import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from dbt_style_checks.catalog import PLAN_VALUES, SOURCES, target_partition
from dbt_style_checks.spec import PLAN_REF, REF, TestSpec, load_schema

MAX_FAILING_ROWS = 20
MAX_CELL_CHARS = 300


def build_dbt_checks(schema_path: str | Path | None = None, *, only: Iterable[str] | None = None
                     ) -> list[dg.AssetChecksDefinition]:
    """Asset checks for every model in schema.yml (or only the assets named in `only`)."""
    tests = load_schema(schema_path)
    wanted = set(only) if only is not None else None
    by_asset: dict[str, list[TestSpec]] = {}
    for t in tests:
        if wanted is None or t.asset in wanted:
            by_asset.setdefault(t.asset, []).append(t)
    return [_asset_checks(asset, asset_tests) for asset, asset_tests in by_asset.items()]


def _describe(t: TestSpec) -> str:
    """What the check asserts (schema.yml's description, else the test's, naming the column), then the call,
    its scope and severity."""
    asserts = t.test.asserts.replace("`column_name`", f"`{t.column}`") if t.column else t.test.asserts
    args = [f"{k}={_text(v)}" for k, v in t.arguments.items() if k != "column_name"]
    target = f"{t.test.name}({', '.join([t.column, *args] if t.column else args)})"
    scope = f" on partitions {', '.join(t.partitions)}" if t.partitions else ""
    gate = " Blocking: a failure stops downstream assets." if t.blocking else ""
    return f"{t.description or asserts} [{target}{scope}, severity {t.severity}, {t.location}]{gate}"


def _text(value) -> str:
    return getattr(value, "text", None) or (value if isinstance(value, str) else json.dumps(value))


def _asset_checks(asset: str, tests: list[TestSpec]) -> dg.AssetChecksDefinition:
    partitions_def = SOURCES[asset].partitions_def
    with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13; we rely on them knowingly
        warnings.filterwarnings("ignore", message="Specifying a partitions_def", category=dg.PreviewWarning)
        specs = [
            dg.AssetCheckSpec(
                t.name, asset=asset, blocking=t.blocking, partitions_def=partitions_def, description=_describe(t),
                metadata={"schema": t.location, "test": t.test.name, "severity": t.severity},
            )
            for t in tests
        ]
    by_name = {t.name: t for t in tests}

    @dg.multi_asset_check(
        specs=specs, can_subset=True, name=f"{asset}_data_tests", required_resource_keys={"store"},
        description=f"schema.yml tests of {asset}, run on one partition at a time.",
    )
    def _checks(context: dg.AssetCheckExecutionContext):
        data = PartitionData(context.resources.store, context.partition_key)
        for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
            yield run_test(by_name[key.name], data, context.partition_key)

    return _checks


class PartitionData:
    """Rows of one partition, read once per asset (and split) and shared by that asset's tests."""

    def __init__(self, store, partition: str):
        self.store, self.partition, self._cache = store, partition, {}

    def rows(self, asset: str, partition: str, split: str | None = None) -> list[dict]:
        key = (asset, partition, split)
        if key not in self._cache:
            source = SOURCES[asset]
            if source.splits is None or split is not None:
                self._cache[key] = list(source.read(self.store, partition, split))
            else:  # all splits, each row tagged with its split for the failing-rows table
                splits = self.splits(asset, partition)
                self._cache[key] = [{**r, "_split": s} for s, rows in splits.items() for r in rows]
        return self._cache[key]

    def splits(self, asset: str, partition: str) -> dict[str, list[dict]]:
        key = (asset, partition, "*splits")
        if key not in self._cache:
            self._cache[key] = SOURCES[asset].read_splits(self.store, partition)
        return self._cache[key]


def _resolve(t: TestSpec, data: PartitionData, partition: str) -> dict:
    """Arguments with plan values and `to: ref(...)` replaced by the partition's values."""
    args = {}
    for key, value in t.arguments.items():
        if key == "to_split":
            continue
        if isinstance(value, str) and (m := PLAN_REF.match(value)):
            value = PLAN_VALUES[m.group(1)][1](partition)
        elif key == "to":
            target = SOURCES[REF.match(value).group(1)]
            value = data.rows(target.name, target_partition(t.source, target, partition), t.arguments.get("to_split"))
        args[key] = value
    return args


def _keep(row: dict, where) -> bool:
    try:
        return bool(where(row))
    except Exception:  # a `where` that cannot be evaluated on a row does not select it
        return False


def run_test(t: TestSpec, data: PartitionData, partition: str) -> dg.AssetCheckResult:
    """Run one test on one partition and turn its failing rows into a check result."""
    if not t.applies_to(partition):
        return dg.AssetCheckResult(
            check_name=t.name, asset_key=t.asset, passed=True,
            description=f"not applicable to partition {partition!r} (runs on {', '.join(t.partitions)})",
            metadata={"applicable": False, "failures": 0},
        )
    if t.test.takes == "splits":
        payload = data.splits(t.asset, partition)
        if t.where is not None:
            payload = {s: [r for r in rows if _keep(r, t.where)] for s, rows in payload.items()}
        checked = sum(len(rows) for rows in payload.values())
        present = [r for rows in payload.values() for r in rows[:1000]]
    else:
        payload = data.rows(t.asset, partition, t.split)
        if t.where is not None:
            payload = [r for r in payload if _keep(r, t.where)]
        checked, present = len(payload), payload
    absent = sorted(c for c in t.columns if present and not any(c in r for r in present))
    if absent:
        return dg.AssetCheckResult(
            check_name=t.name, asset_key=t.asset, passed=False,
            description=f"column(s) {', '.join(absent)} absent from every row of {t.asset}[{partition}]; "
                        f"schema.yml ({t.location}) is out of date with the data",
            metadata={"failures": checked, "rows_checked": checked, "schema": t.location},
        )
    failing = t.test(payload, **_resolve(t, data, partition))
    n = len(failing)
    if t.severity == "error" and t.error_if(n):
        passed, severity = False, dg.AssetCheckSeverity.ERROR
    elif t.warn_if(n):
        passed, severity = False, dg.AssetCheckSeverity.WARN
    else:
        passed, severity = True, dg.AssetCheckSeverity.ERROR
    verdict = "passed" if passed else f"failed ({severity.value})"
    return dg.AssetCheckResult(
        check_name=t.name, asset_key=t.asset, passed=passed, severity=severity,
        description=f"{t.test.name}: {n} failing row(s) of {checked} checked in {t.asset}[{partition}]; {verdict}",
        metadata={
            "failures": n,
            "rows_checked": checked,
            "failing_rows": dg.MetadataValue.json([_trim(r, t.columns) for r in failing[:MAX_FAILING_ROWS]]),
            "thresholds": f"error_if {t.error_if}, warn_if {t.warn_if}" if t.severity == "error" else f"warn_if {t.warn_if}",
            "schema": t.location,
        },
    )


def _trim(row: dict, columns: frozenset[str]) -> dict:
    """A source row cut to its id, the tested columns and the test's own `_` notes; long values shortened."""
    if "id" in row:
        row = {k: v for k, v in row.items() if k == "id" or k in columns or k.startswith("_")}
    return {k: _cell(v) for k, v in row.items()}


def _cell(value):
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return value if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return value[: MAX_CELL_CHARS - 1] + "…"
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
