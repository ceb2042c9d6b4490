"""Reading raw records from a local file or folder, a `gs://` URI, or `hf://<dataset id>[:<config>]`.

Every row keeps its 1-based line number so a rejected record can be traced back to the source.
Unparseable lines are yielded with an error instead of being dropped.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from coursegpt_assets.data.records import RawRow

TABULAR_SUFFIXES = (".parquet",)
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
FOLDER_SUFFIXES = (".jsonl", ".ndjson", *TABULAR_SUFFIXES)
READ_BUFFER_BYTES = 1 << 20


class SourceError(RuntimeError):
    """The source cannot be read; the message names it and says what to do."""


def parse_hf_source(source: str) -> tuple[str, str | None, str | None]:
    """(dataset id, config, revision) of `hf://<dataset id>[:<config>][@<revision>]`."""
    spec, _, revision = source[len("hf://"):].partition("@")
    dataset_id, _, config = spec.partition(":")
    if not dataset_id or (source.count("@") and not revision):
        raise SourceError(f"{source!r}: expected hf://<dataset id>[:<config>][@<revision>]")
    return dataset_id, config or None, revision or None


def hf_source(dataset_id: str, config: str | None, revision: str | None) -> str:
    return f"hf://{dataset_id}" + (f":{config}" if config else "") + (f"@{revision}" if revision else "")


def resolve_hf_revision(source: str) -> str:
    """The commit an `hf://` source's revision (default: the main branch) names now. Reading at that commit
    keeps a seeded subset deterministic when the dataset changes on the Hub later."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    dataset_id, _, revision = parse_hf_source(source)
    try:  # HF_ENDPOINT is read here, at call time (huggingface_hub reads it once at import)
        info = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None).dataset_info(dataset_id, revision=revision)
    except (HfHubHTTPError, OSError) as e:
        raise SourceError(
            f"{source}: could not resolve revision {revision or 'main'} of Hugging Face dataset {dataset_id!r}: "
            f"{type(e).__name__}: {str(e)[:300]}. Check the dataset id and revision, HF_TOKEN for gated data, "
            "or point the agent's source variable at a local JSONL/Parquet copy."
        ) from e
    if not info.sha:
        raise SourceError(f"{source}: the Hub returned no commit for revision {revision or 'main'}")
    return info.sha


def iter_jsonl_file(path: Path) -> Iterator[RawRow]:
    """Every non-blank line, unparsed: RawRow parses on first use and reports invalid JSON as an error."""
    with path.open("rb", buffering=READ_BUFFER_BYTES) as fh:  # few reads: each one hands the GIL around
        for line_no, raw in enumerate(fh, start=1):
            raw = raw.rstrip(b"\r\n")
            if raw and not raw.isspace():
                yield RawRow(line=line_no, raw=raw)


def iter_parquet_file(path: Path, columns: list[str] | None = None) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    line = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=8192, columns=columns):
        for record in batch.to_pylist():
            line += 1
            yield RawRow(line=line, record=record)


def local_files(path: Path) -> list[Path]:
    """The file itself, or a folder's record files: JSON Lines and Parquet only (a folder's `.json` files
    are metadata such as a dataset card's dataset_info.json, not records)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in FOLDER_SUFFIXES)
        if not files:
            raise SourceError(f"{path}: folder holds no .jsonl or .parquet files")
        return files
    if not path.exists():
        raise SourceError(f"{path}: source file not found")
    return [path]


def iter_local(path: Path) -> Iterator[RawRow]:
    offset = 0
    for file in local_files(path):
        last = 0
        rows = iter_parquet_file(file) if file.suffix in TABULAR_SUFFIXES else iter_jsonl_file(file)
        for row in rows:
            last = row.line
            yield row.renumbered(offset + row.line)
        offset += last


def line_table(source: str) -> list[dict]:
    """For a local folder of several files: where each file's rows sit in the source-wide numbering
    (`iter_local`'s), so a rejected row can be named as `file:line`. Empty for anything else."""
    if source.startswith(("hf://", "gs://")):
        return []
    path = Path(source).expanduser()
    if not path.is_dir():
        return []
    table, offset = [], 0
    for file in local_files(path):
        if file.suffix in TABULAR_SUFFIXES:
            import pyarrow.parquet as pq

            last = pq.ParquetFile(file).metadata.num_rows
        else:
            last = last_nonblank_line(file)
        table.append({"file": str(file.relative_to(path)), "first": offset + 1, "last": offset + last})
        offset += last
    return table


def last_nonblank_line(file: Path) -> int:
    """The number of the file's last line holding a non-whitespace byte (0 if none), as `iter_jsonl_file`
    numbers lines; counted over 1 MiB blocks, without splitting the file into lines."""
    newlines = last = 0
    with file.open("rb") as fh:
        while block := fh.read(READ_BUFFER_BYTES):
            content = len(block.rstrip())
            if content:
                last = newlines + block.count(b"\n", 0, content) + 1
            newlines += block.count(b"\n")
    return last


def locate(table: list[dict], line: int) -> tuple[str, int] | None:
    """(file, line within it) of a source-wide line number, using `line_table`'s table."""
    for entry in table:
        if entry["first"] <= line <= entry["last"]:
            return entry["file"], line - entry["first"] + 1
    return None


def download_gcs(uri: str, dest_dir: Path) -> Path:
    """Copy a gs:// object (or every object under a gs:// prefix) into dest_dir."""
    from google.cloud import storage  # what dagster-gcp's GCSResource builds; honours STORAGE_EMULATOR_HOST

    bucket_name, _, name = uri[len("gs://"):].partition("/")
    try:
        client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
        blobs = [b for b in client.list_blobs(bucket_name, prefix=name) if not b.name.endswith("/")]
        if not blobs:
            raise SourceError(f"{uri}: no objects found (check the bucket, prefix and credentials)")
        for blob in blobs:
            rel = Path(blob.name).name if blob.name == name else Path(blob.name).relative_to(name)
            target = dest_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target))
    except SourceError:
        raise
    except Exception as e:  # no credentials, no such bucket, network: name the source and what to check
        raise SourceError(
            f"{uri}: could not read from Google Cloud Storage: {type(e).__name__}: {str(e)[:300]}. Check "
            "`gcloud auth application-default login` (or GOOGLE_APPLICATION_CREDENTIALS), GOOGLE_CLOUD_PROJECT, "
            "the bucket name, or STORAGE_EMULATOR_HOST for an emulator"
        ) from e
    return dest_dir / Path(name).name if len(blobs) == 1 and blobs[0].name == name else dest_dir


def pinned_source(source: str) -> tuple[str, dict]:
    """What to read, and what the manifest records of it: an `hf://` source is read at the commit its
    revision names now (recorded as `revision`), so the same manifest always means the same rows."""
    if not source.startswith("hf://"):
        return source, {}
    dataset_id, config, _ = parse_hf_source(source)
    commit = resolve_hf_revision(source)
    return hf_source(dataset_id, config, commit), {"revision": commit}


def parquet_files(source: str) -> tuple[Any, list[str]] | None:
    """(fsspec filesystem, paths) when `source` is Parquet files only, so it can be read by row group:
    a .parquet file, a folder of them, or a Hub dataset's Parquet train files. None (stream it) otherwise."""
    if source.startswith("hf://"):
        return hf_parquet_files(source)
    files = local_files(Path(source).expanduser())
    if not all(f.suffix in TABULAR_SUFFIXES for f in files):
        return None
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(), [str(f) for f in files]


def hf_parquet_files(source: str) -> tuple[Any, list[str]] | None:
    """The train split's files of an `hf://` dataset at its revision, found by `datasets`' own split-name
    patterns over the repository listing (huggingface_hub's HfFileSystem, read by HTTP range). None when
    they are not all Parquet, or a config is named (its files come from the dataset card: stream it)."""
    dataset_id, config, revision = parse_hf_source(source)
    if config:
        return None
    from datasets.data_files import DataFilesDict, get_data_patterns
    from fsspec.core import url_to_fs

    base = f"hf://datasets/{dataset_id}" + (f"@{quote(revision, safe='')}" if revision else "")
    try:
        files = list(DataFilesDict.from_patterns(get_data_patterns(base), base).get("train") or [])
    except FileNotFoundError:  # no data files (datasets' EmptyDatasetError): streaming says what is wrong
        return None
    except Exception as e:  # offline, gated, or misspelt
        raise SourceError(
            f"{source}: could not list the files of Hugging Face dataset {dataset_id!r}: {type(e).__name__}: "
            f"{str(e)[:300]}. Set HF_TOKEN for gated data, or point the agent's source variable at a local "
            "JSONL/Parquet copy."
        ) from e
    if not files or not all(f.endswith(TABULAR_SUFFIXES) for f in files):
        return None
    fs, _ = url_to_fs(files[0])
    return fs, [url_to_fs(f)[1] for f in files]


def iter_hf(source: str, split: str = "train") -> Iterator[RawRow]:
    import datasets

    dataset_id, config, revision = parse_hf_source(source)
    try:
        ds = datasets.load_dataset(dataset_id, config, split=split, streaming=True, revision=revision)
    except Exception as e:  # offline, gated, or misspelt: say which and what to do
        raise SourceError(
            f"{source}: could not load Hugging Face dataset {dataset_id!r}"
            f"{f' (config {config!r})' if config else ''}: {type(e).__name__}: {e}. "
            "The Hub may be unreachable from here: set HF_HOME to a cache that holds the dataset, HF_TOKEN for "
            "gated data, or point the COURSEGPT_<AGENT>_SOURCE variable at a local JSONL/Parquet file."
        ) from e
    for i, record in enumerate(ds, start=1):
        yield RawRow(line=i, record=dict(record))


def iter_source(source: str) -> Iterator[RawRow]:
    """Every row of `source`, in source order."""
    if source.startswith("hf://"):
        yield from iter_hf(source)
    elif source.startswith("gs://"):
        with tempfile.TemporaryDirectory(prefix="coursegpt-src-") as tmp:
            yield from iter_local(download_gcs(source, Path(tmp)))
    else:
        yield from iter_local(Path(source).expanduser())
