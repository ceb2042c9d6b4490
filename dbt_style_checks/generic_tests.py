"""dbt-style generic tests that stream: each sees every row once and keeps only what its verdict needs.

Each test returns what dbt's compiled test query would return: the rows that violate it (empty = pass).
Tests named after dbt's own (`unique`, `not_null`, `accepted_values`, `relationships`) keep dbt's
semantics, nulls included: only `not_null` fails on null; the others ignore null values. A test's
docstring opens with what it asserts (the check's description in the UI), then says what a failing row is.

A shipped test is a `TestRun` class: built from its YAML arguments, it is fed rows one at a time (`add`),
so the loader runs all of an asset's tests in one pass over the store and no test holds the data. It
counts every failure and keeps the first `keep` failing rows (the check's table); aggregates such as
`unique` keep one small entry per value. Registering it also gives a plain function `(rows | splits,
**arguments) -> failing rows`. A new kind may also be a plain function decorated with
`@generic_test("<name>")`: it then sees its rows as one list, held in memory. Keyword parameters are the
YAML arguments (those without a default are required), a `column_name` parameter makes it a column test,
and `column_params` names the arguments that refer to columns, so the loader can reject a typo.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from coursegpt_assets.core.tokens import BYTES_PER_TOKEN, estimate_tokens
from coursegpt_assets.data.records import normalise_text
from dbt_style_checks.expressions import Expression, compile_expression

Rows = Sequence[Mapping]
Splits = Mapping[str, Rows]


class TestRun:
    """One run of a test over a stream: `add(row, split)` per row, then `finish()`; `failures` counts
    every failing row, `kept` holds the first `keep` of them (None: all)."""

    __test__ = False  # not a pytest class
    keep: int | None = None

    def __init__(self) -> None:
        self.failures, self.kept = 0, []

    def fail(self, row: dict) -> None:
        self.failures += 1
        if self.keep is None or len(self.kept) < self.keep:
            self.kept.append(row)

    def add(self, row: Mapping, split: str | None) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Fail what only the whole stream shows (aggregate tests)."""


@dataclass(frozen=True)
class GenericTest:
    """A registered test: the function plus what the loader needs to validate a YAML entry against it."""

    name: str
    fn: Callable[..., list[dict]]
    takes: str  # "rows" (one list of rows) or "splits" (a mapping split -> rows)
    column_params: tuple[str, ...]  # arguments that name columns of the tested asset
    run: Callable[..., TestRun]  # arguments -> a TestRun to feed

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        params = list(inspect.signature(self.fn).parameters.values())[1:]
        return {p.name: p for p in params}

    @property
    def required(self) -> set[str]:
        return {n for n, p in self.parameters.items() if p.default is inspect.Parameter.empty}

    @property
    def asserts(self) -> str:
        """What the test asserts: the first line of its docstring."""
        return (self.fn.__doc__ or "").strip().splitlines()[0]

    @property
    def is_column_test(self) -> bool:
        return "column_name" in self.parameters

    def __call__(self, data, **arguments) -> list[dict]:
        return self.fn(data, **arguments)


GENERIC_TESTS: dict[str, GenericTest] = {}


def feed(run: TestRun, data, takes: str) -> TestRun:
    """Feed a whole list of rows (or a mapping split -> rows) to `run` and finish it."""
    for split, rows in (data.items() if takes == "splits" else [(None, data)]):
        for row in rows:
            run.add(row, split)
    run.finish()
    return run


def _as_function(cls: type[TestRun], takes: str) -> Callable[..., list[dict]]:
    def fn(data, **arguments) -> list[dict]:
        return feed(cls(**arguments), data, takes).kept

    data = inspect.Parameter("splits" if takes == "splits" else "rows", inspect.Parameter.POSITIONAL_ONLY)
    fn.__signature__ = inspect.signature(cls).replace(
        parameters=[data, *inspect.signature(cls).parameters.values()])
    fn.__name__, fn.__qualname__, fn.__doc__ = cls.__name__, cls.__qualname__, cls.__doc__
    return fn


def _buffered(fn: Callable[..., list[dict]], takes: str) -> Callable[..., TestRun]:
    """A TestRun for a plain-function test: collects the rows, then calls it once on them all."""

    class Buffered(TestRun):
        def __init__(self, **arguments):
            super().__init__()
            if arguments.get("to") is not None:
                arguments["to"] = list(arguments["to"])
            self.arguments, self.rows = arguments, ({} if takes == "splits" else [])

        def add(self, row, split):
            (self.rows.setdefault(split, []) if takes == "splits" else self.rows).append(row)

        def finish(self):
            for row in fn(self.rows, **self.arguments):
                self.fail(row)

    return Buffered


def generic_test(name: str, *, takes: str = "rows", column_params: tuple[str, ...] = ("column_name",)):
    """Register a TestRun class (or a plain function) under `name`; that is all a new test kind needs.
    Returns the plain function."""

    def register(impl):
        if name in GENERIC_TESTS:
            raise ValueError(f"generic test {name!r} is registered twice")
        streaming = isinstance(impl, type) and issubclass(impl, TestRun)
        fn = _as_function(impl, takes) if streaming else impl
        run = impl if streaming else _buffered(impl, takes)
        GENERIC_TESTS[name] = GenericTest(name=name, fn=fn, takes=takes, column_params=column_params, run=run)
        return fn

    return register


def _key(value):
    """A hashable stand-in for a JSON value (lists and objects compare by content)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def _compact(key):
    """A long key as a 16-byte digest, so a per-value table does not hold every long text."""
    if isinstance(key, str) and len(key) > 32:
        return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return key


def _values(to: Iterable[Mapping], field: str, fold) -> set:
    return {fold(r.get(field)) for r in to if r.get(field) is not None}


# -- dbt's built-in tests ----------------------------------------------------------------------------
@generic_test("unique")
class unique(TestRun):  # noqa: N801 (registered under its YAML name)
    """Every non-null `column_name` value occurs once.

    Fails with one row per repeated value (dbt: `value_field, n_records`)."""

    def __init__(self, *, column_name: str):
        super().__init__()
        self.column, self.counts = column_name, Counter()

    def add(self, row, split):
        if (value := row.get(self.column)) is not None:
            self.counts[_key(value)] += 1

    def finish(self):
        for value, n in self.counts.items():
            if n > 1:
                self.fail({self.column: value, "n_records": n})


@generic_test("not_null")
class not_null(TestRun):  # noqa: N801
    """Every row has a non-null `column_name`.

    Fails on the rows where it is null or absent."""

    def __init__(self, *, column_name: str):
        super().__init__()
        self.column = column_name

    def add(self, row, split):
        if row.get(self.column) is None:
            self.fail(row)


@generic_test("accepted_values")
class accepted_values(TestRun):  # noqa: N801
    """Every non-null `column_name` is one of `values`.

    Fails on the rows whose value is not."""

    def __init__(self, *, column_name: str, values: list):
        super().__init__()
        self.column, self.allowed = column_name, {_key(v) for v in values}

    def add(self, row, split):
        value = row.get(self.column)
        if value is not None and _key(value) not in self.allowed:
            self.fail(row)


@generic_test("relationships", column_params=("column_name",))
class relationships(TestRun):  # noqa: N801
    """Every non-null `column_name` matches a `field` of `to` (referential integrity).

    Fails on the rows whose value has no match."""

    def __init__(self, *, column_name: str, to: Rows, field: str):
        super().__init__()
        self.column, self.parents = column_name, _values(to, field, _key)

    def add(self, row, split):
        value = row.get(self.column)
        if value is not None and _key(value) not in self.parents:
            self.fail(row)


# -- dbt_utils / dbt_expectations style tests --------------------------------------------------------
@generic_test("expression_is_true", column_params=())
class expression_is_true(TestRun):  # noqa: N801
    """Every row satisfies `expression`.

    Fails on the rows where it is not truthy; where it raises, the row fails with `_error`."""

    def __init__(self, *, expression: str | Expression):
        super().__init__()
        self.expr = compile_expression(expression) if isinstance(expression, str) else expression

    def add(self, row, split):
        try:
            ok = self.expr(row)
        except Exception as e:  # a type error on one bad row is a failing row, not a crashed check
            self.fail({**row, "_error": f"{type(e).__name__}: {e}"})
            return
        if not ok:
            self.fail(row)


@generic_test("row_count_between", column_params=())
class row_count_between(TestRun):  # noqa: N801
    """The row count is within [`min_value`, `max_value`] (bounds inclusive, each optional).

    Fails with one summary row when it is not."""

    def __init__(self, *, min_value: int | None = None, max_value: int | None = None):
        super().__init__()
        self.min, self.max, self.n = min_value, max_value, 0

    def add(self, row, split):
        self.n += 1

    def finish(self):
        if (self.min is not None and self.n < self.min) or (self.max is not None and self.n > self.max):
            self.fail({"row_count": self.n, "min_value": self.min, "max_value": self.max})


# -- project tests -----------------------------------------------------------------------------------
@generic_test("not_in", column_params=("column_name",))
class not_in(TestRun):  # noqa: N801
    """No non-null `column_name` appears in `to`'s `field` (the negation of `relationships`): a leakage guard.

    Fails on the rows whose value does. With `normalise`, values are compared lower-cased with whitespace
    collapsed, as the splits do.
    """

    def __init__(self, *, column_name: str, to: Rows, field: str, normalise: bool = False):
        super().__init__()
        self.fold = normalise_text if normalise else _key
        self.column, self.others = column_name, _values(to, field, self.fold)

    def add(self, row, split):
        value = row.get(self.column)
        if value is not None and self.fold(value) in self.others:
            self.fail(row)


@generic_test("split_ratio", takes="splits", column_params=())
class split_ratio(TestRun):  # noqa: N801
    """Every split's row count is within `tolerance`·n records of its planned share in `ratios`.

    Fails with one row per split that is off. Counts are floored per held-out split (the seed's rule), so at least k-1 records of slack are
    always allowed (k = number of splits) or small smoke subsets would fail on rounding alone.
    """

    def __init__(self, *, ratios: Mapping[str, float], tolerance: float = 0.01):
        super().__init__()
        self.ratios, self.tolerance, self.counts = ratios, tolerance, Counter()

    def add(self, row, split):
        self.counts[split] += 1

    def finish(self):
        n = sum(self.counts.values())
        if n == 0:
            return
        slack = max(self.tolerance * n, len(self.ratios) - 1)
        for split, share in self.ratios.items():
            count = self.counts[split]
            if abs(count - share * n) > slack:
                self.fail({
                    "split": split, "rows": count, "share": round(count / n, 4),
                    "expected_share": share, "expected_rows": round(share * n, 1), "total": n,
                })


@generic_test("no_overlap", takes="splits", column_params=("columns",))
class no_overlap(TestRun):  # noqa: N801
    """No value of any of `columns` appears in more than one split.

    Fails with one row per leaked value."""

    MAX_IDS = 10

    def __init__(self, *, columns: list[str], normalise: bool = False):
        super().__init__()
        self.columns, self.fold = columns, normalise_text if normalise else _key
        # per column: value key -> [first split, ids…] (one split) or [set of splits, value, ids…] (leaked)
        self.seen: dict[str, dict] = {c: {} for c in columns}

    def add(self, row, split):
        for column in self.columns:
            if (raw := row.get(column)) is None:
                continue
            value = self.fold(raw)
            entry = self.seen[column].setdefault(_compact(value), [split])
            if isinstance(entry[0], str) and entry[0] != split:
                entry[0:1] = [{entry[0], split}, value]
            elif isinstance(entry[0], set):
                entry[0].add(split)
            if len(entry) - (2 if isinstance(entry[0], set) else 1) < self.MAX_IDS:
                entry.append(row.get("id"))

    def finish(self):
        for column in self.columns:
            for entry in self.seen[column].values():
                if isinstance(entry[0], set):
                    self.fail({"column": column, "value": entry[1], "splits": sorted(entry[0]), "ids": entry[2:]})


@generic_test("json_valid")
class json_valid(TestRun):  # noqa: N801
    """Every non-null `column_name` is a JSON string (of `expect`: any, object or array).

    Fails on the rows whose value is not. `strip_think` drops a leading `<think>…</think>` block first (router completions with think wrapping).
    """

    KINDS = {"any": object, "object": dict, "array": list}

    def __init__(self, *, column_name: str, expect: str = "any", strip_think: bool = False):
        super().__init__()
        if expect not in self.KINDS:
            raise ValueError(f"json_valid: expect={expect!r} is not one of {', '.join(self.KINDS)}")
        self.column, self.expect, self.strip_think = column_name, expect, strip_think

    def add(self, row, split):
        value = row.get(self.column)
        if value is None:
            return
        if not isinstance(value, str):
            self.fail({**row, "_error": f"expected a JSON string, got {type(value).__name__}"})
            return
        text = value.strip()
        if self.strip_think and text.startswith("<think>") and "</think>" in text:
            text = text.split("</think>", 1)[1].strip()
        try:
            parsed = orjson.loads(text)  # fast; accepts a subset of what json does (no NaN, no lone surrogates)
        except orjson.JSONDecodeError:
            try:  # what json accepts beyond it, and the failing row's message, come from json itself
                parsed = json.loads(text)
            except json.JSONDecodeError as e:
                self.fail({**row, "_error": f"invalid JSON: {e.msg} at char {e.pos}"})
                return
        if not isinstance(parsed, self.KINDS[self.expect]):  # named as json types it (a huge int: int, not float)
            self.fail({**row, "_error": f"expected a JSON {self.expect}, got {type(json.loads(text)).__name__}"})


@generic_test("max_tokens", column_params=("columns",))
class max_tokens(TestRun):  # noqa: N801
    """No row's estimated token count over `columns` (joined) exceeds `limit`.

    Fails on the rows whose count does. The estimate is the one tuning_dataset, the length and cost checks
    and `coursegpt plan` use (`core.tokens`: UTF-8 bytes / bytes_per_token, rounded up).
    """

    def __init__(self, *, columns: list[str], limit: int, bytes_per_token: int = BYTES_PER_TOKEN):
        super().__init__()
        self.columns, self.limit, self.bytes_per_token = columns, limit, bytes_per_token

    def add(self, row, split):
        tokens = estimate_tokens("".join(str(row.get(c) or "") for c in self.columns), self.bytes_per_token)
        if tokens > self.limit:
            self.fail({**row, "_tokens": tokens, "_limit": self.limit})
