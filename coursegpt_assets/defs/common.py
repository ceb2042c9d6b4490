"""What every stage shares: owners, metadata helpers, and reading what an upstream asset wrote.

Artifact sets that belong together are checked against their manifest with `verify`: each file is
written atomically, but a set of files is not. A split set is published by its manifest
(`published_splits`): dataset_splits writes a new version folder and swaps the manifest last, so a killed
run leaves readers on the set before. Tuning data is still written in place, then its manifest; if a run
dies in between, `verify` stops the next reader with an actionable message instead of tuning on a mix.
"""

from __future__ import annotations

import base64

import dagster as dg

from coursegpt_assets.core import layout
from resources.storage import ArtifactStore

OWNERS = ["team:ml-platform"]
ROW_COUNT = "dagster/row_count"


# -- metadata reviewers read ---------------------------------------------------------------------------
def _cell(value, width: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def preview(rows: list[dict], columns: list[str], *, limit: int = 5, width: int = 80) -> dg.MetadataValue:
    """A markdown table of the first few rows: the first thing a reviewer looks at."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join(
        "| " + " | ".join(_cell(row.get(c, ""), width) for c in columns) + " |\n" for row in rows[:limit]
    )
    return dg.MetadataValue.md(head + body if rows else "_no rows_")


#: an image larger than this stays a link in the store: the event log holds every materialisation's metadata
MAX_INLINE_IMAGE_BYTES = 400_000


def image(png: bytes | None, alt: str) -> dg.MetadataValue | None:
    """A PNG shown on the asset page: markdown with the image embedded as a data URI (Dagster 1.13 has no
    image metadata type). None when there is no image or it is too large to keep in the event log."""
    if not png or len(png) > MAX_INLINE_IMAGE_BYTES or not png.startswith(b"\x89PNG"):
        return None
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})")


def stored_image(store: ArtifactStore, key: str, alt: str) -> dict[str, dg.MetadataValue]:
    """{'<file stem>': image} for a PNG in the store, {} when it is absent (a Vertex adapter has no loss curve)."""
    if not store.exists(key):
        return {}
    value = image(store.read_bytes(key), alt)
    return {key.rsplit("/", 1)[-1].removesuffix(".png"): value} if value else {}


COLUMN_SCHEMA = "dagster/column_schema"
_TYPE_NAMES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"), (list, "list"), (dict, "json"))


def _type_name(value) -> str:
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def column_schema(rows: list[dict]) -> dict[str, dg.TableSchema]:
    """{`dagster/column_schema`: the columns these records have, typed by their values} for the catalog's
    columns tab; a column missing from some rows is marked optional, one with mixed types lists each."""
    if not rows:
        return {}
    names = list(dict.fromkeys(k for r in rows for k in r))
    columns = []
    for name in names:
        values = [r[name] for r in rows if name in r]
        kinds = sorted({_type_name(v) for v in values if v is not None}) or ["null"]
        optional = len(values) < len(rows) or any(v is None for v in values)
        columns.append(dg.TableColumn(name, " | ".join(kinds),
                                      constraints=dg.TableColumnConstraints(nullable=optional)))
    return {COLUMN_SCHEMA: dg.TableSchema(columns=columns)}


def uri(value: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(value) if value.startswith("gs://") else dg.MetadataValue.path(value)


# -- reading upstream artifacts --------------------------------------------------------------------------
def read_upstream(store: ArtifactStore, key: str, *, producer: str, partition: str):
    """The JSON an upstream asset wrote at `key`. When it is missing, a dg.Failure names the file and what
    to materialise (`producer`, e.g. "adapter" or "clean_examples for router")."""
    try:
        return store.read_json(key)
    except FileNotFoundError:
        raise dg.Failure(description=f"{partition}: {store.uri(key)} does not exist; materialise {producer} "
                                     "first") from None


def read_latest_version(store: ArtifactStore, key: str, *, producer: str, partition: str) -> str:
    """The version a `latest.json` pointer names."""
    pointer = read_upstream(store, key, producer=producer, partition=partition)
    if not isinstance(pointer, dict) or not pointer.get("version"):
        raise dg.Failure(description=f"{partition}: {store.uri(key)} holds no 'version' (expected {{\"version\": ...}})")
    return str(pointer["version"])


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
            description=f"{partition}: the files of {producer} do not match its manifest (one changed after "
                        f"the manifest was written, or an interrupted write left a mixed set): {'; '.join(stale)}. Re-materialise {producer} for {partition}.",
            metadata={"mismatched_files": len(stale)},
        )


def published_splits(store: ArtifactStore, agent: str, splits=layout.SPLITS, *, partition: str
                     ) -> tuple[dict, dict[str, str]]:
    """The agent's splits manifest and the keys of the split files it publishes, checked against it."""
    producer = f"dataset_splits for {agent}"
    manifest = read_upstream(store, layout.splits_manifest(agent), producer=producer, partition=partition)
    if not manifest.get("version"):
        raise dg.Failure(description=f"{partition}: {store.uri(layout.splits_manifest(agent))} names no split-set "
                                     f"version (an older dataset_splits wrote it); re-materialise {producer}")
    keys = layout.split_keys(manifest, splits)
    verify(store, {keys[s]: manifest["sha256"][s] for s in splits}, producer="dataset_splits", partition=partition)
    return manifest, keys
