"""Math agent: validation, canonical records, and the seeded bounded-memory subset."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import tuning_row
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.data.records import RawRow
from coursegpt_assets.data.subset import bottom_k, row_batches, select_subset, source_batches

AGENT = get_agent("math")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def row(problem="What is $2+3$?", solution="Add: $2+3=5$.\n\nSo the answer is $\\boxed{5}$.", **extra):
    return {"problem": problem, "generated_solution": solution, **extra}


# -- validation --------------------------------------------------------------------------------------
def test_a_well_formed_row_is_valid():
    assert AGENT.validate(row()) == []
    assert AGENT.validate({"question": "Compute 6*7.", "generated_solution": "6*7 = 42", "answer": 42}) == []


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (row(problem="   "), "problem is missing or empty"),
        ({"generated_solution": "x = 1"}, "problem is missing or empty"),
        (row(problem=17), "problem: expected a string, got int"),
        (row(solution=""), "solution is missing or empty"),
        (row(solution=None), "solution is missing or empty"),
        (row(problem="x" * 4001), "problem has 4,001 characters (limit 4,000)"),
        (row(solution="step " * 5000 + "\\boxed{1}"), "solution has 25,009 characters (limit 24,000)"),
        (row(solution="We argue by symmetry and conclude the claim holds."), "solution states no final answer"),
    ],
)
def test_invalid_rows_say_why(record, reason):
    problems = AGENT.validate(record)
    assert problems and any(reason in p for p in problems), problems


@pytest.mark.parametrize(
    ("solution", "answer"),
    [
        ("so $x = \\boxed{\\frac{1}{2}}$ and we stop", "\\frac{1}{2}"),
        ("Adding gives 12 apples.\nThe final answer is 12.", "12"),
        ("First 3 + 4 = 7, then 7 * 6 = 42", "42"),
    ],
)
def test_the_answer_is_extracted_when_the_source_has_none(solution, answer):
    clean = AGENT.clean_record(row(solution=solution))
    assert clean["answer"] == answer and clean["answer_source"] == "extracted"


def test_the_source_answer_wins_and_the_clean_shape_is_canonical():
    clean = AGENT.clean_record({"question": "  Compute 6*7. ", "generated_solution": "6*7 = \\boxed{42}\n",
                                "expected_answer": " 42 ", "problem_source": "x"})
    assert clean == {"problem": "Compute 6*7.", "solution": "6*7 = \\boxed{42}", "answer": "42",
                     "answer_source": "expected"}


def test_ids_are_the_source_id_or_a_stable_hash_of_the_normalised_problem():
    assert AGENT.record_id(row(id="mx-17"), 3) == "mx-17"
    a = AGENT.record_id(row(problem="What is  2+3?"), 1)
    assert a == AGENT.record_id(row(problem="what is 2+3?"), 99) and a.startswith("math_")
    assert a != AGENT.record_id(row(problem="What is 2+4?"), 1)
    assert AGENT.dedup_key(row(problem=" What\tIS 2+3? ")) == "what is 2+3?"


def test_tuning_rows_use_the_tutor_prompt_and_the_family_format():
    clean = {**AGENT.clean_record(row()), "id": "m1"}
    tuned = tuning_row(AGENT, clean, "gemma")
    assert tuned["text_prompt"].startswith("<bos><start_of_turn>user\nYou are an expert mathematics tutor.")
    assert tuned["text_completion"] == clean["solution"] + "<end_of_turn>\n"
    assert tuned["prompt"].endswith("Problem:\nWhat is $2+3$?\n") and tuned["completion"] == clean["solution"]


def test_the_fixture_has_few_invalid_rows_and_every_kind_of_problem():
    rows = list(AGENT.load_raw(str(FIXTURES_DIR / "math.jsonl"), seed=42, subset_size=10_000))
    lines = (FIXTURES_DIR / "math.jsonl").read_text().splitlines()
    invalid = [r for r in rows if r.record is None or AGENT.validate(r.record)]
    assert 0 < len(invalid) <= 0.05 * len(rows)
    assert len(rows) == len(lines) - 1  # one row repeats a problem (other case and spacing) and counts once
    for r in rows:  # the line number points at the source line
        if r.record is not None:
            assert json.loads(lines[r.line - 1]) == r.record


# -- the seeded subset -------------------------------------------------------------------------------
def synthetic_rows(n, seed=0):
    rng = random.Random(seed)
    return [row(problem=f"Problem {i}: find {rng.randint(1, 10**6)} + {i}.", solution=f"It is \\boxed{{{i}}}.")
            for i in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def write_parquet(path, rows, row_group_size=500):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return str(path)


def problems(selected):
    return [r.record["problem"] for r in selected]


def test_same_seed_same_rows_other_seed_other_rows(tmp_path):
    source = write_jsonl(tmp_path / "m.jsonl", synthetic_rows(3000))
    first = list(AGENT.load_raw(source, seed=42, subset_size=200))
    again = list(AGENT.load_raw(source, seed=42, subset_size=200))
    other = list(AGENT.load_raw(source, seed=43, subset_size=200))
    assert len(first) == 200 and first == again
    assert len(set(problems(first)) & set(problems(other))) < 60  # ~200·200/3000 ≈ 13 expected by chance
    assert [r.line for r in first] == sorted(r.line for r in first)


def test_the_subset_depends_on_content_not_on_format_order_or_batching(tmp_path):
    rows = synthetic_rows(2500)
    from_jsonl = select_subset(write_jsonl(tmp_path / "a.jsonl", rows), k=150, seed=7, key_fields=("problem",))
    from_parquet = select_subset(write_parquet(tmp_path / "a.parquet", rows), k=150, seed=7,
                                 key_fields=("problem",), batch_rows=333, max_share=1.0)  # every row group
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    (tmp_path / "parts").mkdir()
    write_parquet(tmp_path / "parts" / "0.parquet", shuffled[:1000])
    write_jsonl(tmp_path / "parts" / "1.jsonl", shuffled[1000:])
    from_shards = select_subset(str(tmp_path / "parts"), k=150, seed=7, key_fields=("problem",), batch_rows=64)
    assert problems(from_jsonl.rows) == problems(from_parquet.rows)
    assert set(problems(from_shards.rows)) == set(problems(from_jsonl.rows))
    assert [r.line for r in from_jsonl.rows] == [r.line for r in from_parquet.rows]


def test_repeated_problems_count_once_and_the_first_listing_is_kept(tmp_path):
    rows = synthetic_rows(50)
    rows.insert(30, row(problem=rows[3]["problem"].upper(), solution="another solution, \\boxed{3}"))
    selected = select_subset(write_jsonl(tmp_path / "d.jsonl", rows), k=1000, seed=1, key_fields=("problem",)).rows
    assert len(selected) == 50 and all("another" not in r.record["generated_solution"] for r in selected)


def test_question_is_the_key_when_problem_is_absent_and_unreadable_rows_stay_visible(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Q1?", "generated_solution": "1"}\n{not json\n{"question": "Q2?"}\n')
    selected = list(AGENT.load_raw(str(path), seed=3, subset_size=10))
    assert [r.line for r in selected] == [1, 2, 3] and selected[1].error and "line 2" in selected[1].error


def test_selection_is_uniform_across_seeds():
    """Chi-square of per-row inclusion counts over 300 fixed seeds: a biased sampler (e.g. the seed's
    head of the stream) lands orders of magnitude above the bound; a uniform one near 180."""
    rows = synthetic_rows(200)
    counts = dict.fromkeys(range(1, 201), 0)
    batches = list(row_batches((RawRow(i, r) for i, r in enumerate(rows, start=1)), ("problem",), 64))
    for seed in range(300):
        for r in bottom_k(batches, 20, seed).rows:
            counts[r.line] += 1
    expected = 300 * 20 / 200
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 300, chi2
    assert min(counts.values()) > 0


def test_only_candidates_become_python_objects(tmp_path):
    source = write_parquet(tmp_path / "big.parquet", synthetic_rows(60_000), row_group_size=5_000)
    selection = bottom_k(source_batches(source, ("problem",), 5_000), 100, seed=11)
    assert len(selection.rows) == 100 and selection.scanned == 60_000
    # the first batch fills the heap; afterwards only ~k·ln(n/k) rows beat the bound
    assert selection.materialised < 5_000 + 100 * 12


GENERATE = """
import sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
ids = pa.array([str(i) for i in range(int(sys.argv[2]))])
problem = pc.binary_join_element_wise("Problem ", ids, ": how many steps?", "")
solution = pc.binary_join_element_wise(pc.binary_repeat("step ", 200), ids, "")
pq.write_table(pa.table({"problem": problem, "generated_solution": solution}), sys.argv[1], row_group_size=5_000)
print(round(pc.sum(pc.utf8_length(solution)).as_py() / 2**20))
"""
SELECT = """
import resource, sys
sys.path.insert(0, sys.argv[2])
import pandas, pyarrow.parquet
from coursegpt_assets.data.subset import select_subset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = select_subset(sys.argv[1], k=500, seed=1, key_fields=("problem",), batch_rows=5_000).rows
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(rows), round((after - before) / 1024))
"""


def _select_growth(tmp_path, n):
    path = str(tmp_path / f"m{n}.parquet")
    data_mb = int(subprocess.run([sys.executable, "-c", GENERATE, path, str(n)],
                                 capture_output=True, text=True, check=True).stdout)
    out = subprocess.run([sys.executable, "-c", SELECT, path, str(PROJECT_ROOT)],
                         capture_output=True, text=True, check=True).stdout.split()
    selected, growth_mb = map(int, out)
    assert selected == 500
    return data_mb, growth_mb


def test_peak_memory_does_not_grow_with_the_source(tmp_path):
    """Six times more solution text (~40 MB vs ~240 MB) barely moves the peak RSS of a fresh process
    selecting from it; loading the file whole would add at least the difference."""
    small_mb, small_growth = _select_growth(tmp_path, 40_000)
    big_mb, big_growth = _select_growth(tmp_path, 240_000)
    assert big_mb - small_mb > 180
    assert big_growth - small_growth < (big_mb - small_mb) / 4, (small_mb, small_growth, big_mb, big_growth)


def test_invalid_rows_never_take_a_place_in_the_subset(tmp_path):
    """k valid rows after cleaning even when the source holds invalid ones (9,000/1,000 needs 10,000);
    the invalid rows that ranked among them come along, so clean_examples still quarantines them."""
    rows = synthetic_rows(3000)
    for i in range(0, len(rows), 10):  # 10% with no solution: invalid
        rows[i] = {**rows[i], "generated_solution": ""}
    source = write_jsonl(tmp_path / "mixed.jsonl", rows)
    picked = list(AGENT.load_raw(source, seed=42, subset_size=200))
    valid = [r for r in picked if AGENT.is_valid_row(r)]
    invalid = [r for r in picked if not AGENT.is_valid_row(r)]
    assert len(valid) == 200
    assert 5 <= len(invalid) <= 45  # ~10% of the ranks up to the bound: about 22 expected
    assert [r.line for r in picked] == sorted(r.line for r in picked)
    again = list(AGENT.load_raw(source, seed=42, subset_size=200))
    assert [r.line for r in again] == [r.line for r in picked]
    # the valid rows are exactly the bottom-200 of the valid rows alone
    only_valid = write_jsonl(tmp_path / "valid.jsonl", [r for r in rows if r["generated_solution"]])
    expected = {r.record["problem"] for r in AGENT.load_raw(only_valid, seed=42, subset_size=200)}
    assert {r.record["problem"] for r in valid} == expected
