"""Artifact sets that belong together: every file a manifest names must hold the bytes it names.

Each file is written atomically, but a set is not: if the split files of a new run are written and the
run dies before its manifest, the store holds a train split from the new run beside a validation split
and manifest from the old one. Readers downstream call `verify` before using a set, so a mixed set stops
the run with an actionable message instead of being tuned on.
"""

from __future__ import annotations

import dagster as dg

from resources.storage import ArtifactStore


def read_manifest(store: ArtifactStore, key: str, *, producer: str, partition: str) -> dict:
    """A producer's manifest (written last, so its presence means the set was completed once)."""
    if not store.exists(key):
        raise dg.Failure(description=f"{partition}: {store.uri(key)} does not exist; materialise {producer} for "
                                     f"{partition} first")
    return store.read_json(key)


def verify(store: ArtifactStore, expected: dict[str, str], *, producer: str, partition: str) -> None:
    """Raise dg.Failure unless every key's sha256 equals the manifest's."""
    stale = []
    for key, sha in expected.items():
        try:
            actual = store.sha256(key)
        except FileNotFoundError:
            stale.append(f"{store.uri(key)} is missing")
            continue
        if actual != sha:
            stale.append(f"{store.uri(key)} has sha256 {actual[:12]}…, its manifest says {str(sha)[:12]}…")
    if stale:
        raise dg.Failure(
            description=f"{partition}: the files of {producer} do not match its manifest (an interrupted write "
                        f"left a mixed set): {'; '.join(stale)}. Re-materialise {producer} for {partition}.",
            metadata={"mismatched_files": len(stale)},
        )
