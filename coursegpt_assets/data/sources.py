"""Reading raw records from a local file or folder, a `gs://` URI, or `hf://<dataset id>[:<config>]`.

Every row keeps its 1-based line number so a rejected record can be traced back to the source.
Unparseable lines are yielded with an error instead of being dropped. JSON Lines files may be
compressed (`.jsonl.gz`, `.jsonl.zst`: decompressed as a stream) and may start with a UTF-8 BOM. A file
whose bytes are not what its name says (gzip data in a `.jsonl`, a binary file) fails as a whole, with
what it looks like, instead of quarantining every line as invalid JSON.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from coursegpt_assets.data.records import RawRow

TABULAR_SUFFIXES = (".parquet",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")  # what a folder's JSON Lines files are called, before a codec suffix
CODECS = {".gz": "gzip", ".zst": "zstd"}  # compressed JSON Lines, by the last suffix
READ_BUFFER_BYTES = 1 << 20
SNIFF_BYTES = 4096  # how much of a file's start is looked at to tell what it holds
UTF8_BOM = b"\xef\xbb\xbf"

# (leading bytes, what a file starting with them holds, what to do about it); {name} is the file's name
SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed data", "name it {name}.gz"),
    (b"\x28\xb5\x2f\xfd", "Zstandard-compressed data", "name it {name}.zst"),
    (b"BZh", "bzip2-compressed data", "decompress it, or recompress it as .jsonl.gz or .jsonl.zst"),
    (b"\xfd7zXZ\x00", "xz-compressed data", "decompress it, or recompress it as .jsonl.gz or .jsonl.zst"),
    (b"PK\x03\x04", "a ZIP archive", "unzip it and point the source at the .jsonl or .parquet files inside"),
    (b"PAR1", "Parquet data", "name it {stem}.parquet"),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8"),
)
MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}


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


def looks_like(head: bytes) -> tuple[str, str] | None:
    """(what the bytes look like, the fix) when a file starting with `head` is not JSON Lines text, else None."""
    for magic, what, fix in SIGNATURES:
        if head.startswith(magic):
            return what, fix
    if b"\x00" in head:
        return f"binary data (NUL bytes in its first {SNIFF_BYTES} bytes)", "point the source at JSON Lines or Parquet"
    return None


def is_records_file(path: Path) -> bool:
    """Whether a folder's file holds records: Parquet, or JSON Lines, compressed or not."""
    suffixes = path.suffixes[-2:] if path.suffix in CODECS else path.suffixes[-1:]
    return bool(suffixes) and (suffixes[0] in JSONL_SUFFIXES or suffixes == list(TABULAR_SUFFIXES))


class _ZstdReader(io.RawIOBase):
    """A Zstandard file decoded as a stream, frame after frame. zstandard's stream_reader returns a clean end
    of data when the file stops inside a frame; this raises EOFError then, as gzip does for a cut file."""

    def __init__(self, fh: BinaryIO):
        import zstandard

        self._fh, self._dctx = fh, zstandard.ZstdDecompressor()
        self._obj, self._in_frame = self._dctx.decompressobj(), False
        self._out, self._pos = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._pos == len(self._out):
            data = b""
            if self._obj.eof:  # a frame ended: what follows it starts the next one
                data, self._obj, self._in_frame = self._obj.unused_data, self._dctx.decompressobj(), False
            data = data or self._fh.read(READ_BUFFER_BYTES)
            if not data:
                if self._in_frame:
                    raise EOFError("the file ends inside a Zstandard frame")
                return 0
            self._in_frame, self._out, self._pos = True, self._obj.decompress(data), 0
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = memoryview(self._out)[self._pos:self._pos + n]
        self._pos += n
        return n


def _stream_errors(codec: str | None) -> tuple[type[BaseException], ...]:
    """What reading a (decompressed) stream raises when the file is corrupt or cut short."""
    if codec == "zstd":
        import zstandard

        return OSError, EOFError, zstandard.ZstdError
    return OSError, EOFError


@contextmanager
def open_jsonl(path: Path) -> Iterator[BinaryIO]:
    """The text bytes of a JSON Lines file: decompressed as its name says, a leading UTF-8 BOM skipped.
    SourceError, naming the file and what it holds, when the bytes are not what the name says."""
    codec = CODECS.get(path.suffix)
    buffering = max(READ_BUFFER_BYTES, SNIFF_BYTES)  # peek() sees at most one buffer
    with path.open("rb", buffering=buffering) as raw:
        head = raw.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        if codec and not head.startswith(MAGIC[codec]):
            what = (looks_like(head) or ("uncompressed data", ""))[0]
            raise SourceError(f"{path}: named {path.suffix} but holds {what}, not {codec}-compressed data; "
                              f"rename it to what it holds (e.g. {path.stem})")
        stream = raw
        if codec == "gzip":
            import gzip

            stream = io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffering)
        elif codec == "zstd":
            stream = io.BufferedReader(_ZstdReader(raw), buffering)
        try:
            head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        except _stream_errors(codec) as e:
            raise _corrupt(path, codec, e) from e
        if found := looks_like(head):
            what, fix = found
            inside = f"after {codec} decompression, " if codec else ""
            raise SourceError(f"{path}: {inside}holds {what}, not JSON Lines text; "
                              + fix.format(name=path.name, stem=path.with_suffix("").name.removesuffix(".jsonl")))
        if head.startswith(UTF8_BOM):  # files saved on Windows: the BOM is no part of the first record
            stream.read(len(UTF8_BOM))
        try:
            yield stream
        except _stream_errors(codec) as e:
            raise _corrupt(path, codec, e) from e


def _corrupt(path: Path, codec: str | None, error: BaseException, after_line: int | None = None) -> SourceError:
    where = f" after line {after_line}" if after_line is not None else ""
    return SourceError(f"{path}: the {codec or 'file'} stream is corrupt or cut short{where} "
                       f"({type(error).__name__}: {error}); fetch or compress the file again")


def iter_jsonl_file(path: Path) -> Iterator[RawRow]:
    """Every non-blank line, unparsed: RawRow parses on first use and reports invalid JSON as an error."""
    codec = CODECS.get(path.suffix)
    with open_jsonl(path) as fh:  # few large reads: each one hands the GIL around
        line_no = 0
        try:
            for line_no, raw in enumerate(fh, start=1):
                raw = raw.rstrip(b"\r\n")
                if raw and not raw.isspace():
                    yield RawRow(line=line_no, raw=raw)
        except _stream_errors(codec) as e:
            raise _corrupt(path, codec, e, line_no) from e


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
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_records_file(p))
        if not files:
            raise SourceError(f"{path}: folder holds no .jsonl, .jsonl.gz, .jsonl.zst or .parquet files")
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
    numbers lines; counted over 1 MiB blocks of its text, without splitting it into lines."""
    newlines = last = 0
    with open_jsonl(file) as fh:
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
    """Copy a gs:// object (or every object under a gs:// folder) into dest_dir, bytes as stored: an object
    uploaded with `Content-Encoding: gzip` stays compressed, as its `.gz` name says."""
    from google.cloud import storage  # what dagster-gcp's GCSResource builds; honours STORAGE_EMULATOR_HOST

    bucket_name, _, name = uri[len("gs://"):].partition("/")
    try:
        client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
        blob = client.bucket(bucket_name).get_blob(name) if name and not name.endswith("/") else None
        folder = name.rstrip("/") + "/" if name.strip("/") else ""  # gs://b/router must not read gs://b/router2/
        blobs = [blob] if blob else [b for b in client.list_blobs(bucket_name, prefix=folder) if not b.name.endswith("/")]
        if not blobs:
            raise SourceError(f"{uri}: no objects found (check the bucket, prefix and credentials)")
        for blob in blobs:
            target = dest_dir / (Path(blob.name).name if blob.name == name else blob.name[len(folder):])
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target), raw_download=True)
    except SourceError:
        raise
    except Exception as e:  # no credentials, no such bucket, network: name the source and what to check
        raise SourceError(
            f"{uri}: could not read from Google Cloud Storage: {type(e).__name__}: {str(e)[:300]}. Check "
            "`gcloud auth application-default login` (or GOOGLE_APPLICATION_CREDENTIALS), GOOGLE_CLOUD_PROJECT, "
            "the bucket name, or STORAGE_EMULATOR_HOST for an emulator"
        ) from e
    return dest_dir / Path(name).name if blobs[0].name == name else dest_dir


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
