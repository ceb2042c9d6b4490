"""The `gcp-storage-emulator` server in a subprocess on a free loopback port, for GCS-backed tests.

It runs out of process and persists to a data folder, so a test can kill it in the middle of a write
(as a network or server failure would) and start it again on the same port with the objects it had.
The `gcs_emulator` fixture also points the process at it: `STORAGE_EMULATOR_HOST` (google-cloud-storage
then uses anonymous credentials) and `COURSEGPT_STORE=gs://<bucket>/<prefix>`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BUCKET = "coursegpt-test"
PREFIX = "forge"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GcsEmulator:
    """One emulator process; `stop()`/`kill()` and `start()` keep the port, the bucket and its objects."""

    def __init__(self, data_dir: Path, bucket: str = BUCKET, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.port = port or free_port()
        self.log_path = self.data_dir.parent / f"gcs-emulator-{self.port}.log"
        self._proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        """The value for STORAGE_EMULATOR_HOST."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> GcsEmulator:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "gcp_storage_emulator", "--data-dir", str(self.data_dir), "start",
               "--host", "127.0.0.1", "--port", str(self.port), "--default-bucket", self.bucket, "--quiet"]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        url = f"{self.host}/storage/v1/b/{self.bucket}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited with {self._proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gcp-storage-emulator did not answer {url} within {START_TIMEOUT_S:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM)."""
        if self.running:
            self._proc.terminate()
            self._proc.wait(timeout=10)

    def kill(self) -> None:
        """A hard stop (SIGKILL): whatever request is in flight gets a broken or refused connection."""
        if self.running:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def restart(self) -> GcsEmulator:
        self.stop()
        return self.start()

    def client(self):
        """A google-cloud-storage client for the emulator (independent of the code under test)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="coursegpt-test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.host})

    def object_names(self, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.client().list_blobs(self.bucket, prefix=prefix))

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


@pytest.fixture
def gcs_emulator(tmp_path, monkeypatch):
    """A running emulator with an empty bucket; the process's GCS client and COURSEGPT_STORE point at it."""
    emulator = GcsEmulator(tmp_path / "gcs-data")
    with emulator:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.host)
        monkeypatch.setenv("COURSEGPT_STORE", f"gs://{emulator.bucket}/{PREFIX}")
        # never probe a GCE metadata server for a project or credentials
        monkeypatch.setenv("NO_GCE_CHECK", "True")
        monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
        monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
        yield emulator


@pytest.fixture
def gcs_store(gcs_emulator):
    """The ArtifactStore the settings resolve to (gs://<bucket>/<prefix> on the emulator)."""
    from coursegpt_assets.core import settings
    from resources import resources_for

    store = resources_for(settings.current())["store"]
    assert store.is_gcs, store.root
    return store
