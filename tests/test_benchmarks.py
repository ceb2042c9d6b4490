"""The benchmark asset and its leakage check: materialised per agent on a temp store, rows from held-out
splits (never train) plus the shipped external benchmarks, router categories as the seed defined them, and a
crafted overlap that the check catches."""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.math_evaluation import (
    DEFAULT_MATH_BENCHMARKS,
    MATH_BENCHMARKS_VARIABLE,
    math_benchmark_files,
    math_file_rows,
)
from coursegpt_assets.agents.router import COMPLETION_KEYS
from coursegpt_assets.agents.router_evaluation import router_categories, router_rows
from coursegpt_assets.data.benchmark_rows import BenchmarkError
from coursegpt_assets.defs.data.assets import DATA_ASSETS
from coursegpt_assets.defs.evaluation.benchmark import BENCHMARK_ASSETS, BENCHMARK_CHECKS, benchmark
from coursegpt_assets.defs.tuning.assets import tuning_dataset
from tests.conftest import requires_shared, split_key

HANDWRITTEN_MATH = Path(__file__).parent / "fixtures" / "handwritten_math"
SOURCES = [a.to_source_asset() for a in DATA_ASSETS]


@pytest.fixture(autouse=True)
def default_math_benchmarks(monkeypatch):
    monkeypatch.delenv(MATH_BENCHMARKS_VARIABLE, raising=False)


def prepare(store, agent, pair):
    dg.materialize(DATA_ASSETS, partition_key=agent, resources={"store": store})
    dg.materialize([tuning_dataset, *SOURCES], partition_key=pair, resources={"store": store},
                   selection=[tuning_dataset])


def run_benchmark(store, agent, config=None, raise_on_error=True):
    return dg.materialize(
        [*BENCHMARK_ASSETS, *BENCHMARK_CHECKS, *SOURCES], partition_key=agent, resources={"store": store},
        selection=dg.AssetSelection.assets(benchmark) | dg.AssetSelection.checks(*BENCHMARK_CHECKS),
        run_config={"ops": {"benchmark": {"config": config or {}}}}, raise_on_error=raise_on_error,
    )


def split(store, agent, name):
    return store.read_jsonl(split_key(store, agent, name))


def the_check(result):
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_math_chain_to_benchmark(store):
    prepare(store, "math", "math__qwen3-32b")
    result = run_benchmark(store, "math")
    rows = store.read_jsonl("benchmarks/math/benchmark.jsonl")
    manifest = store.read_json("benchmarks/math/manifest.json")
    validation, train = split(store, "math", "validation"), split(store, "math", "train")
    files = math_benchmark_files()
    assert len(rows) == sum(len(math_file_rows(f)) for f in files) + len(validation)
    assert {r["id"] for r in rows if r["source"] == "validation"} == {r["id"] for r in validation}
    assert {r["source"] for r in rows} == {"validation", "mathbench"}
    assert all(r["origin"] == ("held-out" if r["source"] == "validation" else "external") for r in rows)
    assert not {r["id"] for r in rows} & {r["id"] for r in train}
    assert {r["format"] for r in rows} == {"cloze", "single_choice", "open"}
    for r in rows:
        assert r["question"] and r["answer"] and {"id", "source", "origin", "file", "level", "topic"} <= set(r)
    assert all(r["answer"] in "ABCD" and len(r["options"]) == 4 for r in rows if r["format"] == "single_choice")
    raw = store.read_bytes("benchmarks/math/benchmark.jsonl")
    assert manifest["version"] == hashlib.sha256(raw).hexdigest()
    assert manifest["counts"]["file"]["validation"] == len(validation)
    assert {f["source"] for f in manifest["files"]} == {"mathbench"}
    assert {f["license"] for f in manifest["files"]} == {"apache-2.0"}
    assert [f["sha256"] for f in manifest["files"]] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    evaluation = the_check(result)
    assert evaluation.passed and evaluation.metadata["overlap_rows"].value == 0


def test_worked_solution_rows_keep_the_final_answer(tmp_path):
    """The hand-written "... #### n" fixture rows: the gold is the number after ####, the solution is kept."""
    rows = math_file_rows(HANDWRITTEN_MATH / "handwritten_word_problems.jsonl")
    assert rows and {r["format"] for r in rows} == {"worked_solution"}
    assert all("####" not in r["answer"] and r["answer"].replace(",", "").isdigit() and r["solution"] for r in rows)
    assert {r["source"] for r in rows} == {"handwritten_word_problems"} and {r["origin"] for r in rows} == {"external"}


def test_code_chain_to_benchmark_keeps_runnable_tests(store):
    prepare(store, "code", "code__llama31-8b")
    result = run_benchmark(store, "code")
    rows = [r for r in store.read_jsonl("benchmarks/code/benchmark.jsonl") if r["source"] == "test"]
    test_split = split(store, "code", "test")
    assert rows and [r["id"] for r in rows] == [r["id"] for r in test_split]
    for r in rows:
        assert r["origin"] == "held-out" and r["instruction"] and r["entry_point"]
        namespace: dict = {}
        exec(r["reference"], namespace)  # noqa: S102 - the fixture's own reference solution
        for test in r["testcase"]:
            exec(test, dict(namespace))  # noqa: S102
    assert the_check(result).passed


def test_router_benchmark_is_the_test_split_plus_tagged_hard_rows(store):
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store})
    run_benchmark(store, "router")
    rows = store.read_jsonl("benchmarks/router/benchmark.jsonl")
    test_ids = {r["id"] for r in split(store, "router", "test")}
    validation = {r["id"]: r for r in split(store, "router", "validation")}
    assert {r["id"] for r in rows if r["source"] == "test"} == test_ids
    hard = [r for r in rows if r["source"] == "validation_hard"]
    assert hard and all(r["id"] in validation and r["categories"] for r in hard)
    assert {r["id"] for r in hard} == {i for i, rec in validation.items() if router_categories(rec)}
    agent = get_agent("router")
    for r in rows:
        assert r["prompt"].endswith(f"User query:\n{r['user_query'].strip()}\n")
        assert tuple(json.loads(r["completion"])) == COMPLETION_KEYS
    for r in hard:
        assert r["completion"] == agent.assistant_text(validation[r["id"]])
    shipped = [r for r in rows if r["source"] == "router_benchmark_hard"]
    meta = store.read_json("benchmarks/router/manifest.json")["counts"]
    assert meta["source"] == {"validation_hard": len(hard), "test": len(test_ids), "router_benchmark_hard": len(shipped)}
    assert {r["origin"] for r in hard + [r for r in rows if r["source"] == "test"]} == {"held-out"}


def test_crafted_overlap_fails_the_blocking_check_with_the_ids(store, tmp_path):
    prepare(store, "math", "math__tiny-llama")
    leaked = split(store, "math", "train")[0]
    bench = tmp_path / "leaky__cloze_en.jsonl"
    bench.write_text(
        json.dumps({"question": "  " + leaked["problem"].upper() + "  ", "answer": "1", "topic": "Primary--X--Y"}) + "\n"
        + json.dumps({"question": "A fresh question nobody trained on?", "answer": "2"}) + "\n"
    )
    result = run_benchmark(store, "math", {"math_files": [str(bench)], "include_validation": False},
                           raise_on_error=False)
    evaluation = the_check(result)
    assert not evaluation.passed and evaluation.blocking
    assert evaluation.metadata["overlapping_ids"].value == ["leaky__cloze_en:1"]
    assert store.read_json("benchmarks/math/manifest.json")["train_overlap_ids"] == ["leaky__cloze_en:1"]
    assert not result.success

    result = run_benchmark(store, "math", {"math_files": [str(bench)], "include_validation": False,
                                           "drop_train_overlap": True})
    assert the_check(result).passed
    assert [r["id"] for r in store.read_jsonl("benchmarks/math/benchmark.jsonl")] == ["leaky__cloze_en:2"]
    assert store.read_json("benchmarks/math/manifest.json")["dropped_train_overlap_ids"] == ["leaky__cloze_en:1"]


def test_benchmark_files_come_from_config_then_environment_then_shipped_mathbench(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    one = tmp_path / "a" / "high__cloze_en.jsonl"
    one.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    assert math_benchmark_files() == sorted(DEFAULT_MATH_BENCHMARKS.glob("*.jsonl"))
    monkeypatch.setenv(MATH_BENCHMARKS_VARIABLE, str(tmp_path / "a"))
    assert math_benchmark_files() == [one]
    assert math_benchmark_files([str(tmp_path / "a" / "*.jsonl"), str(one)]) == [one]
    with pytest.raises(BenchmarkError, match="matches no .jsonl file"):
        math_benchmark_files([str(tmp_path / "missing")])


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"answer": "1"}, "line 2: no 'question' text"),
        ({"question": "q", "topic": "t"}, "line 2: benchmark row has no 'answer'"),
        ({"question": "q", "options": ["a", "b"], "answer": "C"}, "line 2: answer 'C' is not a letter A-B"),
    ],
)
def test_bad_benchmark_rows_name_file_and_line(tmp_path, row, reason):
    path = tmp_path / "x__cloze_en.jsonl"
    path.write_text(json.dumps({"question": "ok", "answer": "1"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(BenchmarkError, match=reason):
        math_file_rows(path)


def record(plan, difficulty="intermediate", metrics=None):
    return {"route_plan": plan, "difficulty": difficulty, "metrics": metrics or {"primary": [], "secondary": []}}


@pytest.mark.parametrize(
    ("rec", "expected"),
    [
        (record(["/general-search(query=\"x\", mode=web)", "/math(y)", "/code(z, using Python)"]), []),
        (record(["/math(a)", "/general-search(b)", "/code(c)", "/math(d)"], "advanced"),
         ["math_first", "four_step", "advanced", "non_canonical_route", "math_multi_pass", "math_backstop"]),
        (record(["/general-search(a)", "/math(b)", "/code(c)"],
                metrics={"primary": [], "secondary": [], "primary_guidance": "g", "secondary_computation": "c"}),
         ["has_guidance", "has_computation"]),
        (record(["/math(a)", "/code(b)"]), ["math_first", "non_canonical_route"]),
    ],
)
def test_router_categories(rec, expected):
    assert router_categories(rec) == expected


def test_hard_rows_can_be_capped_per_category_rarest_first():
    agent = get_agent("router")
    base = {"user_query": "q", "route_rationale": "r", "expected_artifacts": [], "thinking_outline": [],
            "handoff_plan": "h", "todo_list": [], "tags": [], "acceptance_criteria": []}
    common = [dict(base, **record(["/math(a)", "/code(b)"]), id=f"v{i}") for i in range(6)]
    rare = dict(base, **record(["/general-search(a)", "/math(b)", "/code(c)"], "advanced"), id="rare")
    rows = router_rows(agent, [], common + [rare], seed=42, hard_per_category=2)
    assert "rare" in {r["id"] for r in rows} and len(rows) == 3
    assert router_rows(agent, [], common + [rare], seed=42, hard_per_category=2) == rows


@requires_shared
def test_every_shared_math_file_is_a_valid_benchmark(shared_dir):
    files = math_benchmark_files([str(shared_dir / "data" / "math")])
    assert len(files) == 9
    for path in files:
        rows = math_file_rows(path)
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert len(rows) == len(lines), path.name
        formats = {r["format"] for r in rows}
        assert formats == ({"single_choice"} if "single_choice" in path.name else {"cloze"}), path.name
        level = path.name.split("__")[0].split("_")[0]
        expected_level = "primary" if level == "arithmetic" else level
        assert {r["level"] for r in rows} == {expected_level}, path.name


@requires_shared
def test_shared_math_files_as_the_benchmark_on_the_fixture_splits(store, shared_dir):
    prepare(store, "math", "math__tiny-llama")
    result = run_benchmark(store, "math", {"math_files": [str(shared_dir / "data" / "math")]})
    manifest = store.read_json("benchmarks/math/manifest.json")
    assert len(manifest["files"]) == 9 and the_check(result).passed
    assert manifest["rows"] == sum(f["rows"] for f in manifest["files"]) + len(split(store, "math", "validation"))


@requires_shared
def test_router_categories_reproduce_the_seed_hard_benchmark(shared_dir):
    """The 322 rows of the seed's hard set: our categories (seed names for the metrics ones) match its tags."""
    rename = {"has_guidance": "metrics_guidance", "has_computation": "metrics_computation"}
    rows = [json.loads(line) for line in (shared_dir / "data" / "router" / "router_benchmark_hard.jsonl").open()]
    assert len(rows) == 322
    for row in rows:
        ours = {rename.get(c, c) for c in router_categories(json.loads(row["completion"]))} - {"advanced"}
        assert ours == set(row["categories"]), row["index"]
