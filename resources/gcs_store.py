"""GcsStore: the ArtifactStore on `gs://bucket/prefix` (the gcp environment; Vertex AI reads from it).

An object only becomes visible once its upload completes, so a failed write leaves the previous version.
Every object carries the sha256 of its bytes as metadata, uploaded with them. The Google libraries are
imported where a call needs them, so loading the definitions does not import them.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from pydantic import Field

from resources.storage import ArtifactStore, StoreError, Writer

SHA256_METADATA = "coursegpt-sha256"  # GCS object metadata: the sha256 of the bytes uploaded with it


class GcsStore(ArtifactStore):
    """Artifacts as objects under `gs://bucket/prefix`; a key is an object name relative to the prefix."""

    gcs_project: str | None = Field(default=None, description="GCP project for the GCS client")
    retry_deadline_s: float = Field(
        default=120.0, gt=0,
        description="How long a call retries transient errors (refused connection, 5xx, 429) before failing",
    )

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
        # dagster-gcp's GCSResource builds the client; google-cloud-storage honours STORAGE_EMULATOR_HOST.
        from dagster_gcp import GCSResource

        bucket, _ = self._bucket_and_prefix()
        return GCSResource(project=self.gcs_project).get_client().bucket(bucket)

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
        return io.BytesIO(self.read_bytes(key))

    def list_keys(self, prefix: str = "") -> list[str]:
        prefix = prefix.strip("/")
        _, root_prefix = self._bucket_and_prefix()
        full = self._blob_name(prefix) if prefix else (f"{root_prefix}/" if root_prefix else "")
        strip = len(root_prefix) + 1 if root_prefix else 0
        return sorted(b.name[strip:] for b in self._bucket().client.list_blobs(self._bucket(), prefix=full))

    def download_dir(self, key_prefix: str, local_dir: str | os.PathLike) -> Path:
        """Into a sibling staging folder, then one rename: a concurrent reader sees the old copy or the whole
        new one, never a half-downloaded folder, and files deleted from the store do not linger."""
        local_dir = Path(local_dir)
        key_prefix = key_prefix.strip("/")
        keys = self.list_keys(key_prefix)
        if not keys:
            raise FileNotFoundError(f"{self.uri(key_prefix)} holds no objects")
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
