"""LocalStore: the ArtifactStore on a local folder (the default environment).

A write goes to a temp file beside its target and is renamed over it, so a reader sees the old bytes or
the new, never part of a write. The digest of what was written is recorded in an extended attribute, so
`sha256()` need not read a file back while it is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from resources.storage import CHUNK_BYTES, ArtifactStore, Writer

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


class LocalStore(ArtifactStore):
    """Artifacts as files under the `root` folder; a key is a path relative to it."""

    def _local(self, key: str) -> Path:
        return Path(self.root) / key

    def _file(self, key: str) -> Path:
        path = self._local(key)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist in the store (materialise the upstream asset first)")
        return path

    def _folder(self, key_prefix: str) -> Path:
        path = self._local(key_prefix.strip("/"))
        if not path.is_dir():
            raise FileNotFoundError(f"{path} does not exist in the store")
        return path

    def uri(self, key: str) -> str:
        return str(self._local(key.strip("/")).resolve())

    def _write_file(self, key: str, writer: Writer, content_type: str) -> str:
        """A temp file in the target's folder, fsynced, its digest recorded, then renamed over the target."""
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

    def create_exclusive(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        """A complete temp file hard-linked to the target: link() fails when the target exists, atomically,
        so a reader never sees a partial object and of racing processes one wins."""
        target = self._local(key.strip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                _record_sha256(fh.fileno(), hashlib.sha256(data).hexdigest())
            os.link(tmp, target)
            return True
        except FileExistsError:
            return target.read_bytes() == data
        finally:
            Path(tmp).unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        self._local(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._local(key).is_file()

    def sha256(self, key: str) -> str:
        with self._file(key).open("rb") as fh:
            return _recorded_sha256(fh.fileno()) or hashlib.file_digest(fh, "sha256").hexdigest()

    def read_bytes(self, key: str) -> bytes:
        return self._file(key).read_bytes()

    def _open_lines(self, key: str) -> BinaryIO:
        # large reads: every read releases the GIL, and the store's writer thread may take it each time
        return self._file(key).open("rb", buffering=CHUNK_BYTES)

    def list_keys(self, prefix: str = "") -> list[str]:
        prefix = prefix.strip("/")
        base = self._local(prefix) if prefix else Path(self.root)
        if not base.is_dir():
            return [prefix] if base.is_file() else []
        # os.walk reads directory entries without a stat per file (a sensor lists adapters/ every tick)
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            keys.extend(f"{rel}/{name}" if rel != "." else name for name in files if not name.endswith(".tmp"))
        return sorted(keys)

    def _leftovers(self, prefix: str) -> list[str]:
        """Temp files of writes killed before their rename (`.<name>.<random>.tmp`), and a killed
        create_exclusive's."""
        base = self._local(prefix)
        return sorted(os.path.relpath(os.path.join(d, name), self.root).replace(os.sep, "/")
                      for d, _dirs, files in os.walk(base) for name in files if name.endswith(".tmp"))

    def prune(self, prefix: str, keep) -> list[str]:
        """As ArtifactStore.prune; folders left empty go too."""
        removed = super().prune(prefix, keep)
        base = self._local(prefix.strip("/"))
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda entry: -len(entry[0])):
            if dirpath != str(base) and not os.listdir(dirpath):
                os.rmdir(dirpath)
        return removed

    def download_dir(self, key_prefix: str, local_dir: str | os.PathLike) -> Path:
        """A plain copy of the store folder."""
        local_dir = Path(local_dir)
        shutil.copytree(self._folder(key_prefix), local_dir, dirs_exist_ok=True)
        return local_dir

    def local_dir(self, key_prefix: str, cache_dir: str | os.PathLike) -> Path:
        """The store folder itself: nothing to copy."""
        return self._folder(key_prefix)
