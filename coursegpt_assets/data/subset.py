"""A seeded, uniform, reproducible k-row subset of a large source, read in bounded batches.

Why: MathX-5M holds about 5M rows; the seed took the head of a stream (not a sample) and shuffled it
without a seed (not reproducible). Here each row's rank is SipHash-2-4 (pandas' `hash_array`) of its
normalised key (the problem text) under a 128-bit key derived from the seed. A keyed PRF gives distinct
keys ranks that behave as independent uniform draws, so the k smallest ranks are a uniform random
k-subset of the distinct keys ("bottom-k" sampling). The ranks depend only on the seed and the content,
not on row order, batch size, file format or sharding, so the same seed and source give the same rows.

Memory stays O(k + one batch): a bounded max-heap keeps the k best rows seen so far, and each batch is
first filtered against the heap's current worst rank in one vectorised comparison, so only about
k·ln(n/k) rows ever become Python objects. Rows that share a normalised key (MathX lists several
solutions per problem) count once: the earliest-listed row represents the key, so the subset holds k
distinct questions and no question can straddle two splits.

A Parquet source is not read whole: `parquet_plan` picks seeded row groups spread over it, at most 10 %
of its rows, and the bottom-k runs over those rows (a uniform subset of the rows read, which are
themselves an even, seeded sample of the source; a repeated problem is then represented by the
earliest-listed of the rows read). JSON Lines and other streams are read in one pass.
"""

from __future__ import annotations

import hashlib
import heapq
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coursegpt_assets.data.parquet_plan import (
    MAX_READ_SHARE,
    ParquetParts,
    ReadPlan,
    RowGroup,
    describe,
    plan_reads,
)
from coursegpt_assets.data.records import RawRow
from coursegpt_assets.data.sources import (
    TABULAR_SUFFIXES,
    download_gcs,
    iter_hf,
    iter_jsonl_file,
    local_files,
    parquet_files,
)

BATCH_ROWS = 16_384
#: no whole-row-group pre-buffering: with it, pyarrow holds several decoded row groups (3x the peak memory)
PARQUET_READ_OPTIONS = {"pre_buffer": False, "buffer_size": 1 << 20}

if TYPE_CHECKING:  # numpy is imported where it is used: loading the definitions must not pay for it
    import numpy as np


def hash_key(seed: int) -> str:
    """The 16-character SipHash key for `seed` (pandas takes the key as 16 UTF-8 characters)."""
    return hashlib.sha256(f"coursegpt-subset:{seed}".encode()).hexdigest()[:16]


def seeded_ranks(keys: np.ndarray, seed: int) -> np.ndarray:
    """uint64 rank of every key (an object array of str): SipHash-2-4 keyed by the seed."""
    from pandas.util import hash_array

    return hash_array(keys, encoding="utf8", hash_key=hash_key(seed), categorize=False)


def _collapse_whitespace(text):
    """Whitespace runs to one space, trimmed. The regex rewrite (slow: ~25 MB/s) only touches the rows
    that need it; a cheap regex match finds them."""
    import pyarrow.compute as pc

    messy = pc.fill_null(pc.match_substring_regex(text, r"\s\s|[\t\n\r\f\v]"), False)
    if pc.any(messy).as_py():
        fixed = pc.replace_substring_regex(pc.filter(text, messy), r"\s+", " ")
        text = pc.replace_with_mask(text, messy, fixed)
    return pc.utf8_trim_whitespace(text)


def normalised_keys(batch, key_fields: Sequence[str], lines: np.ndarray) -> np.ndarray:
    """Per row: the first non-blank key field, lower-cased and whitespace-collapsed (vectorised in Arrow).

    A row without a usable key gets a key unique to its line, so unreadable rows are sampled at the
    source's rate (and later quarantined) instead of collapsing into one.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    key = None
    for name in key_fields:
        if name not in batch.schema.names:
            continue
        column = batch.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        norm = _collapse_whitespace(pc.utf8_lower(column))
        norm = pc.if_else(pc.equal(norm, ""), pa.scalar(None, norm.type), norm)
        key = norm if key is None else pc.coalesce(key, norm)
    if key is None:
        return np.array([f"\x00row {line}" for line in lines], dtype=object)
    keys = key.to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(np.equal(keys, None)):
        keys[i] = f"\x00row {lines[i]}"
    return keys


@dataclass
class KeyedBatch:
    """One batch of source rows: global 1-based lines, normalised keys, and a way to build selected rows."""

    lines: np.ndarray
    keys: np.ndarray
    take: Callable[[np.ndarray], list[RawRow]]


class BottomK:
    """The k rows of smallest (rank, line) seen so far, at most one per key."""

    def __init__(self, k: int):
        if k <= 0:
            raise ValueError(f"subset size must be positive, got {k}")
        self.k = k
        self._heap: list[tuple[int, int, str]] = []  # (-rank, -line, key): heap[0] is the worst kept row
        self._rows: dict[str, tuple[int, int, RawRow]] = {}

    @property
    def bound(self) -> int | None:
        """The worst kept rank once full (rows ranked above it cannot enter), else None."""
        return -self._heap[0][0] if len(self._heap) >= self.k else None

    def offer(self, rank: int, line: int, key: str, row: RawRow) -> None:
        current = self._rows.get(key)
        if current is not None:
            if (rank, line) >= current[:2]:
                return
            self._heap.remove((-current[0], -current[1], key))
            heapq.heapify(self._heap)
        elif len(self._heap) >= self.k:
            worst_rank, worst_line, worst_key = self._heap[0]
            if (rank, line) >= (-worst_rank, -worst_line):
                return
            heapq.heappop(self._heap)
            del self._rows[worst_key]
        heapq.heappush(self._heap, (-rank, -line, key))
        self._rows[key] = (rank, line, row)

    def rows(self) -> list[RawRow]:
        """The kept rows in source order."""
        return [row for _, _, row in sorted(self._rows.values(), key=lambda r: r[1])]


@dataclass
class Selection:
    rows: list[RawRow]
    #: rows read from the source (every row of a stream; the chosen row groups' rows of a Parquet source)
    scanned: int = 0
    #: rows turned into Python objects as candidates: the memory that streaming keeps bounded
    materialised: int = 0
    batches: int = 0
    #: rows the source holds (known from Parquet footers; for a stream, every row was read)
    source_rows: int = 0
    #: how the rows were read: stream, bounded, whole (a small source), or past the bound
    read_mode: str = "stream"

    def read_summary(self) -> dict:
        """What the raw manifest and metadata record of the read."""
        return {"rows_read": self.scanned, "source_rows": self.source_rows, "subset_read": self.read_mode}


class Sampler:
    """Bottom-k selection fed one keyed batch at a time; see the module docstring for why it is uniform.

    With `is_valid`, the k are k *valid* rows: an invalid row never takes a place, so cleaning leaves
    exactly k. Invalid rows that rank among them are returned too (in source order with the rest), so
    clean_examples still quarantines them and the invalid share still shows what the source holds.
    """

    def __init__(self, k: int, seed: int, is_valid: Callable[[RawRow], bool] | None = None):
        self.chosen = BottomK(k)
        self.seed, self.is_valid = seed, is_valid
        self.rejected: list[tuple[int, int, RawRow]] = []  # (rank, line, row) of invalid candidates
        self.out = Selection(rows=[])

    @property
    def full(self) -> bool:
        """Whether k valid rows (one per key) are held."""
        return self.chosen.bound is not None

    def add(self, batch: KeyedBatch) -> None:
        import numpy as np

        ranks = seeded_ranks(batch.keys, self.seed)
        bound = self.chosen.bound
        idx = np.arange(len(ranks)) if bound is None else np.flatnonzero(ranks <= np.uint64(bound))
        self.out.scanned += len(ranks)
        self.out.batches += 1
        if not len(idx):
            return
        rows = batch.take(idx)
        self.out.materialised += len(rows)
        for i, row in zip(idx, rows, strict=True):
            if self.is_valid is not None and not self.is_valid(row):
                self.rejected.append((int(ranks[i]), int(batch.lines[i]), row))
                continue
            self.chosen.offer(int(ranks[i]), int(batch.lines[i]), batch.keys[i], row)
        bound = self.chosen.bound
        if bound is not None and len(self.rejected) > self.chosen.k:  # memory O(k): drop those that cannot rank
            self.rejected = [r for r in self.rejected if r[0] <= bound]

    def selection(self) -> Selection:
        bound = self.chosen.bound
        kept_invalid = [(line, row) for rank, line, row in self.rejected if bound is None or rank <= bound]
        rows = [(r.line, r) for r in self.chosen.rows()] + kept_invalid
        self.out.rows = [row for _, row in sorted(rows, key=lambda x: x[0])]
        return self.out


def bottom_k(batches: Iterable[KeyedBatch], k: int, seed: int,
             is_valid: Callable[[RawRow], bool] | None = None) -> Selection:
    """Bottom-k selection over keyed batches (see Sampler)."""
    sampler = Sampler(k, seed, is_valid)
    for batch in batches:
        sampler.add(batch)
    return sampler.selection()


# -- batching the supported sources -------------------------------------------------------------------
def _parquet_batches(path: Path, key_fields: Sequence[str], offset: int, batch_rows: int) -> Iterator[KeyedBatch]:
    import pyarrow.parquet as pq

    yield from _parquet_file_batches(pq.ParquetFile(path, **PARQUET_READ_OPTIONS), key_fields, offset, batch_rows)


def _parquet_file_batches(file, key_fields: Sequence[str], offset: int, batch_rows: int,
                          row_groups: list[int] | None = None) -> Iterator[KeyedBatch]:
    """Keyed batches of an open ParquetFile (only `row_groups` when given); line numbers from `offset` + 1."""
    import numpy as np
    import pyarrow as pa

    line = offset
    for batch in file.iter_batches(batch_size=batch_rows, row_groups=row_groups):
        lines = np.arange(line + 1, line + 1 + batch.num_rows, dtype=np.int64)

        def take(idx, batch=batch, lines=lines):
            records = batch.take(pa.array(idx, type=pa.int64())).to_pylist()
            return [RawRow(line=int(lines[i]), record=r) for i, r in zip(idx, records, strict=True)]

        yield KeyedBatch(lines, normalised_keys(batch, key_fields, lines), take)
        line += batch.num_rows


def _python_batch(rows: list[RawRow], key_fields: Sequence[str]) -> KeyedBatch:
    import numpy as np
    import pyarrow as pa

    def text(record, name):
        value = record.get(name) if record is not None else None
        return value if isinstance(value, str) else None

    columns = {name: pa.array([text(r.record, name) for r in rows], type=pa.string()) for name in key_fields}
    batch = pa.RecordBatch.from_pydict(columns) if columns else pa.RecordBatch.from_pydict({})
    lines = np.array([r.line for r in rows], dtype=np.int64)
    return KeyedBatch(lines, normalised_keys(batch, key_fields, lines), lambda idx: [rows[i] for i in idx])


def row_batches(rows: Iterable[RawRow], key_fields: Sequence[str], batch_rows: int = BATCH_ROWS) -> Iterator[KeyedBatch]:
    """Group parsed rows (JSONL, Hugging Face streaming) into keyed batches."""
    buffer: list[RawRow] = []
    for row in rows:
        buffer.append(row)
        if len(buffer) >= batch_rows:
            yield _python_batch(buffer, key_fields)
            buffer = []
    if buffer:
        yield _python_batch(buffer, key_fields)


def _local_batches(path: Path, key_fields: Sequence[str], batch_rows: int) -> Iterator[KeyedBatch]:
    """Files in the order sources.iter_local reads them, with the same global line numbers."""
    offset = 0
    for file in local_files(path):
        if file.suffix in TABULAR_SUFFIXES:
            import pyarrow.parquet as pq

            yield from _parquet_batches(file, key_fields, offset, batch_rows)
            offset += pq.ParquetFile(file).metadata.num_rows
            continue
        last = 0

        def shifted(file=file, base=offset):
            nonlocal last
            for row in iter_jsonl_file(file):
                last = row.line
                yield row.renumbered(base + row.line)

        yield from row_batches(shifted(), key_fields, batch_rows)
        offset += last


def source_batches(source: str, key_fields: Sequence[str], batch_rows: int = BATCH_ROWS) -> Iterator[KeyedBatch]:
    """Keyed batches of a local file/folder, a gs:// object or prefix, or an hf:// dataset (streamed)."""
    if source.startswith("hf://"):
        yield from row_batches(iter_hf(source), key_fields, batch_rows)
    elif source.startswith("gs://"):
        with tempfile.TemporaryDirectory(prefix="coursegpt-src-") as tmp:
            yield from _local_batches(download_gcs(source, Path(tmp)), key_fields, batch_rows)
    else:
        yield from _local_batches(Path(source).expanduser(), key_fields, batch_rows)


def select_subset(
    source: str, *, k: int, seed: int, key_fields: Sequence[str], batch_rows: int = BATCH_ROWS,
    is_valid: Callable[[RawRow], bool] | None = None, max_share: float = MAX_READ_SHARE,
) -> Selection:
    """The seeded subset of `source` with k valid rows (one row per distinct key), in source order.

    A source made of Parquet files only (a file, a folder of shards, a Hub dataset's Parquet train files)
    is read by row group: at most `max_share` of its rows (see parquet_plan). Anything else is streamed.
    """
    if source.startswith("gs://"):
        with tempfile.TemporaryDirectory(prefix="coursegpt-src-") as tmp:
            return select_subset(str(download_gcs(source, Path(tmp))), k=k, seed=seed, key_fields=key_fields,
                                 batch_rows=batch_rows, is_valid=is_valid, max_share=max_share)
    found = parquet_files(source)
    if found is None:
        selection = bottom_k(source_batches(source, key_fields, batch_rows), k, seed, is_valid)
        selection.source_rows = selection.scanned
        return selection
    parts = describe(*found)
    return bounded_selection(parts, plan_reads(parts.groups, k=k, seed=seed, max_share=max_share),
                             Sampler(k, seed, is_valid), key_fields, batch_rows)


def bounded_selection(parts: ParquetParts, plan: ReadPlan, sampler: Sampler, key_fields: Sequence[str],
                      batch_rows: int = BATCH_ROWS) -> Selection:
    """Feed the planned row groups to the sampler: `first`, then the reserve while short of k, then (only
    when the bound cannot give k rows, e.g. a source of repeats) the groups past it."""
    import pyarrow.parquet as pq

    open_file, handle, reader = None, None, None  # one file open at a time: each holds a read buffer

    def read(group: RowGroup) -> None:
        nonlocal open_file, handle, reader
        if open_file != group.file:  # `first` is in source order, so there each file opens once
            if handle is not None:
                handle.close()
            handle = parts.fs.open(parts.files[group.file], "rb")
            reader = pq.ParquetFile(handle, metadata=parts.metadata[group.file], **PARQUET_READ_OPTIONS)
            open_file = group.file
        for batch in _parquet_file_batches(reader, key_fields, group.offset, batch_rows, [group.index]):
            sampler.add(batch)

    try:
        for group in plan.first:
            read(group)
        mode = "whole" if plan.budget is None else "bounded"
        for group in plan.reserve:
            if sampler.full:
                break
            read(group)
        for group in plan.beyond:
            if sampler.full:
                break
            read(group)
            mode = "past the bound"
    finally:
        if handle is not None:
            handle.close()
    selection = sampler.selection()
    selection.source_rows, selection.read_mode = parts.rows, mode
    return selection
