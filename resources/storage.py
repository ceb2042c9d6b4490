"""ArtifactStore: the interface assets write artifacts through, over a local folder or `gs://bucket/prefix`.

Assets write artifacts here and return URIs plus metrics, never model objects. Every write is atomic:
LocalStore (resources/local_store.py) renames a temp file in the same folder over the target; on GcsStore
(resources/gcs_store.py) an object only becomes visible once its upload completes. Multi-file artifacts
(adapters, reports) write their marker file last. What does not depend on the backend (serialising,
the chunked line writer, parsing reads, folder uploads) lives here once; a backend supplies the primitives.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import dagster as dg
import orjson
from pydantic import Field

CHUNK_BYTES = 1 << 20  # write_lines buffers this much before each write; local reads buffer as much
Writer = Callable[[BinaryIO], str]  # writes an object's bytes to the open file, returns their sha256


class _ChunkSink:
    """Hashes and writes chunks of lines, in order, on one helper thread; at most a few chunks wait.

    Leaving the `with` block waits for every chunk; an error on either side stops both, and the
    caller's error wins (the temp file is then discarded by `_write_file`).
    """

    _IN_FLIGHT = 4

    def __init__(self, fh) -> None:
        self._fh = fh
        self._digest = hashlib.sha256()
        self._pending: list = []
        self.hexdigest = ""

    def __enter__(self) -> _ChunkSink:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        return self

    def put(self, chunk: list[bytes]) -> None:
        if len(self._pending) >= self._IN_FLIGHT:
            self._pending.pop(0).result()  # back-pressure, and the writer's error surfaces here
        self._pending.append(self._pool.submit(self._write, b"\n".join(chunk) + b"\n"))

    def _write(self, data: bytes) -> None:
        self._digest.update(data)
        self._fh.write(data)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for future in self._pending:
                    future.result()
                self.hexdigest = self._digest.hexdigest()
        finally:  # on any error, chunks not yet started are dropped; the file is discarded anyway
            self._pool.shutdown(wait=True, cancel_futures=True)


class StoreError(RuntimeError):
    """A store operation failed; the message names the URI."""


class ArtifactStore(dg.ConfigurableResource):
    """Where datasets, adapters, reports and cards live. Backends: LocalStore (a folder) and GcsStore
    (`gs://bucket/prefix`); `resources.store_for` picks one from the root."""

    root: str = Field(description="Local folder or gs://bucket/prefix")

    @property
    def is_gcs(self) -> bool:
        """Whether objects live in Cloud Storage (where Vertex AI can read them by URI)."""
        return False

    # -- backend primitives --------------------------------------------------------------------------
    @abc.abstractmethod
    def uri(self, key: str) -> str:
        """Where `key` lives: an absolute path, or gs://bucket/prefix/key."""

    @abc.abstractmethod
    def _write_file(self, key: str, writer: Writer, content_type: str) -> str:
        """Write `key` atomically and return its URI. `writer(fh)` writes the bytes and returns their sha256,
        which is stored with the object (GCS metadata, a local extended attribute) so `sha256()` need not
        read it back."""

    @abc.abstractmethod
    def _open_lines(self, key: str) -> BinaryIO:
        """A binary stream of the object's bytes, read line by line by iter_lines."""

    @abc.abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError naming it when it is missing."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored at `key`."""

    @abc.abstractmethod
    def sha256(self, key: str) -> str:
        """The sha256 of an object's bytes, as write_lines / write_jsonl returned it when it was written."""

    @abc.abstractmethod
    def create_exclusive(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        """Write `key` only if nothing is stored there: True when this call created it, False when another
        object was there. Of concurrent callers, in any process on any machine sharing the store, exactly one
        gets True, and a reader sees the whole object or none (the lease of resources/store_lease.py).
        An object already holding exactly `data` also gives True: that is what a retried write whose first
        attempt landed finds, so callers make `data` unique (a lease entry holds a random token)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at `key`, if there is one."""

    @abc.abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]:
        """All keys under `prefix`, relative to the store root, sorted."""

    @abc.abstractmethod
    def download_dir(self, key_prefix: str, local_dir: str | os.PathLike) -> Path:
        """Materialise a folder of the store at `local_dir`."""

    def _leftovers(self, prefix: str) -> list[str]:
        """What interrupted writes leave under `prefix` that `list_keys` does not show (a folder's temp files)."""
        return []

    def prune(self, prefix: str, keep: Iterable[str]) -> list[str]:
        """Remove everything under the folder `prefix` except the keys in `keep` and what lies under them,
        temp files of interrupted writes included; returns the keys removed. What publishes a set by a
        pointer calls this once the pointer is swapped, so a killed run's files do not stay forever."""
        prefix, keep = prefix.strip("/"), [k.strip("/") for k in keep]
        stale = [key for key in self.list_keys(prefix) + self._leftovers(prefix)
                 if not any(key == k or key.startswith(f"{k}/") for k in keep)]
        for key in stale:
            self.delete(key)
        return sorted(stale)

    # -- writes --------------------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        def write(fh) -> str:
            fh.write(data)
            return hashlib.sha256(data).hexdigest()

        return self._write_file(key.strip("/"), write, content_type)

    def write_text(self, key: str, text: str, content_type: str = "text/plain") -> str:
        return self.write_bytes(key, text.encode("utf-8"), content_type)

    def write_json(self, key: str, obj) -> str:
        return self.write_text(key, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", "application/json")

    def write_jsonl(self, key: str, rows: Iterable[dict]) -> tuple[str, int, str]:
        """Stream rows to `key`; returns (uri, row count, sha256 of the bytes written).

        Key order is kept as given: it is part of the data (the router completion is a JSON dump of it).
        """
        return self.write_lines(key, (orjson.dumps(row, default=str) for row in rows))

    def write_lines(self, key: str, lines: Iterable[bytes]) -> tuple[str, int, str]:
        """Stream already-serialised JSON lines (no trailing newline) to `key`, as write_jsonl does.

        Lines are joined into ~1 MiB chunks; hashing and writing a chunk happen on a helper thread (both
        release the GIL), so they overlap with the Python work that produces the next lines.
        """
        count, sha = 0, ""

        def write(fh) -> str:
            nonlocal count, sha
            with _ChunkSink(fh) as sink:
                chunk: list[bytes] = []
                size = 0
                for line in lines:
                    chunk.append(line)
                    size += len(line) + 1
                    count += 1
                    if size >= CHUNK_BYTES:
                        sink.put(chunk)
                        chunk, size = [], 0
                if chunk:
                    sink.put(chunk)
            sha = sink.hexdigest
            return sha

        uri = self._write_file(key.strip("/"), write, "application/jsonl")
        return uri, count, sha

    def upload_dir(self, local_dir: str | os.PathLike, key_prefix: str, last: str | None = None) -> str:
        """Copy a folder under `key_prefix`; `last` (a file name) is written after all others as the marker."""
        local_dir = Path(local_dir)
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        marker = [p for p in files if p.name == last]
        self._upload_files(local_dir, [p for p in files if p.name != last], key_prefix.strip("/"))
        self._upload_files(local_dir, marker, key_prefix.strip("/"))
        return self.uri(key_prefix)

    def _upload_files(self, local_dir: Path, files: list[Path], key_prefix: str) -> None:
        """Copy `files` (under `local_dir`) to `key_prefix`, in any order; a backend may copy them in parallel."""
        for path in files:
            self.write_bytes(f"{key_prefix}/{path.relative_to(local_dir).as_posix()}", path.read_bytes())

    # -- reads ---------------------------------------------------------------------------------------
    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def read_json(self, key: str):
        return json.loads(self.read_text(key))

    def iter_jsonl(self, key: str) -> Iterator[dict]:
        for line_no, line in self.iter_lines(key):
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise StoreError(f"{self.uri(key)} line {line_no}: invalid JSON ({e})") from None

    def iter_lines(self, key: str) -> Iterator[tuple[int, bytes]]:
        """(line number, raw line without newline) for every non-blank line of a JSONL object."""
        with self._open_lines(key) as stream:
            for line_no, line in enumerate(stream, start=1):
                if line[-1:] == b"\n":
                    line = line[:-2] if line[-2:-1] == b"\r" else line[:-1]
                if line and not line.isspace():
                    yield line_no, line

    def read_jsonl(self, key: str) -> list[dict]:
        return list(self.iter_jsonl(key))

    def local_dir(self, key_prefix: str, cache_dir: str | os.PathLike) -> Path:
        """A local folder with the prefix's files: a copy under `cache_dir` (LocalStore gives its own folder)."""
        return self.download_dir(key_prefix, Path(cache_dir) / key_prefix.strip("/"))
