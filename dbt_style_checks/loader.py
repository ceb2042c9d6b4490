"""Compiles schema.yml into Dagster asset checks, one partitioned multi-check per tested asset.

Each check step streams only its own partition from the store (via `layout`), in one pass shared by
all of that asset's selected tests, and emits one AssetCheckResult per test with the failure count and
up to 20 failing rows; memory holds no partition, only what each test keeps (see generic_tests). Building the definitions only parses YAML: no store access and no heavy imports at load time.
"""

import itertools
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
        selected = [by_name[key.name] for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name)]
        yield from run_tests(selected, data, context.partition_key)

    return _checks


class PartitionData:
    """Where the rows of one partition (and those its tests refer to) are streamed from: the store."""

    def __init__(self, store, partition: str):
        self.store, self.partition = store, partition

    def stream(self, asset: str, partition: str, split: str | None = None) -> Iterable[dict]:
        """The asset's rows (one split, or all in order), read from the store each time it is iterated."""
        return _Reread(lambda: SOURCES[asset].read(self.store, partition, split))


class _Reread:
    def __init__(self, read):
        self._read = read

    def __iter__(self):
        return iter(self._read())


def _resolve(t: TestSpec, data: PartitionData, partition: str) -> dict:
    """Arguments with plan values and `to: ref(...)` replaced by the partition's values (`to` streams)."""
    args = {}
    for key, value in t.arguments.items():
        if key == "to_split":
            continue
        if isinstance(value, str) and (m := PLAN_REF.match(value)):
            value = PLAN_VALUES[m.group(1)][1](partition)
        elif key == "to":
            target = SOURCES[REF.match(value).group(1)]
            value = data.stream(target.name, target_partition(t.source, target, partition), t.arguments.get("to_split"))
        args[key] = value
    return args


def _keep(row: dict, where) -> bool:
    try:
        return bool(where(row))
    except Exception:  # a `where` that cannot be evaluated on a row does not select it
        return False


PRESENCE_ROWS = 1000  # split tests look for their columns in this many rows of each split


class _Tracked:
    """One test on the shared stream: its `where`, the rows it checked, which of its columns it has seen."""

    def __init__(self, t: TestSpec, data: PartitionData, partition: str):
        self.t, self.checked, self.error, self.run = t, 0, None, None
        self.by_split = t.test.takes == "splits"
        self.unseen, self.present, self.present_in = set(t.columns), 0, {}
        try:  # raised again only if the data has the test's columns (as when the test ran on a list)
            self.run = t.test.run(**_resolve(t, data, partition))
            self.run.keep = MAX_FAILING_ROWS
        except Exception as e:
            self.error = e

    def wants(self, split: str | None) -> bool:
        return self.by_split or self.t.split is None or self.t.split == split

    def add(self, row: dict, split: str | None) -> None:
        if self.t.where is not None and not _keep(row, self.t.where):
            return
        self.checked += 1
        if not self.by_split or self.present_in.get(split, 0) < PRESENCE_ROWS:
            self.present += 1
            if self.by_split:
                self.present_in[split] = self.present_in.get(split, 0) + 1
            if self.unseen:
                self.unseen.difference_update([c for c in self.unseen if c in row])
        if self.run is not None:
            self.run.add(row, split)


def run_tests(tests: list[TestSpec], data: PartitionData, partition: str) -> list[dg.AssetCheckResult]:
    """Run tests of one asset on one partition in a single pass over its rows; one result per test, in order.

    Rows of a split asset reach a row test with their split in `_split` (for the failing-rows table), unless
    the test is limited to one split."""
    tracked = [_Tracked(t, data, partition) for t in tests if t.applies_to(partition)]
    if tracked:
        source = tracked[0].t.source
        for split in source.splits or [None]:
            wanted = [x for x in tracked if x.wants(split)]
            if wanted:
                _feed_split(wanted, iter(data.stream(source.name, partition, split)), split)
        for x in tracked:
            if x.run is not None:
                x.run.finish()
    done = {x.t.name: x for x in tracked}
    return [_result(done[t.name], partition) if t.name in done else _not_applicable(t, partition) for t in tests]


def _feed_split(wanted: list[_Tracked], rows, split: str | None) -> None:
    """Feed one split's rows to the tests that want them. The first PRESENCE_ROWS rows go through each
    test's bookkeeping (`where`, column presence); after them, a test without `where` whose columns are all
    seen (or a split test, which only looks at those rows) is fed directly and its rows are counted at once."""
    def tagged(x) -> bool:  # a row test reading every split sees each row's split in `_split`
        return split is not None and not x.by_split and x.t.split is None

    def feed(tests, rows) -> int:
        plain, tag = [x.add for x in tests if not tagged(x)], [x.add for x in tests if tagged(x)]
        n = 0
        for row in rows:
            n += 1
            for add in plain:
                add(row, split)
            if tag:
                row = {**row, "_split": split}
                for add in tag:
                    add(row, split)
        return n

    feed(wanted, itertools.islice(rows, PRESENCE_ROWS))
    direct = [x for x in wanted if x.t.where is None and (x.by_split or not x.unseen)]
    slow = [x for x in wanted if x not in direct]
    runs = [_Direct(x) for x in direct if x.run is not None]
    n = feed([*runs, *slow], rows)
    for x in direct:
        x.checked += n


class _Direct:
    """A tracked test fed straight to its run (no `where`, nothing left to look for)."""

    def __init__(self, tracked: _Tracked):
        self.t, self.by_split, self.add = tracked.t, tracked.by_split, tracked.run.add


def run_test(t: TestSpec, data: PartitionData, partition: str) -> dg.AssetCheckResult:
    """Run one test on one partition (a pass of its own over the rows)."""
    return run_tests([t], data, partition)[0]


def _not_applicable(t: TestSpec, partition: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=t.name, asset_key=t.asset, passed=True,
        description=f"not applicable to partition {partition!r} (runs on {', '.join(t.partitions)})",
        metadata={"applicable": False, "failures": 0},
    )


def _result(x: _Tracked, partition: str) -> dg.AssetCheckResult:
    """A finished test's failing rows as a check result."""
    t, checked = x.t, x.checked
    absent = sorted(x.unseen) if x.present else []
    if absent:
        return dg.AssetCheckResult(
            check_name=t.name, asset_key=t.asset, passed=False,
            description=f"column(s) {', '.join(absent)} absent from every row of {t.asset}[{partition}]; "
                        f"schema.yml ({t.location}) is out of date with the data",
            metadata={"failures": checked, "rows_checked": checked, "schema": t.location},
        )
    if x.error is not None:
        raise x.error
    n, failing = x.run.failures, x.run.kept
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
