"""Which row groups of a Parquet source a seeded k-row subset reads, so it reads a bounded share of it.

Why: streaming all of MathX-5M (5M rows, ~4 GB of text) to keep 10,000 rows pays for the whole source.
A row group is the smallest unit a Parquet reader fetches on its own (from disk, or by HTTP range from
the Hub), so the plan picks whole row groups, and the bottom-k selection (`subset.py`) runs over their
rows only.

The groups are taken in a seeded *spread order*: systematic sampling over the groups in source order
with a seeded offset u and van der Corput strides (positions u, u+1/2, u+1/4, u+3/4, ... of the
source, wrapped). Every prefix of 2^j groups therefore holds one group from each 1/2^j of the source,
and every group is equally likely to come first (u is uniform), so every row is equally likely to be
read. The order depends only on the seed and the number of groups: the same seed and source (at a
pinned revision) read the same groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from coursegpt_assets.data.sources import SourceError

#: the most a bounded read takes of the source's rows
MAX_READ_SHARE = 0.10
#: rows read per row kept, when the bound allows: room for repeated and invalid rows
OVERSAMPLE = 5
#: groups read at least, when the bound allows: a subset never comes from one corner of the source
MIN_GROUPS = 16


@dataclass(frozen=True)
class RowGroup:
    file: int  #: index into ParquetParts.files
    index: int  #: row group within that file
    offset: int  #: source-wide line number of the group's first row, minus one
    rows: int


@dataclass
class ParquetParts:
    """A source's Parquet files in reading order, the fsspec filesystem that opens them, their footers
    (kept: reading a file's row groups later needs no second footer request) and their row groups."""

    fs: Any
    files: list[str]
    metadata: list[Any]
    groups: list[RowGroup]

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups)


def describe(fs: Any, files: Sequence[str]) -> ParquetParts:
    """Row groups of every file, from the footers alone (a ranged read per file, no row data)."""
    import pyarrow.parquet as pq

    groups: list[RowGroup] = []
    footers = []
    offset = 0
    for i, path in enumerate(files):
        try:
            with fs.open(path, "rb") as fh:
                meta = pq.read_metadata(fh)
        except Exception as e:  # truncated or not Parquet: name the file
            raise SourceError(f"{path}: cannot read the Parquet footer ({type(e).__name__}: {e}); "
                              "re-download the file or point the source at a readable copy") from e
        footers.append(meta)
        for g in range(meta.num_row_groups):
            rows = meta.row_group(g).num_rows
            groups.append(RowGroup(i, g, offset, rows))
            offset += rows
    return ParquetParts(fs, list(files), footers, groups)


def _radical_inverse(j: int) -> float:
    """j's binary digits mirrored after the point: 0, 1/2, 1/4, 3/4, 1/8, 5/8, ... (van der Corput)."""
    x, f = 0.0, 0.5
    while j:
        x += f * (j & 1)
        j >>= 1
        f /= 2
    return x


def spread_order(n: int, seed: int) -> Iterator[int]:
    """Every index in range(n) once, in the seeded spread order of the module docstring."""
    u = int(hashlib.sha256(f"coursegpt-row-groups:{seed}".encode()).hexdigest()[:16], 16) / 2**64
    seen: set[int] = set()
    j = 0
    while len(seen) < n:  # ends: once 2^j >= n the strides are finer than one group, so all are hit
        pos = min(int(((u + _radical_inverse(j)) % 1.0) * n), n - 1)
        if pos not in seen:
            seen.add(pos)
            yield pos
        j += 1


@dataclass
class ReadPlan:
    """`first` is read whole (in source order); `reserve` one group at a time while the subset is short."""

    first: list[RowGroup]
    reserve: list[RowGroup]
    #: the most rows a bounded read takes; None when the source is read whole (too small to bound)
    budget: int | None
    #: the groups past the bound, in spread order: read only when the bound cannot give k rows
    beyond: list[RowGroup]


def plan_reads(groups: Sequence[RowGroup], *, k: int, seed: int, max_share: float = MAX_READ_SHARE) -> ReadPlan:
    """Row groups for a k-row subset reading at most `max_share` of the rows (see the module docstring).

    A source whose bound is under k rows cannot give k from a bounded read and is read whole (it is
    small: under k / max_share rows). Otherwise the first groups of the spread order that fit the bound
    are read until they hold OVERSAMPLE·k rows and MIN_GROUPS groups; the rest that fit are the reserve.
    """
    total = sum(g.rows for g in groups)
    budget = int(total * max_share)
    if budget < k:
        return ReadPlan(first=sorted(groups, key=_position), reserve=[], budget=None, beyond=[])
    first: list[RowGroup] = []
    reserve: list[RowGroup] = []
    beyond: list[RowGroup] = []
    used = first_rows = 0
    for i in spread_order(len(groups), seed):
        group = groups[i]
        if used + group.rows > budget:  # a later, smaller group may still fit
            beyond.append(group)
            continue
        used += group.rows
        if first_rows < OVERSAMPLE * k or len(first) < MIN_GROUPS:
            first.append(group)
            first_rows += group.rows
        else:
            reserve.append(group)
    return ReadPlan(first=sorted(first, key=_position), reserve=reserve, budget=budget, beyond=beyond)


def _position(group: RowGroup) -> int:
    return group.offset
