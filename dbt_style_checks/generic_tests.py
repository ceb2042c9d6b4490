"""dbt-style generic tests as small pure functions: `(rows | splits, **arguments) -> failing rows`.

Each test returns what dbt's compiled test query would return: the rows that violate it (empty = pass).
Tests named after dbt's own (`unique`, `not_null`, `accepted_values`, `relationships`) keep dbt's
semantics, nulls included: only `not_null` fails on null; the others ignore null values. A test's
docstring opens with what it asserts (the check's description in the UI), then says what a failing row is.

Adding a test kind is one function decorated with `@generic_test("<name>")`. Its keyword parameters are
its YAML arguments (those without a default are required), a `column_name` parameter makes it a column
test, and `column_params` names the arguments that refer to columns, so the loader can reject a typo.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from coursegpt_assets.core.tokens import BYTES_PER_TOKEN, estimate_tokens
from coursegpt_assets.data.records import normalise_text
from dbt_style_checks.expressions import Expression, compile_expression

Rows = Sequence[Mapping]
Splits = Mapping[str, Rows]


@dataclass(frozen=True)
class GenericTest:
    """A registered test: the function plus what the loader needs to validate a YAML entry against it."""

    name: str
    fn: Callable[..., list[dict]]
    takes: str  # "rows" (one list of rows) or "splits" (a mapping split -> rows)
    column_params: tuple[str, ...]  # arguments that name columns of the tested asset

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


def generic_test(name: str, *, takes: str = "rows", column_params: tuple[str, ...] = ("column_name",)):
    """Register `fn` under `name`; that is all a new test kind needs."""

    def register(fn):
        if name in GENERIC_TESTS:
            raise ValueError(f"generic test {name!r} is registered twice")
        GENERIC_TESTS[name] = GenericTest(name=name, fn=fn, takes=takes, column_params=column_params)
        return fn

    return register


def _key(value):
    """A hashable stand-in for a JSON value (lists and objects compare by content)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


# -- dbt's built-in tests ----------------------------------------------------------------------------
@generic_test("unique")
def unique(rows: Rows, *, column_name: str) -> list[dict]:
    """Every non-null `column_name` value occurs once.

    Fails with one row per repeated value (dbt: `value_field, n_records`)."""
    counts = Counter(_key(r.get(column_name)) for r in rows if r.get(column_name) is not None)
    return [{column_name: value, "n_records": n} for value, n in counts.items() if n > 1]


@generic_test("not_null")
def not_null(rows: Rows, *, column_name: str) -> list[dict]:
    """Every row has a non-null `column_name`.

    Fails on the rows where it is null or absent."""
    return [r for r in rows if r.get(column_name) is None]


@generic_test("accepted_values")
def accepted_values(rows: Rows, *, column_name: str, values: list) -> list[dict]:
    """Every non-null `column_name` is one of `values`.

    Fails on the rows whose value is not."""
    allowed = {_key(v) for v in values}
    return [r for r in rows if r.get(column_name) is not None and _key(r.get(column_name)) not in allowed]


@generic_test("relationships", column_params=("column_name",))
def relationships(rows: Rows, *, column_name: str, to: Rows, field: str) -> list[dict]:
    """Every non-null `column_name` matches a `field` of `to` (referential integrity).

    Fails on the rows whose value has no match."""
    parents = {_key(r.get(field)) for r in to if r.get(field) is not None}
    return [r for r in rows if r.get(column_name) is not None and _key(r.get(column_name)) not in parents]


# -- dbt_utils / dbt_expectations style tests --------------------------------------------------------
@generic_test("expression_is_true", column_params=())
def expression_is_true(rows: Rows, *, expression: str | Expression) -> list[dict]:
    """Every row satisfies `expression`.

    Fails on the rows where it is not truthy; where it raises, the row fails with `_error`."""
    expr = compile_expression(expression) if isinstance(expression, str) else expression
    failing = []
    for r in rows:
        try:
            ok = expr(r)
        except Exception as e:  # a type error on one bad row is a failing row, not a crashed check
            failing.append({**r, "_error": f"{type(e).__name__}: {e}"})
            continue
        if not ok:
            failing.append(r)
    return failing


@generic_test("row_count_between", column_params=())
def row_count_between(rows: Rows, *, min_value: int | None = None, max_value: int | None = None) -> list[dict]:
    """The row count is within [`min_value`, `max_value`] (bounds inclusive, each optional).

    Fails with one summary row when it is not."""
    n = len(rows)
    if (min_value is not None and n < min_value) or (max_value is not None and n > max_value):
        return [{"row_count": n, "min_value": min_value, "max_value": max_value}]
    return []


# -- project tests -----------------------------------------------------------------------------------
@generic_test("not_in", column_params=("column_name",))
def not_in(rows: Rows, *, column_name: str, to: Rows, field: str, normalise: bool = False) -> list[dict]:
    """No non-null `column_name` appears in `to`'s `field` (the negation of `relationships`): a leakage guard.

    Fails on the rows whose value does. With `normalise`, values are compared lower-cased with whitespace
    collapsed, as the splits do.
    """
    fold = normalise_text if normalise else _key
    others = {fold(r.get(field)) for r in to if r.get(field) is not None}
    return [r for r in rows if r.get(column_name) is not None and fold(r.get(column_name)) in others]


@generic_test("split_ratio", takes="splits", column_params=())
def split_ratio(splits: Splits, *, ratios: Mapping[str, float], tolerance: float = 0.01) -> list[dict]:
    """Every split's row count is within `tolerance`·n records of its planned share in `ratios`.

    Fails with one row per split that is off. Counts are floored per held-out split (the seed's rule), so at least k-1 records of slack are
    always allowed (k = number of splits) or small smoke subsets would fail on rounding alone.
    """
    n = sum(len(rows) for rows in splits.values())
    if n == 0:
        return []
    slack = max(tolerance * n, len(ratios) - 1)
    failing = []
    for split, share in ratios.items():
        count = len(splits.get(split, ()))
        if abs(count - share * n) > slack:
            failing.append({
                "split": split, "rows": count, "share": round(count / n, 4),
                "expected_share": share, "expected_rows": round(share * n, 1), "total": n,
            })
    return failing


@generic_test("no_overlap", takes="splits", column_params=("columns",))
def no_overlap(splits: Splits, *, columns: list[str], normalise: bool = False) -> list[dict]:
    """No value of any of `columns` appears in more than one split.

    Fails with one row per leaked value."""
    fold = normalise_text if normalise else _key
    failing = []
    for column in columns:
        where: dict[object, set[str]] = defaultdict(set)
        ids: dict[object, list] = defaultdict(list)
        for split, rows in splits.items():
            for r in rows:
                if r.get(column) is not None:
                    value = fold(r.get(column))
                    where[value].add(split)
                    ids[value].append(r.get("id"))
        failing += [
            {"column": column, "value": value, "splits": sorted(found), "ids": ids[value][:10]}
            for value, found in where.items()
            if len(found) > 1
        ]
    return failing


@generic_test("json_valid")
def json_valid(rows: Rows, *, column_name: str, expect: str = "any", strip_think: bool = False) -> list[dict]:
    """Every non-null `column_name` is a JSON string (of `expect`: any, object or array).

    Fails on the rows whose value is not. `strip_think` drops a leading `<think>…</think>` block first (router completions with think wrapping).
    """
    kinds = {"any": object, "object": dict, "array": list}
    if expect not in kinds:
        raise ValueError(f"json_valid: expect={expect!r} is not one of {', '.join(kinds)}")
    failing = []
    for r in rows:
        value = r.get(column_name)
        if value is None:
            continue
        if not isinstance(value, str):
            failing.append({**r, "_error": f"expected a JSON string, got {type(value).__name__}"})
            continue
        text = value.strip()
        if strip_think and text.startswith("<think>") and "</think>" in text:
            text = text.split("</think>", 1)[1].strip()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as e:
            failing.append({**r, "_error": f"invalid JSON: {e.msg} at char {e.pos}"})
            continue
        if not isinstance(parsed, kinds[expect]):
            failing.append({**r, "_error": f"expected a JSON {expect}, got {type(parsed).__name__}"})
    return failing


@generic_test("max_tokens", column_params=("columns",))
def max_tokens(rows: Rows, *, columns: list[str], limit: int, bytes_per_token: int = BYTES_PER_TOKEN) -> list[dict]:
    """No row's estimated token count over `columns` (joined) exceeds `limit`.

    Fails on the rows whose count does. The estimate is the one tuning_dataset, the length and cost checks
    and `coursegpt plan` use (`core.tokens`: UTF-8 bytes / bytes_per_token, rounded up).
    """
    failing = []
    for r in rows:
        tokens = estimate_tokens("".join(str(r.get(c) or "") for c in columns), bytes_per_token)
        if tokens > limit:
            failing.append({**r, "_tokens": tokens, "_limit": limit})
    return failing
