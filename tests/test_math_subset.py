"""The MathX subset's bounded read: seeded row groups, at most 10 % of a Parquet source, spread over it,
deterministic; dedup and validity as in the full pass; small and too-repetitive sources; the hf:// path
reading only the chosen row groups of the Hub's Parquet shards (a local fake of the `hf` filesystem)."""

from __future__ import annotations

import os

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from coursegpt_assets.agents import get_agent
from coursegpt_assets.data import subset
from coursegpt_assets.data.parquet_plan import MIN_GROUPS, RowGroup, plan_reads, spread_order
from coursegpt_assets.data.records import RawRow
from coursegpt_assets.data.subset import bottom_k, row_batches, select_subset

AGENT = get_agent("math")
KEYS = ("problem",)
COMMIT = "c" * 40


def mathx_table(n: int, *, start: int = 0, distinct: int | None = None, valid_every: int = 0,
                notes: bool = False) -> pa.Table:
    """MathX-shaped rows; `distinct` repeats problems (row i asks problem i % distinct); with `valid_every`
    only every valid_every-th row has a solution."""
    ids = range(start, start + n)
    text = pc.cast(pa.array([i % distinct for i in ids] if distinct else ids), pa.string())
    problem = pc.binary_join_element_wise("Problem ", text, ": find ", text, " + 1.", "")
    solution = pc.binary_join_element_wise("It is \\boxed{", text, "}.", "")
    if valid_every:  # the other rows have no solution: invalid
        solution = pc.if_else(pa.array([i % valid_every == 0 for i in ids]), solution, pa.scalar("", pa.string()))
    table = pa.table({"problem": problem, "generated_solution": solution, "expected_answer": text})
    if notes:  # 100 incompressible characters a row: row data, not footers, dominates the file
        table = table.append_column("notes", pa.array([os.urandom(50).hex() for _ in ids]))
    return table


def write(path, table, group_rows=500) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=group_rows)
    return str(path)


@pytest.fixture
def groups_read(monkeypatch):
    """Every (row group) a ParquetFile is asked to read, counted at the reader."""
    calls: list[int] = []
    original = pq.ParquetFile.iter_batches

    def counting(self, *args, row_groups=None, **kwargs):
        calls.extend(row_groups if row_groups is not None else range(self.metadata.num_row_groups))
        return original(self, *args, row_groups=row_groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    return calls


# -- the plan ------------------------------------------------------------------------------------------
def test_the_spread_order_visits_every_group_once_and_each_prefix_covers_the_source():
    order = list(spread_order(1000, seed=42))
    assert sorted(order) == list(range(1000))
    assert order == list(spread_order(1000, seed=42)) and order != list(spread_order(1000, seed=43))
    for m in (2, 4, 16, 64):  # the first m groups: one in each m-th of the source
        assert sorted(i * m // 1000 for i in order[:m]) == list(range(m))


def test_every_group_is_equally_likely_to_be_read():
    """Chi-square over 2,000 seeds of which of 40 groups comes first: a fixed or biased start (e.g. always
    the head of the source) lands far above the bound; a uniform one near 39."""
    counts = [0] * 40
    for seed in range(2000):
        counts[next(spread_order(40, seed))] += 1
    expected = 2000 / 40
    assert sum((c - expected) ** 2 / expected for c in counts) < 80, counts


def test_the_plan_reads_at_most_the_share_and_at_least_enough_groups():
    groups = [RowGroup(0, i, i * 1000, 1000) for i in range(5000)]  # 5M rows, MathX's size
    plan = plan_reads(groups, k=10_000, seed=42)
    first = sum(g.rows for g in plan.first)
    assert plan.budget == 500_000 and 50_000 <= first <= plan.budget
    assert first + sum(g.rows for g in plan.reserve) <= plan.budget
    assert len(plan.first) >= MIN_GROUPS
    tenths = {g.offset * 10 // 5_000_000 for g in plan.first}
    assert tenths == set(range(10))  # read from every tenth of the source


# -- reading a Parquet file ----------------------------------------------------------------------------
def test_a_bounded_read_reads_only_the_planned_row_groups(tmp_path, groups_read):
    source = write(tmp_path / "m.parquet", mathx_table(100_000))  # 200 row groups of 500 rows
    selection = select_subset(source, k=500, seed=42, key_fields=KEYS)
    assert len(selection.rows) == 500
    assert len(set(groups_read)) == len(groups_read)  # no group read twice
    assert selection.scanned == 500 * len(groups_read) <= 10_000  # at most 10 % of 100,000 rows
    assert selection.read_summary() == {"rows_read": selection.scanned, "source_rows": 100_000,
                                        "subset_read": "bounded"}
    assert {g * 16 // 200 for g in groups_read} == set(range(16))  # spread: every sixteenth of the file
    table = pq.read_table(source)
    for r in selection.rows:  # line numbers are the full pass's: the row at line n is the file's n-th
        assert (r.line - 1) // 500 in groups_read and table.slice(r.line - 1, 1).to_pylist()[0] == r.record


def test_the_selection_is_the_bottom_k_of_the_rows_read(tmp_path, groups_read):
    source = write(tmp_path / "m.parquet", mathx_table(40_000))
    picked = select_subset(source, k=200, seed=9, key_fields=KEYS)
    file = pq.ParquetFile(source)
    read = sorted(set(groups_read))
    rows = [RawRow(g * 500 + i + 1, r) for g in read for i, r in enumerate(file.read_row_group(g).to_pylist())]
    expected = bottom_k(row_batches(rows, KEYS), 200, seed=9)
    assert [(r.line, r.record) for r in picked.rows] == [(r.line, r.record) for r in expected.rows]


def test_same_source_seed_and_k_read_the_same_rows_and_shards_read_like_one_file(tmp_path, groups_read):
    table = mathx_table(60_000)
    single = write(tmp_path / "one.parquet", table)
    for i in range(3):  # the same row groups, in three shards
        write(tmp_path / "shards" / f"train-{i:05d}-of-00003.parquet", table.slice(i * 20_000, 20_000))
    first = select_subset(single, k=300, seed=5, key_fields=KEYS)
    read_first = list(groups_read)
    again = select_subset(single, k=300, seed=5, key_fields=KEYS)
    sharded = select_subset(str(tmp_path / "shards"), k=300, seed=5, key_fields=KEYS)
    other = select_subset(single, k=300, seed=6, key_fields=KEYS)
    assert [(r.line, r.record) for r in first.rows] == [(r.line, r.record) for r in again.rows]
    assert [(r.line, r.record) for r in sharded.rows] == [(r.line, r.record) for r in first.rows]
    assert groups_read[:len(read_first)] == read_first == groups_read[len(read_first):2 * len(read_first)]
    assert len({r.line for r in first.rows} & {r.line for r in other.rows}) < 60


def test_repeated_problems_count_once_within_the_rows_read(tmp_path):
    source = write(tmp_path / "dup.parquet", mathx_table(100_000, distinct=25_000))  # each problem 4 times
    selection = select_subset(source, k=1_000, seed=3, key_fields=KEYS)
    keys = [AGENT.dedup_key(r.record) for r in selection.rows]
    assert len(keys) == len(set(keys)) == 1_000
    assert selection.read_mode == "bounded" and selection.scanned <= 10_000


def test_a_small_source_is_read_whole_and_says_so(tmp_path, groups_read):
    table = mathx_table(3_000)
    source = write(tmp_path / "small.parquet", table)
    selection = select_subset(source, k=500, seed=1, key_fields=KEYS)  # 10 % would be 300 rows < 500
    assert selection.read_summary() == {"rows_read": 3_000, "source_rows": 3_000, "subset_read": "whole"}
    assert sorted(groups_read) == list(range(6))
    streamed = bottom_k(row_batches((RawRow(i + 1, r) for i, r in enumerate(table.to_pylist())), KEYS), 500, 1)
    assert [r.record for r in selection.rows] == [r.record for r in streamed.rows]


def test_a_source_too_invalid_for_the_bound_reads_past_it_only_as_far_as_it_must(tmp_path):
    """19 of 20 rows invalid: 10 % of the rows hold ~500 valid ones, under k = 800. The read goes on past
    the bound until it has 800 valid rows, stops there, and the summary says so."""
    source = write(tmp_path / "bad.parquet", mathx_table(100_000, valid_every=20))
    selection = select_subset(source, k=800, seed=2, key_fields=KEYS, is_valid=AGENT.is_valid_row)
    assert sum(AGENT.is_valid_row(r) for r in selection.rows) == 800
    assert selection.read_mode == "past the bound"
    assert 10_000 < selection.scanned < 100_000 - 500 * 20


def test_jsonl_sources_keep_the_streaming_pass(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(f'{{"problem": "P{i}?", "generated_solution": "\\\\boxed{{{i}}}"}}\n'
                            for i in range(2_000)))
    selection = select_subset(str(path), k=100, seed=1, key_fields=KEYS)
    assert selection.read_summary() == {"rows_read": 2_000, "source_rows": 2_000, "subset_read": "stream"}


# -- hf:// ---------------------------------------------------------------------------------------------
class CountingFiles(DirFileSystem):
    """The Hub's `hf` filesystem, served from a local folder laid out as `datasets/<id>@<revision>/...`;
    it counts every byte read, per file."""

    protocol = "hf"
    cachable = False
    root: str = ""
    read_bytes: dict[str, int] = {}

    def __init__(self, *args, **kwargs):
        super().__init__(path=self.root, fs=LocalFileSystem())

    def open(self, path, mode="rb", **kwargs):
        fh = super().open(path, mode, **kwargs)
        original, name = fh.read, str(path).rsplit("/", 1)[-1]

        def read(*args):
            data = original(*args)
            CountingFiles.read_bytes[name] = CountingFiles.read_bytes.get(name, 0) + len(data)
            return data

        fh.read = read
        return fh


@pytest.fixture
def hub_files(tmp_path):
    root = tmp_path / "hub"
    CountingFiles.root, CountingFiles.read_bytes = str(root), {}
    fsspec.register_implementation("hf", CountingFiles, clobber=True)
    yield root / "datasets" / "XenArcAI" / f"MathX-5M@{COMMIT}"
    fsspec.register_implementation("hf", "huggingface_hub.HfFileSystem", clobber=True)


def test_hf_parquet_shards_are_read_by_row_group_at_the_pinned_revision(hub_files, tmp_path, groups_read):
    for i in range(4):
        write(hub_files / "data" / f"train-{i:05d}-of-00004.parquet",
              mathx_table(30_000, start=i * 30_000, notes=True))
    write(hub_files / "data" / "test-00000-of-00001.parquet", mathx_table(1_000, start=10**6))
    (hub_files / "README.md").write_text("---\nlicense: mit\n---\n")
    via_hub = select_subset(f"hf://XenArcAI/MathX-5M@{COMMIT}", k=400, seed=42, key_fields=KEYS)
    assert "test-00000-of-00001.parquet" not in CountingFiles.read_bytes  # the train split only
    train_bytes = sum((hub_files / "data" / f"train-{i:05d}-of-00004.parquet").stat().st_size for i in range(4))
    assert sum(CountingFiles.read_bytes.values()) < 0.12 * train_bytes  # 16 of 240 groups, and 4 footers
    assert via_hub.read_summary() == {"rows_read": len(groups_read) * 500, "source_rows": 120_000,
                                      "subset_read": "bounded"}
    assert via_hub.scanned <= 12_000
    groups_read.clear()
    local = select_subset(_train_copy(hub_files, tmp_path), k=400, seed=42, key_fields=KEYS)
    assert [(r.line, r.record) for r in via_hub.rows] == [(r.line, r.record) for r in local.rows]


def _train_copy(hub_files, tmp_path) -> str:
    """The train shards alone, as a local folder."""
    folder = tmp_path / "train-copy"
    folder.mkdir()
    for shard in sorted((hub_files / "data").glob("train-*.parquet")):
        (folder / shard.name).write_bytes(shard.read_bytes())
    return str(folder)


def test_hub_datasets_without_parquet_shards_stream_through_the_same_selection(hub_files, tmp_path, monkeypatch):
    rows = [{"problem": f"Problem {i}?", "generated_solution": f"\\boxed{{{i}}}"} for i in range(900)]
    (hub_files / "data").mkdir(parents=True)
    (hub_files / "data" / "train.jsonl").write_text("".join(f"{r}\n" for r in rows))  # listed, not parsed here
    monkeypatch.setattr(subset, "iter_hf", lambda source: (RawRow(i, r) for i, r in enumerate(rows, start=1)))
    via_hf = select_subset(f"hf://XenArcAI/MathX-5M@{COMMIT}", k=40, seed=5, key_fields=KEYS)
    local = bottom_k(row_batches((RawRow(i, r) for i, r in enumerate(rows, start=1)), KEYS), 40, 5)
    assert [(r.line, r.record) for r in via_hf.rows] == [(r.line, r.record) for r in local.rows]
    assert via_hf.read_mode == "stream" and via_hf.scanned == 900


# -- what the raw manifest records -----------------------------------------------------------------------
def test_raw_examples_record_how_much_of_the_source_was_read(tmp_path, store, monkeypatch):
    import dagster as dg

    from coursegpt_assets.core import layout
    from coursegpt_assets.core.plan import default_plan
    from coursegpt_assets.defs.data.assets import raw_examples

    k = default_plan().agents["math"].subset_size
    monkeypatch.setenv("COURSEGPT_MATH_SOURCE", write(tmp_path / "mathx.parquet", mathx_table(20 * k)))
    result = dg.materialize([raw_examples], partition_key="math", resources={"store": store})
    manifest = store.read_json(layout.raw_manifest("math"))
    assert manifest["rows"] == k and manifest["source_rows"] == 20 * k and manifest["subset_read"] == "bounded"
    assert k <= manifest["rows_read"] <= 2 * k  # at most 10 % of 20·k rows
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["rows_read"].value == manifest["rows_read"]
