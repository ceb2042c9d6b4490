"""ArtifactStore: one interface over a local folder (default) and GCS (`gs://bucket/prefix`).

Assets write artifacts here and return URIs plus metrics, never model objects. Every write is atomic:
locally a temp file in the same folder is renamed over the target; on GCS an object only becomes
visible once its upload completes. Multi-file artifacts (adapters, reports) write their marker file last.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import dagster as dg
import orjson
from pydantic import Field

_CHUNK_BYTES = 1 << 20  # write_lines buffers this much before each write
SHA256_METADATA = "coursegpt-sha256"  # GCS object metadata: the sha256 of the bytes uploaded with it


_SHA256_XATTR = "user.coursegpt.sha256"  # local files: "<sha256> <size> <mtime_ns> <inode>" of the bytes


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"


def _record_sha256(fd: int, sha: str) -> None:
    """Remember a written file's digest beside its size, mtime and inode; skipped where the filesystem
    has no user extended attributes (then sha256() hashes the bytes)."""
    try:
        os.setxattr(fd, _SHA256_XATTR, f"{sha} {_stamp(os.fstat(fd))}".encode())
    except (AttributeError, OSError):
        pass


def _recorded_sha256(fd: int) -> str | None:
    """The recorded digest if the file still has the size, mtime and inode it was written with.

    The store never writes in place (a new version is a new inode), and copies get new inodes. What
    would slip through is another program rewriting the file in place to the same size within the
    filesystem's timestamp granularity (a few ms)."""
    try:
        sha, _, stamp = os.getxattr(fd, _SHA256_XATTR).decode().partition(" ")
    except (AttributeError, OSError, UnicodeDecodeError):
        return None
    return sha if len(sha) == 64 and stamp == _stamp(os.fstat(fd)) else None


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
    """Where datasets, adapters, reports and cards live: a local folder or `gs://bucket/prefix`."""

    root: str = Field(description="Local folder or gs://bucket/prefix")
    gcs_project: str | None = Field(default=None, description="GCP project for the GCS client (GCS only)")
    retry_deadline_s: float = Field(
        default=120.0, gt=0,
        description="GCS only: how long a call retries transient errors (refused connection, 5xx, 429) before failing",
    )

    # -- addressing ----------------------------------------------------------------------------------
    @property
    def is_gcs(self) -> bool:
        return self.root.startswith("gs://")

    def _bucket_and_prefix(self) -> tuple[str, str]:
        bucket, _, prefix = self.root[len("gs://"):].partition("/")
        if not bucket:
            raise StoreError(f"{self.root}: expected gs://<bucket>/<prefix>")
        return bucket, prefix.strip("/")

    def _blob_name(self, key: str) -> str:
        _, prefix = self._bucket_and_prefix()
        return f"{prefix}/{key}" if prefix else key

    def _local(self, key: str) -> Path:
        return Path(self.root) / key

    def uri(self, key: str) -> str:
        key = key.strip("/")
        if self.is_gcs:
            bucket, _ = self._bucket_and_prefix()
            return f"gs://{bucket}/{self._blob_name(key)}"
        return str(self._local(key).resolve())

    def _bucket(self):
        # dagster-gcp's GCSResource builds the client; google-cloud-storage honours STORAGE_EMULATOR_HOST.
        from dagster_gcp import GCSResource

        bucket, _ = self._bucket_and_prefix()
        return GCSResource(project=self.gcs_project).get_client().bucket(bucket)

    def _retry(self):
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_deadline_s)

    # -- writes --------------------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        def write(fh) -> str:
            fh.write(data)
            return hashlib.sha256(data).hexdigest()

        return self._write_file(key, write, content_type)

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
                    if size >= _CHUNK_BYTES:
                        sink.put(chunk)
                        chunk, size = [], 0
                if chunk:
                    sink.put(chunk)
            sha = sink.hexdigest
            return sha

        uri = self._write_file(key, write, "application/jsonl")
        return uri, count, sha

    def _write_file(self, key: str, writer, content_type: str) -> str:
        """Write atomically; `writer(fh)` writes the bytes and returns their sha256, which is stored with
        the object (GCS metadata, a local extended attribute) so `sha256()` need not read it back."""
        key = key.strip("/")
        if self.is_gcs:
            with tempfile.TemporaryFile() as fh:
                sha = writer(fh)
                blob = self._bucket().blob(self._blob_name(key))
                blob.metadata = {SHA256_METADATA: sha}  # in the same upload as the bytes
                fh.seek(0)
                try:
                    blob.upload_from_file(fh, content_type=content_type, rewind=True, retry=self._retry())
                except Exception as e:  # network errors: nothing visible was written
                    raise StoreError(
                        f"upload to {self.uri(key)} failed (transient errors are retried for up to {self.retry_deadline_s:g} s); "
                        f"the previous version, if any, is unchanged: {e}"
                    ) from e
            return self.uri(key)
        target = self._local(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                sha = writer(fh)
                fh.flush()
                os.fsync(fh.fileno())
                _record_sha256(fh.fileno(), sha)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.uri(key)

    def upload_dir(self, local_dir: str | os.PathLike, key_prefix: str, last: str | None = None) -> str:
        """Copy a folder under `key_prefix`; `last` (a file name) is written after all others as the marker."""
        local_dir = Path(local_dir)
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == last)
        for path in files:
            self.write_bytes(f"{key_prefix.strip('/')}/{path.relative_to(local_dir).as_posix()}", path.read_bytes())
        return self.uri(key_prefix)

    def delete(self, key: str) -> None:
        if self.is_gcs:
            blob = self._bucket().blob(self._blob_name(key))
            if blob.exists():
                blob.delete()
        else:
            self._local(key).unlink(missing_ok=True)

    # -- reads ---------------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        if self.is_gcs:
            return self._bucket().blob(self._blob_name(key)).exists()
        return self._local(key).is_file()

    def sha256(self, key: str) -> str:
        """The sha256 of an object's bytes, as write_lines / write_jsonl returned it when it was written."""
        if self.is_gcs:
            blob = self._bucket().get_blob(self._blob_name(key), retry=self._retry())
            if blob is None:
                raise FileNotFoundError(f"{self.uri(key)} does not exist in the store")
            recorded = (blob.metadata or {}).get(SHA256_METADATA)
            # written by another tool: no recorded digest, so hash the bytes themselves
            return recorded or hashlib.sha256(self.read_bytes(key)).hexdigest()
        path = self._local(key)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist in the store (materialise the upstream asset first)")
        with path.open("rb") as fh:
            return _recorded_sha256(fh.fileno()) or hashlib.file_digest(fh, "sha256").hexdigest()

    def read_bytes(self, key: str) -> bytes:
        if self.is_gcs:
            from google.api_core.exceptions import NotFound

            try:
                return self._bucket().blob(self._blob_name(key)).download_as_bytes(retry=self._retry())
            except NotFound:
                raise FileNotFoundError(f"{self.uri(key)} does not exist in the store") from None
            except Exception as e:  # network errors after retries
                raise StoreError(f"download of {self.uri(key)} failed (transient errors are retried for up to "
                                 f"{self.retry_deadline_s:g} s): {e}") from e
        path = self._local(key)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist in the store (materialise the upstream asset first)")
        return path.read_bytes()

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
        if self.is_gcs:
            stream = io.BytesIO(self.read_bytes(key))
        else:
            path = self._local(key)
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist in the store (materialise the upstream asset first)")
            # large reads: every read releases the GIL, and the store's writer thread may take it each time
            stream = path.open("rb", buffering=_CHUNK_BYTES)
        with stream:
            for line_no, line in enumerate(stream, start=1):
                if line[-1:] == b"\n":
                    line = line[:-2] if line[-2:-1] == b"\r" else line[:-1]
                if line and not line.isspace():
                    yield line_no, line

    def read_jsonl(self, key: str) -> list[dict]:
        return list(self.iter_jsonl(key))

    def list_keys(self, prefix: str = "") -> list[str]:
        """All keys under `prefix`, relative to the store root, sorted."""
        prefix = prefix.strip("/")
        if self.is_gcs:
            _, root_prefix = self._bucket_and_prefix()
            full = self._blob_name(prefix) if prefix else (f"{root_prefix}/" if root_prefix else "")
            strip = len(root_prefix) + 1 if root_prefix else 0
            return sorted(b.name[strip:] for b in self._bucket().client.list_blobs(self._bucket(), prefix=full))
        base = self._local(prefix) if prefix else Path(self.root)
        if not base.is_dir():
            return [prefix] if base.is_file() else []
        # os.walk reads directory entries without a stat per file (a sensor lists adapters/ every tick)
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            keys.extend(f"{rel}/{name}" if rel != "." else name for name in files if not name.endswith(".tmp"))
        return sorted(keys)

    def download_dir(self, key_prefix: str, local_dir: str | os.PathLike) -> Path:
        """Materialise a folder of the store locally (a no-op copy for a local store)."""
        local_dir = Path(local_dir)
        key_prefix = key_prefix.strip("/")
        if not self.is_gcs:
            src = self._local(key_prefix)
            if not src.is_dir():
                raise FileNotFoundError(f"{src} does not exist in the store")
            shutil.copytree(src, local_dir, dirs_exist_ok=True)
            return local_dir
        keys = self.list_keys(key_prefix)
        if not keys:
            raise FileNotFoundError(f"{self.uri(key_prefix)} holds no objects")
        # into a sibling temp folder, then one rename: a concurrent reader sees the old copy or the whole new
        # one, never a half-downloaded folder, and files deleted from the store do not linger
        local_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{local_dir.name}.", dir=local_dir.parent))
        try:
            for key in keys:
                dest = staging / key[len(key_prefix) + 1:]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(self.read_bytes(key))
            old = None
            if local_dir.exists():
                old = local_dir.with_name(f".{local_dir.name}.old-{os.getpid()}-{id(staging)}")
                os.replace(local_dir, old)
            os.replace(staging, local_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return local_dir

    def local_dir(self, key_prefix: str, cache_dir: str | os.PathLike) -> Path:
        """A local folder with the prefix's files: the store folder itself locally, a cached copy for GCS."""
        if not self.is_gcs:
            path = self._local(key_prefix.strip("/"))
            if not path.is_dir():
                raise FileNotFoundError(f"{path} does not exist in the store")
            return path
        return self.download_dir(key_prefix, Path(cache_dir) / key_prefix.strip("/"))
