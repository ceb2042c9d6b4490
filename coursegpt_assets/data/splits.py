"""Deterministic, leak-free train/validation/test assignment.

Counts follow the seed: validation = floor(r_val·n), test = floor(r_test·n), train = the rest
(8,189 → 6,962 / 818 / 409). Records are grouped by their normalised prompt and whole groups move
together, so no id and no normalised prompt appears in two splits. The order is a seeded hash of the
group key, so the result does not depend on the order the source happens to list records in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence


def target_counts(n: int, validation: float, test: float) -> dict[str, int]:
    val, tst = math.floor(validation * n), math.floor(test * n)
    if val + tst > n:
        raise ValueError(f"split ratios validation={validation}, test={test} leave no training data")
    return {"train": n - val - tst, "validation": val, "test": tst}


def seeded_rank(key: str, seed: int) -> bytes:
    """The key's place in the seeded order: sha256(f"{seed}\\0{key}"). 32 bytes stand in for a key (a whole
    normalised prompt) wherever only its order and its equality to other keys matter."""
    return hashlib.sha256(f"{seed}\x00".encode() + str(key).encode()).digest()


def seeded_order(keys: Sequence[str], seed: int) -> list[int]:
    """Indices of `keys` in a seeded pseudo-random order that is independent of input order.

    The order is by sha256(f"{seed}\\0{key}"), ties (equal keys) by the key itself.
    """
    prefix, sha256 = f"{seed}\x00".encode(), hashlib.sha256
    ranks = [(sha256(prefix + str(key).encode()).digest(), key) for key in keys]
    return sorted(range(len(ranks)), key=ranks.__getitem__)


def assign_splits(group_keys: Sequence[str], *, validation: float, test: float, seed: int) -> list[str]:
    """The split of each record, given each record's group key (its normalised prompt).

    Held-out splits are filled first, whole groups at a time; a group that would overflow a held-out
    split goes on to the next one, so held-out splits never exceed their targets and are exact whenever
    enough single-record groups exist (always, for data without duplicate prompts).
    """
    return assign_ranked([seeded_rank(key, seed) for key in group_keys], validation=validation, test=test)


def assign_ranked(ranks: Sequence[bytes], *, validation: float, test: float) -> list[str]:
    """`assign_splits` given each record's `seeded_rank` instead of its key: equal ranks are one group,
    visited in rank order (the same assignment; a caller streaming the keys holds 32 bytes per record)."""
    targets = target_counts(len(ranks), validation, test)
    members: dict[bytes, list[int]] = {}
    for i, rank in enumerate(ranks):
        members.setdefault(rank, []).append(i)
    room_test, room_validation = targets["test"], targets["validation"]  # test is filled first, then validation
    assignment = ["train"] * len(ranks)
    for rank in sorted(members):
        idx = members[rank]
        if len(idx) <= room_test:
            split, room_test = "test", room_test - len(idx)
        elif len(idx) <= room_validation:
            split, room_validation = "validation", room_validation - len(idx)
        else:
            continue
        for i in idx:
            assignment[i] = split
    return assignment
