"""Unit tests of the dbt-style generic tests and the safe expression evaluator: each passes on good data
and returns the failing rows of crafted bad data."""

import json

import pytest

from dbt_style_checks import generic_tests as gt
from dbt_style_checks.expressions import ExpressionError, compile_expression

GOOD = [
    {"id": "a", "user_query": "Solve x", "difficulty": "introductory", "route_plan": ["/math(x)"], "n": 3},
    {"id": "b", "user_query": "Write code", "difficulty": "advanced", "route_plan": ["/code(y)"], "n": 7},
    {"id": "c", "user_query": "Search it", "difficulty": None, "route_plan": ["/general-search(z)"], "n": 5},
]


def test_registry_holds_every_documented_test():
    assert set(gt.GENERIC_TESTS) == {
        "unique", "not_null", "accepted_values", "relationships", "not_in", "expression_is_true",
        "row_count_between", "split_ratio", "no_overlap", "json_valid", "max_tokens",
    }
    assert gt.GENERIC_TESTS["unique"].is_column_test
    assert not gt.GENERIC_TESTS["split_ratio"].is_column_test
    assert gt.GENERIC_TESTS["split_ratio"].takes == "splits"
    assert gt.GENERIC_TESTS["accepted_values"].required == {"column_name", "values"}


def test_unique_ignores_nulls_and_reports_each_duplicated_value_once():
    assert gt.unique(GOOD, column_name="id") == []
    assert gt.unique(GOOD, column_name="difficulty") == []  # one null is not a duplicate
    bad = [*GOOD, {"id": "a"}, {"id": "a"}, {"id": None}, {"id": None}]
    assert gt.unique(bad, column_name="id") == [{"id": "a", "n_records": 3}]


def test_unique_compares_lists_by_content():
    rows = [{"plan": ["/math"]}, {"plan": ["/math"]}, {"plan": ["/code"]}]
    assert gt.unique(rows, column_name="plan") == [{"plan": json.dumps(["/math"]), "n_records": 2}]


def test_not_null_fails_on_null_and_absent():
    assert gt.not_null(GOOD, column_name="id") == []
    bad = [*GOOD, {"id": None}, {"user_query": "no id"}]
    assert gt.not_null(bad, column_name="id") == [{"id": None}, {"user_query": "no id"}]


def test_accepted_values_passes_nulls_like_dbt():
    values = ["introductory", "intermediate", "advanced"]
    assert gt.accepted_values(GOOD, column_name="difficulty", values=values) == []
    bad = [*GOOD, {"id": "d", "difficulty": "expert"}]
    assert gt.accepted_values(bad, column_name="difficulty", values=values) == [{"id": "d", "difficulty": "expert"}]


def test_relationships_is_referential_integrity():
    parents = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert gt.relationships(GOOD, column_name="id", to=parents, field="id") == []
    failing = gt.relationships([*GOOD, {"id": "orphan"}, {"id": None}], column_name="id", to=parents, field="id")
    assert failing == [{"id": "orphan"}]


def test_not_in_finds_leaked_values_raw_and_normalised():
    train = [{"id": "t1", "user_query": "Solve   X"}, {"id": "t2", "user_query": "other"}]
    bench = [{"id": "b1", "user_query": "solve x"}, {"id": "t2", "user_query": "fresh"}]
    assert gt.not_in(bench, column_name="id", to=train, field="id") == [bench[1]]
    assert gt.not_in(bench, column_name="user_query", to=train, field="user_query") == []
    assert gt.not_in(bench, column_name="user_query", to=train, field="user_query", normalise=True) == [bench[0]]
    assert gt.not_in(GOOD, column_name="id", to=train, field="id") == []


def test_expression_is_true_reports_false_rows_and_errors():
    assert gt.expression_is_true(GOOD, expression="len(route_plan) >= 1 and n > 0") == []
    bad = [*GOOD, {"id": "d", "route_plan": [], "n": 1}, {"id": "e", "route_plan": None, "n": 1}]
    failing = gt.expression_is_true(bad, expression="len(route_plan) >= 1")
    assert [r["id"] for r in failing] == ["d", "e"]
    assert failing[0].get("_error") is None
    assert failing[1]["_error"].startswith("TypeError")


def test_row_count_between_is_inclusive():
    assert gt.row_count_between(GOOD, min_value=3, max_value=3) == []
    assert gt.row_count_between(GOOD) == []
    assert gt.row_count_between(GOOD, min_value=4) == [{"row_count": 3, "min_value": 4, "max_value": None}]
    assert gt.row_count_between(GOOD, max_value=2)[0]["row_count"] == 3


def _splits(train: int, validation: int, test: int) -> dict[str, list[dict]]:
    counter = iter(range(10**6))
    return {s: [{"id": f"r{next(counter)}"} for _ in range(n)] for s, n in
            (("train", train), ("validation", validation), ("test", test))}


def test_split_ratio_matches_the_seed_counts_and_flags_a_skewed_split():
    ratios = {"train": 0.85, "validation": 0.10, "test": 0.05}
    assert gt.split_ratio(_splits(6962, 818, 409), ratios=ratios) == []  # the seed's 8,189-row router split
    assert gt.split_ratio(_splits(8, 1, 0), ratios=ratios) == []  # smoke subset: floor() rounding allowed
    failing = gt.split_ratio(_splits(7300, 480, 409), ratios=ratios)
    assert {f["split"] for f in failing} == {"train", "validation"}
    validation = next(f for f in failing if f["split"] == "validation")
    assert validation["rows"] == 480 and validation["expected_share"] == 0.10
    assert gt.split_ratio(_splits(0, 0, 0), ratios=ratios) == []


def test_no_overlap_by_value_and_by_normalised_text():
    splits = {
        "train": [{"id": "a", "q": "Hello  World"}, {"id": "b", "q": "x"}],
        "validation": [{"id": "c", "q": "hello world"}],
        "test": [{"id": "d", "q": "y"}],
    }
    assert gt.no_overlap(splits, columns=["id"]) == []
    assert gt.no_overlap(splits, columns=["q"]) == []
    leaked = gt.no_overlap(splits, columns=["q"], normalise=True)
    assert leaked == [{"column": "q", "value": "hello world", "splits": ["train", "validation"], "ids": ["a", "c"]}]
    splits["test"].append({"id": "a", "q": "z"})
    assert gt.no_overlap(splits, columns=["id", "q"])[0]["splits"] == ["test", "train"]


def test_json_valid_with_expected_type_and_think_block():
    rows = [{"id": "a", "completion": '{"route_plan": []}'},
            {"id": "b", "completion": '<think>\nplan it\n</think>\n{"route_plan": ["/math"]}'},
            {"id": "c", "completion": None}]
    assert gt.json_valid(rows, column_name="completion", expect="object", strip_think=True) == []
    bad = [{"id": "d", "completion": '{"route_plan": ['}, {"id": "e", "completion": "[1, 2]"},
           {"id": "f", "completion": {"already": "parsed"}}, rows[1]]
    failing = gt.json_valid(bad, column_name="completion", expect="object")
    assert [r["id"] for r in failing] == ["d", "e", "f", "b"]
    assert "invalid JSON" in failing[0]["_error"] and "got list" in failing[1]["_error"]
    assert gt.json_valid([bad[1]], column_name="completion", expect="array") == []
    with pytest.raises(ValueError, match="expect"):
        gt.json_valid(rows, column_name="completion", expect="dict")


def test_max_tokens_uses_the_tuning_estimate():
    rows = [{"id": "a", "p": "x" * 40, "c": "y" * 40}, {"id": "b", "p": "x" * 41, "c": "y" * 40}]
    assert gt.max_tokens(rows[:1], columns=["p", "c"], limit=20) == []  # 80 chars / 4 = 20 tokens
    failing = gt.max_tokens(rows, columns=["p", "c"], limit=20)
    assert [(r["id"], r["_tokens"]) for r in failing] == [("b", 21)]
    assert gt.max_tokens(rows, columns=["p", "c"], limit=20, bytes_per_token=5) == []


def test_registering_a_new_kind_is_one_function(monkeypatch):
    monkeypatch.setattr(gt, "GENERIC_TESTS", dict(gt.GENERIC_TESTS))

    @gt.generic_test("min_length")
    def min_length(rows, *, column_name: str, length: int):
        return [r for r in rows if len(r.get(column_name) or "") < length]

    registered = gt.GENERIC_TESTS["min_length"]
    assert registered.is_column_test and registered.required == {"column_name", "length"}
    assert registered(GOOD, column_name="user_query", length=9) == [GOOD[0]]
    with pytest.raises(ValueError, match="twice"):
        gt.generic_test("min_length")(min_length)


# -- the expression evaluator --------------------------------------------------------------------------
@pytest.mark.parametrize("text, row, expected", [
    ("0 <= score <= 100", {"score": 50}, True),
    ("0 <= score <= 100", {"score": 101}, False),
    ("score is None or score > 1", {}, True),
    ("difficulty in ['introductory', 'advanced']", {"difficulty": "advanced"}, True),
    ("metrics['primary'] != None and len(metrics['primary']) == 2", {"metrics": {"primary": [1, 2]}}, True),
    ("not is_list(tags)", {"tags": "x"}, True),
    ("normalise(q) == 'a b'", {"q": "  A   B "}, True),
    ("(a + b) * 2 > 10 if a else False", {"a": 3, "b": 3}, True),
    ("-n < 0", {"n": 2}, True),
])
def test_expressions_evaluate(text, row, expected):
    assert bool(compile_expression(text)(row)) is expected


def test_expression_reports_the_columns_it_reads():
    assert compile_expression("len(strip(user_query)) > 0 and x['k'] == True").columns == {"user_query", "x"}


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",
    "user_query.strip()",
    "(lambda: 1)()",
    "[x for x in route_plan]",
    "open('/etc/passwd')",
    "x[y]",
    "len(x, key=1)",
    "",
    "a ==",
])
def test_expressions_outside_the_whitelist_are_rejected(text):
    with pytest.raises(ExpressionError):
        compile_expression(text)


def test_json_valid_decides_and_words_failures_as_json_does():
    """The fast parser accepts less than json; what only json accepts still passes, messages are json's."""
    rows = [{"id": "nan", "completion": "NaN"}, {"id": "big", "completion": "123456789012345678901234567890"},
            {"id": "surrogate", "completion": '{"a": "\\ud800"}'}, {"id": "comma", "completion": "[1,]"}]
    assert [r["id"] for r in gt.json_valid(rows, column_name="completion")] == ["comma"]
    failing = gt.json_valid(rows, column_name="completion", expect="object")
    assert [(r["id"], r["_error"]) for r in failing] == [
        ("nan", "expected a JSON object, got float"), ("big", "expected a JSON object, got int"),
        ("comma", "invalid JSON: Expecting value at char 3")]


def test_a_streamed_run_counts_every_failure_and_keeps_the_first_few():
    run = gt.GENERIC_TESTS["not_null"].run(column_name="id")
    run.keep = 3
    gt.feed(run, [{"id": None, "n": i} for i in range(50)] + [{"id": "x"}], "rows")
    assert run.failures == 50 and [r["n"] for r in run.kept] == [0, 1, 2]


def test_no_overlap_reports_long_values_in_full_and_caps_ids():
    long = "a question much longer than thirty-two characters, kept as a digest while counting"
    splits = {"train": [{"id": f"t{i}", "q": long} for i in range(12)], "test": [{"id": "x", "q": long.upper()}]}
    assert gt.no_overlap(splits, columns=["q"], normalise=True) == [
        {"column": "q", "value": long, "splits": ["test", "train"], "ids": [f"t{i}" for i in range(10)]}]
    assert gt.no_overlap(splits, columns=["q"]) == []


def test_compiled_expressions_evaluate_like_python():
    rows = [{"a": 2, "b": [1, 2], "m": {"k": "v"}, "s": "  x "}, {"a": None, "b": [], "m": {}, "s": ""}]
    cases = {"a > 1 and len(b) == 2": [True, "TypeError"], "len(b) > 1 and a > 1": [True, False], "a or len(b)": [2, 0], "not b": [False, True],
             "1 < a <= 2": [True, "TypeError"], "m['k'] == 'v' if b else strip(s)": [True, ""],
             "-a + 3 * 2": [4, "TypeError"], "[a, 1] == [2, 1]": [True, False], "a in {2, 3}": [True, False]}
    for text, expected in cases.items():
        expr = compile_expression(text)
        for row, want in zip(rows, expected, strict=True):
            try:
                got = expr(row)
            except TypeError:
                got = "TypeError"
            assert got == want, (text, row, got)
