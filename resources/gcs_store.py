"""GcsStore: the ArtifactStore on `gs://bucket/prefix` (the gcp environment; Vertex AI reads from it).

An object only becomes visible once its upload completes, so a failed write leaves the previous version.
Every object carries the sha256 of its bytes as metadata, uploaded with them. One `storage.Client` serves
a resource instance (its connection pool is reused); folders move with `transfer_manager`, several
objects at a time. The Google libraries are imported where a call needs them, so loading the
definitions does not import them.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pydantic import Field, PrivateAttr

from resources.storage import ArtifactStore, StoreError, Writer

SHA256_METADATA = "coursegpt-sha256"  # GCS object metadata: the sha256 of the bytes uploaded with it
READ_CHUNK_BYTES = 8 << 20  # one ranged GET per this much of a streamed object: memory holds one
TRANSFER_WORKERS = 8  # objects of one folder copied at a time (threads: the client is shared)


class GcsStore(ArtifactStore):
    """Artifacts as objects under `gs://bucket/prefix`; a key is an object name relative to the prefix."""

    gcs_project: str | None = Field(default=None, description="GCP project for the GCS client")
    retry_deadline_s: float = Field(
        default=120.0, gt=0,
        description="How long a call retries transient errors (refused connection, 5xx, 429) before failing",
    )
    _bucket_handle = PrivateAttr(default=None)  # built on first use, then reused by every call

    @property
    def is_gcs(self) -> bool:
        return True

    # -- addressing ----------------------------------------------------------------------------------
    def _bucket_and_prefix(self) -> tuple[str, str]:
        bucket, _, prefix = self.root[len("gs://"):].partition("/")
        if not bucket:
            raise StoreError(f"{self.root}: expected gs://<bucket>/<prefix>")
        return bucket, prefix.strip("/")

    def _blob_name(self, key: str) -> str:
        _, prefix = self._bucket_and_prefix()
        return f"{prefix}/{key}" if prefix else key

    def uri(self, key: str) -> str:
        bucket, _ = self._bucket_and_prefix()
        return f"gs://{bucket}/{self._blob_name(key.strip('/'))}"

    def _bucket(self):
        """The bucket, on the one client of this resource instance (credentials and connections are set up
        once, not per call). dagster-gcp's GCSResource builds it; it honours STORAGE_EMULATOR_HOST."""
        if self._bucket_handle is None:
            from dagster_gcp import GCSResource

            bucket, _ = self._bucket_and_prefix()
            self._bucket_handle = GCSResource(project=self.gcs_project).get_client().bucket(bucket)
        return self._bucket_handle

    def _retry(self):
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_deadline_s)

    # -- writes --------------------------------------------------------------------------------------
    def _write_file(self, key: str, writer: Writer, content_type: str) -> str:
        """Spooled to a temp file, then one upload with the digest as metadata."""
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

    def create_exclusive(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        """One upload with `ifGenerationMatch=0`: GCS refuses it (412) when the object exists, so of racing
        writers exactly one succeeds. A retried upload whose first attempt landed meets its own object and
        gets 412 too; reading the bytes back tells that case apart."""
        from google.api_core.exceptions import PreconditionFailed

        key = key.strip("/")
        blob = self._bucket().blob(self._blob_name(key))
        blob.metadata = {SHA256_METADATA: hashlib.sha256(data).hexdigest()}
        try:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=0, retry=self._retry())
        except PreconditionFailed:
            try:
                return self.read_bytes(key) == data
            except FileNotFoundError:  # created, then deleted again before we looked: not ours
                return False
        except Exception as e:
            raise StoreError(f"exclusive create of {self.uri(key)} failed (transient errors are retried for up to "
                             f"{self.retry_deadline_s:g} s): {e}") from e
        return True

    def delete(self, key: str) -> None:
        blob = self._bucket().blob(self._blob_name(key))
        if blob.exists():
            blob.delete()

    # -- reads ---------------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self._bucket().blob(self._blob_name(key)).exists()

    def sha256(self, key: str) -> str:
        blob = self._bucket().get_blob(self._blob_name(key), retry=self._retry())
        if blob is None:
            raise FileNotFoundError(f"{self.uri(key)} does not exist in the store")
        recorded = (blob.metadata or {}).get(SHA256_METADATA)
        # written by another tool: no recorded digest, so hash the bytes themselves
        return recorded or hashlib.sha256(self.read_bytes(key)).hexdigest()

    def read_bytes(self, key: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            return self._bucket().blob(self._blob_name(key)).download_as_bytes(retry=self._retry())
        except NotFound:
            raise FileNotFoundError(f"{self.uri(key)} does not exist in the store") from None
        except Exception as e:  # network errors after retries
            raise StoreError(f"download of {self.uri(key)} failed (transient errors are retried for up to "
                             f"{self.retry_deadline_s:g} s): {e}") from e

    def _open_lines(self, key: str) -> BinaryIO:
        """The object streamed in ranged reads of READ_CHUNK_BYTES, all of the generation that was current
        when it was opened (an overwrite meanwhile cannot mix two versions into one read)."""
        blob = self._bucket().get_blob(self._blob_name(key), retry=self._retry())
        if blob is None:
            raise FileNotFoundError(f"{self.uri(key)} does not exist in the store")
        # BlobReader has no readline of its own: buffered, lines are split in C, not byte by byte
        return io.BufferedReader(blob.open("rb", chunk_size=READ_CHUNK_BYTES, retry=self._retry()),
                                 buffer_size=READ_CHUNK_BYTES)

    def iter_lines(self, key: str) -> Iterator[tuple[int, bytes]]:
        """As ArtifactStore.iter_lines, streamed; a download that fails after retries names the object."""
        from google.api_core.exceptions import GoogleAPICallError, NotFound

        try:
            yield from super().iter_lines(key)
        except NotFound:  # the generation being read was replaced or deleted: never mix two versions
            raise StoreError(f"{self.uri(key)} changed while it was being read (the generation opened is gone); "
                             "read it again, once whatever rewrites it has finished") from None
        except GoogleAPICallError as e:
            raise StoreError(f"download of {self.uri(key)} failed (transient errors are retried for up to "
                             f"{self.retry_deadline_s:g} s): {e}") from e

    def list_keys(self, prefix: str = "") -> list[str]:
        """Keys under the folder `prefix`: listed with a trailing slash, so `adapters/p/v1` does not also
        list (and download) `adapters/p/v10/`."""
        prefix = prefix.strip("/")
        _, root_prefix = self._bucket_and_prefix()
        full = f"{self._blob_name(prefix)}/" if prefix else (f"{root_prefix}/" if root_prefix else "")
        strip = len(root_prefix) + 1 if root_prefix else 0
        bucket = self._bucket()
        return sorted(b.name[strip:] for b in bucket.client.list_blobs(bucket, prefix=full, retry=self._retry()))

    def _upload_files(self, local_dir: Path, files: list[Path], key_prefix: str) -> None:
        """transfer_manager.upload_many, each object with its sha256 in the same upload as its bytes."""
        from google.cloud.storage import transfer_manager

        pairs = []
        for path in files:
            blob = self._bucket().blob(self._blob_name(f"{key_prefix}/{path.relative_to(local_dir).as_posix()}"))
            with path.open("rb") as fh:
                blob.metadata = {SHA256_METADATA: hashlib.file_digest(fh, "sha256").hexdigest()}
            pairs.append((str(path), blob))
        try:
            transfer_manager.upload_many(pairs, upload_kwargs={"retry": self._retry()}, max_workers=TRANSFER_WORKERS,
                                         worker_type=transfer_manager.THREAD, raise_exception=True)
        except Exception as e:
            raise StoreError(f"upload of {local_dir} to {self.uri(key_prefix)} failed (transient errors are retried "
                             f"for up to {self.retry_deadline_s:g} s): {e}") from e

    def download_dir(self, key_prefix: str, local_dir: str | os.PathLike) -> Path:
        """Downloaded (transfer_manager) into a fresh sibling folder, then put in place by one atomic step:
        `local_dir` is a symlink to the folder of the newest complete download, and a new download swaps
        the link with a rename. A concurrent reader sees the old copy or the whole new one, never a missing
        or half-downloaded folder, and files deleted from the store do not linger."""
        from google.cloud.storage import transfer_manager

        local_dir = Path(local_dir)
        key_prefix = key_prefix.strip("/")
        keys = self.list_keys(key_prefix)
        if not keys:
            raise FileNotFoundError(f"{self.uri(key_prefix)} holds no objects")
        local_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{local_dir.name}.", dir=local_dir.parent))
        link = staging.with_name(f"{staging.name}.link")
        try:
            names = [key[len(key_prefix) + 1:] for key in keys]
            try:
                results = transfer_manager.download_many_to_path(
                    self._bucket(), names, destination_directory=str(staging),
                    blob_name_prefix=f"{self._blob_name(key_prefix)}/", download_kwargs={"retry": self._retry()},
                    max_workers=TRANSFER_WORKERS, worker_type=transfer_manager.THREAD, raise_exception=True)
            except Exception as e:
                raise StoreError(f"download of {self.uri(key_prefix)} failed (transient errors are retried for up "
                                 f"to {self.retry_deadline_s:g} s): {e}") from e
            if skipped := [str(r) for r in results if r is not None]:  # names that would leave the folder
                raise StoreError(f"download of {self.uri(key_prefix)}: {len(skipped)} objects not copied: {skipped[0]}")
            os.symlink(staging.name, link)  # relative: the cache folder can move as a whole
            old = os.readlink(local_dir) if local_dir.is_symlink() else None
            if local_dir.exists() and old is None:  # a real folder, from before downloads were links
                shutil.rmtree(local_dir)
            os.replace(link, local_dir)  # the one step that swaps the copies
        except BaseException:
            link.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if old and Path(old).name != staging.name:
            shutil.rmtree(local_dir.parent / Path(old).name, ignore_errors=True)
        return local_dir
