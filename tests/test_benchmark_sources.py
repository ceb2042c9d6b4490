"""The shipped benchmarks and their sources: counts from the files, honest names, licences recorded, the
leakage check over every source, the smoke subset per source, and what report.md and the card say of them."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import dagster as dg
from huggingface_hub import ModelCard

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.math_evaluation import DEFAULT_MATH_BENCHMARKS, math_file_rows
from coursegpt_assets.agents.router_evaluation import HARD_BENCHMARK, hard_benchmark_rows
from coursegpt_assets.cards.builder import build_card
from coursegpt_assets.cards.validation import validate_card
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.data.benchmark_rows import SHIPPED_BENCHMARKS, select_per_source, source_info, sources
from coursegpt_assets.defs.data.assets import DATA_ASSETS
from coursegpt_assets.defs.evaluation.benchmark import leakage_result
from coursegpt_assets.scoring import humaneval
from coursegpt_assets.scoring.report import sources_lines, with_sources
from resources.openai_compatible import OpenAICompatibleServer
from tests.conftest import split_key
from tests.fakes.evaluation_store import PAIR, router_benchmark, write_benchmark
from tests.fakes.openai_server import FakeOpenAIServer
from tests.test_benchmarks import run_benchmark, split
from tests.test_evaluation import evaluate, gold_answers, newest_report
from tests.test_model_card import make_inputs, section

PACKAGE = Path(__file__).resolve().parents[1] / "coursegpt_assets"


def lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def test_shipped_benchmarks_load_with_the_counts_of_their_files():
    rows = hard_benchmark_rows(get_agent("router"))
    assert len(rows) == lines(HARD_BENCHMARK) and len({r["id"] for r in rows}) == len(rows)
    assert {r["source"] for r in rows} == {"router_benchmark_hard"} and {r["origin"] for r in rows} == {"external"}
    assert all(r["categories"] and r["user_query"].strip() for r in rows)
    files = sorted(DEFAULT_MATH_BENCHMARKS.glob("*.jsonl"))
    assert files and all(len(math_file_rows(f)) == lines(f) for f in files)
    assert {r["source"] for f in files for r in math_file_rows(f)} == {"mathbench"}


def test_every_shipped_benchmark_records_its_licence_and_provenance():
    folders = {p.parent for p in SHIPPED_BENCHMARKS.rglob("*.jsonl")}
    assert folders == {HARD_BENCHMARK.parent, DEFAULT_MATH_BENCHMARKS}
    for folder in folders:
        info = source_info(folder)
        assert info and info["origin"] == "external" and info["license"] and info["url"].startswith("https://")
    assert source_info(DEFAULT_MATH_BENCHMARKS)["license"] == "apache-2.0"
    assert "Apache License" in (DEFAULT_MATH_BENCHMARKS / "LICENSE").read_text()  # Apache-2.0 §4(a)
    assert humaneval.problems_file_entry()["license"] == "mit"


def test_no_shipped_file_or_row_is_named_after_a_benchmark_it_is_not():
    named_gsm8k = [p for p in PACKAGE.rglob("*") if "gsm8k" in p.name.lower()]
    assert named_gsm8k == []
    rows = [r for f in sorted(DEFAULT_MATH_BENCHMARKS.glob("*.jsonl")) for r in math_file_rows(f)]
    assert "gsm8k" not in {r["format"] for r in rows}


def plant_in_train(store, agent: str, record: dict) -> None:
    """Append a record to the stored train split (after the benchmark was built from the real one)."""
    train = split(store, agent, "train")
    key = split_key(store, agent, "train")
    store.write_jsonl(key, [*train, {**train[0], **record, "id": "planted"}])
    manifest = store.read_json(layout.splits_manifest(agent))  # the published set now holds it, hashes and all
    manifest["sha256"]["train"] = hashlib.sha256(store.read_bytes(key)).hexdigest()
    store.write_json(layout.splits_manifest(agent), manifest)


def test_leakage_check_covers_the_external_sources(store):
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store})
    run_benchmark(store, "router")
    assert leakage_result("router", store).passed
    hard = next(r for r in store.read_jsonl(layout.benchmark_records("router")) if r["source"] == "router_benchmark_hard")
    plant_in_train(store, "router", {"user_query": "  " + hard["user_query"].upper()})
    result = leakage_result("router", store)
    assert not result.passed and result.metadata["overlapping_ids"].value == [hard["id"]]
    assert result.metadata["overlap_rows/router_benchmark_hard"].value == 1
    assert result.metadata["overlap_rows/test"].value == 0 and "router_benchmark_hard 1" in result.description

    dg.materialize(DATA_ASSETS, partition_key="code", resources={"store": store})
    run_benchmark(store, "code")
    problem = humaneval.read_problems()[0]
    plant_in_train(store, "code", {"instruction": problem["prompt"]})
    result = leakage_result("code", store)
    assert not result.passed and result.metadata["overlapping_ids"].value == [problem["task_id"]]
    assert result.metadata["overlap_rows/humaneval"].value == 1


def two_source_benchmark() -> list[dict]:
    """The fake store's held-out rows plus the first rows of the shipped hard benchmark."""
    size = default_plan().smoke.benchmark_subset_rows
    return router_benchmark() + hard_benchmark_rows(get_agent("router"))[: size + 4]


def test_smoke_pair_answers_a_seeded_subset_of_each_source(evaluated_store):
    store, _ = evaluated_store
    rows = two_source_benchmark()
    write_benchmark(store, rows)
    size = default_plan().smoke.benchmark_subset_rows
    with FakeOpenAIServer([PAIR], gold_answers(rows)) as server:
        assert evaluate(store, OpenAICompatibleServer(base_url=server.base_url, api_key="sk-test")).success
        answered = len([r for r in server.requests if r["body"].get("model") == PAIR and not r["body"].get("echo")])
    report = newest_report(store)
    counts = {e["source"]: (e["origin"], e["rows"], e["evaluated"]) for e in report["sources"]}
    held_out = len(router_benchmark())
    assert counts == {"test": ("held-out", held_out, min(size, held_out)),
                      "router_benchmark_hard": ("external", size + 4, size)}
    assert answered == report["inference"]["samples"] == min(size, held_out) + size
    chosen = select_per_source(rows, size, default_plan().hyperparameters.seed)
    predictions = store.read_jsonl(f"{layout.report_dir(PAIR, report['report_version'])}/predictions.jsonl")
    assert [p["id"] for p in predictions] == [r["id"] for r in chosen]
    markdown = store.read_text(f"{layout.report_dir(PAIR, report['report_version'])}/report.md")
    assert f"| router_benchmark_hard | external | subset of {size} of {size + 4} rows |" in markdown


def test_card_lists_each_source_held_out_or_external_with_the_subset():
    rows = two_source_benchmark()
    size = default_plan().smoke.benchmark_subset_rows
    chosen = select_per_source(rows, size, seed=1)
    inputs = make_inputs("router__tiny-llama")
    report = with_sources(inputs.report, sources(rows, chosen),
                          [{"source": "router_benchmark_hard", "license": "mit", "url": "https://example.org"}])
    markdown = "\n".join(["# Evaluation report", "", *sources_lines(report), "## Headline", "", "x"])
    text = build_card(dataclasses.replace(inputs, report=report, report_markdown=markdown))
    evaluation = section(text, "Evaluation")
    held_out, answered = len(router_benchmark()), min(size, len(router_benchmark()))
    phrase = f"all {held_out} rows" if answered == held_out else f"subset of {answered} of {held_out} rows"
    assert f"| test | held-out data (this agent's own split) | {phrase} | — |" in evaluation
    assert f"| router_benchmark_hard | external benchmark | subset of {size} of {size + 4} rows | mit |" in evaluation
    assert "held-out test split" not in text and evaluation.count("router_benchmark_hard |") == 1
    [result] = ModelCard(text).data.eval_results[:1]
    assert result.dataset_split == "test+router_benchmark_hard"
    assert validate_card(text) == []


def test_report_markdown_says_all_rows_when_nothing_was_left_out():
    rows = router_benchmark()
    report = with_sources({}, sources(rows, rows))
    assert sources_lines(report)[-2] == f"| test | held-out | all {len(rows)} rows |"
    assert sources_lines({}) == []  # a report written before sources were listed
