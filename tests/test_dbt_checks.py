"""schema.yml → partitioned asset checks: loading errors name file and line; checks pass on the real router
data path, fail on crafted bad partitions, and a blocking failure stops the downstream asset in the run."""

import shutil
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from coursegpt_assets.agents.router import validate as validate_router
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.data.sources import iter_jsonl_file
from coursegpt_assets.defs.data.assets import DATA_ASSETS, clean_examples, dataset_splits
from coursegpt_assets.defs.partitions import AGENT_PARTITIONS, PAIR_PARTITIONS
from coursegpt_assets.defs.tuning.assets import TUNING_DATA_ASSETS
from dbt_style_checks import validate
from dbt_style_checks.catalog import SOURCES
from dbt_style_checks.loader import MAX_FAILING_ROWS, PartitionData, build_dbt_checks, run_test
from dbt_style_checks.spec import SchemaError, load_schema
from resources.local_store import LocalStore
from resources.storage import ArtifactStore
from tests.conftest import split_key

PAIR = "router__tiny-llama"

TINY_CONTEXT = default_plan().base_models["tiny-llama"].max_length  # estimated tokens (bytes / 4)


# -- the shipped schema ---------------------------------------------------------------------------------
def test_shipped_schema_loads_and_gates_everything_upstream_of_tuning():
    tests = load_schema()
    assert {t.asset for t in tests} == {"clean_examples", "dataset_splits", "tuning_dataset", "benchmark"}
    for t in tests:
        if t.asset != "benchmark" and t.severity == "error":
            assert t.blocking, f"{t.location}: {t.name} guards data a paid tuning job reads; make it blocking"
    kinds = {t.test.name for t in tests}
    assert kinds >= {"unique", "not_null", "accepted_values", "relationships", "not_in", "split_ratio",
                     "no_overlap", "json_valid", "max_tokens", "expression_is_true", "row_count_between"}


def test_checks_are_partitioned_like_their_asset():
    checks = build_dbt_checks()
    assert {c.node_def.name for c in checks} == {f"{a}_data_tests" for a in SOURCES}
    for c in checks:
        for spec in c.check_specs:
            expected = PAIR_PARTITIONS if spec.asset_key.path[-1] == "tuning_dataset" else AGENT_PARTITIONS
            assert spec.partitions_def == expected
    assert {c.node_def.name for c in build_dbt_checks(only=["clean_examples"])} == {"clean_examples_data_tests"}


def test_check_descriptions_state_the_assertion_and_render_arguments_cleanly():
    descriptions = {(spec.asset_key.path[-1], spec.name): spec.description
                    for checks in build_dbt_checks() for spec in checks.check_specs}
    assert not [d for d in descriptions.values() if "None" in d]
    # column-less tests list their arguments with no stray prefix
    assert "[split_ratio(ratios={{ plan.split_ratios }}, tolerance=0.01), severity error" in \
        descriptions["dataset_splits", "split_ratio"]
    assert '[no_overlap(columns=["id"]), severity error' in descriptions["dataset_splits", "no_overlap_id"]
    # without a schema.yml description, the generic test's assertion, naming the tested column
    assert descriptions["clean_examples", "not_null_id"].startswith("Every row has a non-null `id`. [not_null(id),")
    assert descriptions["clean_examples", "user_query_not_blank"].startswith("Every row satisfies `expression`.")


def test_validate_module_exit_codes(tmp_path, capsys):
    assert validate.main([]) == 0
    assert "tests" in capsys.readouterr().out
    bad = tmp_path / "schema.yml"
    bad.write_text("models:\n  - name: clean_examples\n    data_tests: [bogus_test]\n")
    assert validate.main([str(bad)]) == 1
    assert f"{bad}:3: unknown test 'bogus_test'" in capsys.readouterr().err


# -- malformed entries fail loading with file, line and the offending name -------------------------------
def _load(tmp_path: Path, body: str):
    path = tmp_path / "schema.yml"
    path.write_text(textwrap.dedent(body))
    with pytest.raises(SchemaError) as err:
        load_schema(path)
    return str(err.value), path


@pytest.mark.parametrize("body, line, needle", [
    ("""
     models:
       - name: clean_examples
         columns:
           - name: id
             data_tests: [uniqe]
     """, 6, "unknown test 'uniqe'"),
    ("""
     models:
       - name: clean_examples
         columns:
           - name: difficulty_level
             config: {partitions: [router]}
             data_tests: [not_null]
     """, 5, "unknown column 'difficulty_level' in clean_examples for partition 'router'"),
    ("""
     models:
       - name: clean_exampels
         data_tests: [row_count_between]
     """, 3, "unknown asset 'clean_exampels'"),
    ("""
     models:
       - name: clean_examples
         columns:
           - name: id
             data_tests:
               - unique:
                   config:
                     severity: fatal
     """, 9, "bad severity 'fatal'"),
    ("""
     models:
       - name: clean_examples
         data_tests:
           - row_count_between: {min_value: 1, config: {severity: warn, blocking: true}}
     """, 5, "blocking needs severity error"),
    ("""
     models:
       - name: clean_examples
         data_tests:
           - expression_is_true:
               arguments: {expression: "len(user_qery) > 0"}
               config: {partitions: [router]}
     """, 5, "unknown column 'user_qery'"),
    ("""
     models:
       - name: clean_examples
         data_tests:
           - expression_is_true: {expression: "user_query.upper == 1"}
     """, 5, "Attribute is not allowed"),
    ("""
     models:
       - name: dataset_splits
         data_tests:
           - split_ratio: {ratios: "{{ plan.ratios }}"}
     """, 5, "unknown plan value 'ratios'"),
    ("""
     models:
       - name: clean_examples
         data_tests:
           - split_ratio: {ratios: {train: 1.0}}
     """, 5, "split_ratio needs a split asset"),
    ("""
     models:
       - name: benchmark
         columns:
           - name: id
             data_tests:
               - not_in: {to: "ref('tuning_dataset')", field: id}
     """, 7, "cannot refer to tuning_dataset"),
    ("""
     models:
       - name: benchmark
         columns:
           - name: id
             data_tests:
               - not_in: {to: "ref('dataset_splits')", field: idd}
     """, 7, "unknown column 'idd' in dataset_splits"),
    ("""
     models:
       - name: clean_examples
         columns:
           - name: id
             data_tests:
               - unique: {colour: red}
     """, 7, "unknown argument 'colour'"),
    ("""
     models:
       - name: clean_examples
         columns:
           - name: id
             data_tests:
               - unique
               - unique: {config: {severity: warn}}
     """, 8, "check name 'unique_id' on clean_examples is already used"),
    ("""
     models:
       - name: clean_examples
         columns:
           - name: id
             data_tests:
               - unique: {config: {sevrity: warn}}
     """, 7, "unknown config key 'sevrity'"),
    ("""
     models:
       - name: clean_examples
         data_tests:
           - row_count_between: {min_value: 1, config: {partitions: [physics]}}
     """, 5, "unknown partitions ['physics']"),
    ("""
     models:
       - name: clean_examples
         data_tests:
           - row_count_between: {min_value: 1, config: {error_if: "lots"}}
     """, 5, "error_if 'lots'"),
    ("""
     models:
       - name: clean_examples
         data_tests: [row_count_between
     """, 5, "invalid YAML"),
])
def test_malformed_entries_name_file_line_and_problem(tmp_path, body, line, needle):
    message, path = _load(tmp_path, body)
    assert f"{path}:{line}:" in message, message
    assert needle in message, message


def test_every_problem_is_reported_at_once(tmp_path):
    message, path = _load(tmp_path, """
        models:
          - name: clean_examples
            columns:
              - name: id
                data_tests: [uniqe, not_nul]
          - name: nope
        """)
    assert "unknown test 'uniqe'" in message and "unknown test 'not_nul'" in message
    assert f"{path}:7: unknown asset 'nope'" in message


# -- checks on real data ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    """The router data path materialised for real from the shipped fixture, plus a benchmark of the test split."""
    root = tmp_path_factory.mktemp("good_store")
    store = LocalStore(root=str(root))
    with dg.instance_for_test() as instance:
        dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store}, instance=instance)
        dg.materialize([*DATA_ASSETS, *TUNING_DATA_ASSETS], selection=["tuning_dataset"], partition_key=PAIR,
                       resources={"store": store}, instance=instance)
    store.write_jsonl(layout.benchmark_records("router"), store.read_jsonl(split_key(store, "router", "test")))
    return root


def _copy(good_store: Path, tmp_path: Path) -> ArtifactStore:
    shutil.copytree(good_store, tmp_path / "store")
    return LocalStore(root=str(tmp_path / "store"))


def _results(store: ArtifactStore, asset: str, partition: str) -> dict[str, dg.AssetCheckResult]:
    data = PartitionData(store, partition)
    return {t.name: run_test(t, data, partition) for t in load_schema() if t.asset == asset}


@pytest.mark.parametrize("asset, partition", [
    ("clean_examples", "router"), ("dataset_splits", "router"), ("tuning_dataset", PAIR), ("benchmark", "router"),
])
def test_every_test_passes_on_the_real_router_path(good_store, asset, partition):
    results = _results(LocalStore(root=str(good_store)), asset, partition)
    failed = {name: r.description for name, r in results.items() if not r.passed}
    # the smoke trainer's max_length truncates long router rows: reported as a warning, never blocking
    assert set(failed) <= {"max_tokens_training_length"}, failed
    assert all(r.metadata["failures"].value == 0 for n, r in results.items() if n not in failed)


def _rewrite(store: ArtifactStore, key, mutate):
    """Rewrite the rows at `key` (a key, or a split name of router's published split set)."""
    key = split_key(store, "router", key) if key in layout.SPLITS else key
    rows = store.read_jsonl(key)
    store.write_jsonl(key, mutate(rows))


BAD_PARTITIONS = [
    ("clean_examples", "router", layout.clean_records("router"),
     lambda rows: [*rows, {**rows[0]}], "unique_id", 1),
    ("clean_examples", "router", layout.clean_records("router"),
     lambda rows: [{**r, "id": None} if i < 2 else r for i, r in enumerate(rows)], "not_null_id", 2),
    ("clean_examples", "router", layout.clean_records("router"),
     lambda rows: [{**r, "difficulty": "expert"} if i % 2 else r for i, r in enumerate(rows)],
     "accepted_values_difficulty", 38),
    ("clean_examples", "router", layout.clean_records("router"),
     lambda rows: [{**r, "user_query": "   "} if i == 3 else r for i, r in enumerate(rows)], "user_query_not_blank", 1),
    ("clean_examples", "router", layout.clean_records("router"), lambda rows: rows[:4], "row_count_between", 1),
    ("dataset_splits", "router", "validation",
     lambda rows: rows[:2], "split_ratio", 2),
    ("dataset_splits", "router", "test",
     lambda rows: [*rows, {**rows[0], "id": "x-copy"}], "no_overlap_normalised_user_query", 0),  # same split
    ("dataset_splits", "router", "test",
     lambda rows: [*rows, {**rows[0], "id": "x-copy"}], "unique_id", 0),
    ("tuning_dataset", PAIR, layout.tuning_records(PAIR, "train"),
     lambda rows: [{**r, "completion": r["completion"][:-1]} if i < 3 else r for i, r in enumerate(rows)],
     "json_valid_completion", 3),
    ("tuning_dataset", PAIR, layout.tuning_records(PAIR, "train"),
     lambda rows: [{**rows[0], "id": "long", "text_completion": "x" * 4 * (TINY_CONTEXT + 100)}, *rows[1:]],
     "max_tokens_model_context", 1),
    ("tuning_dataset", PAIR, layout.tuning_records(PAIR, "validation"),
     lambda rows: [*rows, {**rows[0], "id": "new-id"}], "relationships_id", 1),
    ("benchmark", "router", layout.benchmark_records("router"),
     lambda rows: [*rows, {"id": "leaked", "user_query": "x"}], "not_null_id", 0),
]


@pytest.mark.parametrize("asset, partition, key, mutate, check, failures", BAD_PARTITIONS,
                         ids=[f"{b[0]}.{b[4]}" for b in BAD_PARTITIONS])
def test_crafted_bad_partition_fails_its_check(good_store, tmp_path, asset, partition, key, mutate, check, failures):
    store = _copy(good_store, tmp_path)
    _rewrite(store, key, mutate)
    result = _results(store, asset, partition)[check]
    assert result.metadata["failures"].value == failures, result.description
    assert result.passed is (failures == 0)
    if failures:
        assert len(result.metadata["failing_rows"].value) == min(failures, MAX_FAILING_ROWS)


def test_benchmark_leaks_from_train_fail_by_id_and_by_normalised_question(good_store, tmp_path):
    store = _copy(good_store, tmp_path)
    train = store.read_jsonl(split_key(store, "router", "train"))
    _rewrite(store, layout.benchmark_records("router"), lambda rows: [
        *rows, {**train[0]}, {**train[1], "id": "renamed", "user_query": train[1]["user_query"].upper() + "  "},
    ])
    results = _results(store, "benchmark", "router")
    assert results["ids_not_in_train"].metadata["failures"].value == 1
    leaked = results["queries_not_in_train"]
    assert not leaked.passed and leaked.metadata["failures"].value == 2
    assert {r["id"] for r in leaked.metadata["failing_rows"].value} == {train[0]["id"], "renamed"}


def test_a_prompt_in_two_splits_fails_no_overlap_once_normalised(good_store, tmp_path):
    store = _copy(good_store, tmp_path)
    train = store.read_jsonl(split_key(store, "router", "train"))
    leaked = {**train[5], "id": "leak", "user_query": "  " + train[5]["user_query"].upper()}
    _rewrite(store, "test", lambda rows: [*rows, leaked])
    results = _results(store, "dataset_splits", "router")
    overlap = results["no_overlap_normalised_user_query"]
    assert not overlap.passed and overlap.metadata["failures"].value == 1
    assert overlap.metadata["failing_rows"].value[0]["splits"] == ["test", "train"]
    assert results["no_overlap_id"].passed
    _rewrite(store, "validation", lambda rows: [*rows, train[0]])
    assert _results(store, "dataset_splits", "router")["no_overlap_id"].metadata["failures"].value == 1


def test_failing_rows_are_capped_and_trimmed(good_store, tmp_path):
    store = _copy(good_store, tmp_path)
    _rewrite(store, layout.clean_records("router"), lambda rows: [{**r, "difficulty": "expert"} for r in rows])
    result = _results(store, "clean_examples", "router")["accepted_values_difficulty"]
    rows = result.metadata["failing_rows"].value
    assert result.metadata["failures"].value == result.metadata["rows_checked"].value > MAX_FAILING_ROWS
    assert len(rows) == MAX_FAILING_ROWS and set(rows[0]) == {"id", "difficulty"}


def test_a_partition_is_checked_on_its_own_data_only(good_store, tmp_path):
    store = _copy(good_store, tmp_path)
    store.write_jsonl(layout.clean_records("math"), [{"id": f"m{i % 5}", "problem": "1+1"} for i in range(12)])
    math = _results(store, "clean_examples", "math")
    assert not math["unique_id"].passed and math["unique_id"].metadata["failures"].value == 5
    assert math["accepted_values_difficulty"].passed
    assert math["accepted_values_difficulty"].metadata["applicable"].value is False
    assert _results(store, "clean_examples", "router")["unique_id"].passed


def test_schema_out_of_date_with_the_data_fails_loudly(good_store, tmp_path):
    store = _copy(good_store, tmp_path)
    _rewrite(store, layout.clean_records("router"), lambda rows: [
        {k: v for k, v in r.items() if k != "difficulty"} for r in rows])
    result = _results(store, "clean_examples", "router")["accepted_values_difficulty"]
    assert not result.passed and "absent from every row" in result.description


# -- in a Dagster run -------------------------------------------------------------------------------------
def test_blocking_failure_stops_the_downstream_asset_in_the_same_run(tmp_path):
    store = LocalStore(root=str(tmp_path / "store"))
    valid = [r.record for r in iter_jsonl_file(FIXTURES_DIR / "router.jsonl") if r.record and not validate_router(r.record)]
    store.write_jsonl(layout.raw_records("router"), [{"line": i + 1, "record": r} for i, r in enumerate(valid[:6])])
    store.write_json(layout.raw_manifest("router"), {"source": "crafted", "rows": 6})
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*DATA_ASSETS, *build_dbt_checks(only=["clean_examples", "dataset_splits"])],
            selection=dg.AssetSelection.assets(clean_examples, dataset_splits),
            partition_key="router", resources={"store": store}, instance=instance, raise_on_error=False,
        )
    assert not result.success
    materialised = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialised == {clean_examples.key}
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    row_count = evaluations["row_count_between"]
    assert not row_count.passed and row_count.partition == "router"
    assert row_count.metadata["failures"].value == 1
    assert row_count.metadata["failing_rows"].value == [{"row_count": 6, "min_value": 10, "max_value": None}]
    assert not store.exists(layout.splits_manifest("router"))


def test_a_passing_run_materialises_downstream_with_check_results(good_store, tmp_path):
    store = _copy(good_store, tmp_path)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*DATA_ASSETS, *build_dbt_checks(only=["clean_examples", "dataset_splits"])],
            selection=dg.AssetSelection.assets(clean_examples, dataset_splits),
            partition_key="router", resources={"store": store}, instance=instance,
        )
        evaluations = result.get_asset_check_evaluations()
        assert evaluations and all(e.passed and e.partition == "router" for e in evaluations)
        assert {e.asset_key for e in result.get_asset_materialization_events()} == {clean_examples.key,
                                                                                    dataset_splits.key}
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dataset_splits.key, "split_ratio")])
        assert record
