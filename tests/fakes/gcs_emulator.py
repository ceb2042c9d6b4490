"""The `gcp-storage-emulator` server in a subprocess on a free loopback port, for GCS-backed tests.

It runs out of process and persists to a data folder, so a test can kill it in the middle of a write
(as a network or server failure would) and start it again on the same port with the objects it had.
The `gcs_emulator` fixture also points the process at it: `STORAGE_EMULATOR_HOST` (google-cloud-storage
then uses anonymous credentials) and `COURSEGPT_STORE=gs://<bucket>/<prefix>`.

The emulator ignores the `ifGenerationMatch` precondition of uploads, which real GCS honours (HTTP 412
when the object's generation differs; 0 means "no object yet"), and serves the current bytes to a read of
an older `generation` (GCS: 404 once it is overwritten). `honour_generation_match()` adds both behaviours, so `GcsStore.create_exclusive` (and the submission lease built on it) can be tested: this module
run as a script starts the emulator with it, and an in-process emulator can call it first. The emulator
serves one request at a time, so the check and the write cannot interleave with another upload.
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


def honour_generation_match() -> None:
    """Make this process's emulator answer an upload whose `ifGenerationMatch` does not hold with 412."""
    from http import HTTPStatus

    from gcp_storage_emulator import server
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    insert = objects.insert
    if getattr(insert, "honours_generation_match", False):
        return

    def insert_if_generation_matches(request, response, storage, *args, **kwargs):
        wanted = (request.query.get("ifGenerationMatch") or [None])[0]
        if wanted is not None:
            data = request.data if isinstance(request.data, dict) else {}
            name = (request.query.get("name") or [None])[0] or (data.get("meta") or data).get("name")
            try:
                current = str(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
            except NotFound:
                current = "0"
            if current != wanted:
                message = f"At least one of the pre-conditions you specified did not hold (generation {current})."
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": message,
                                         "errors": [{"reason": "conditionNotMet", "message": message}]}})
                return None
        return insert(request, response, storage, *args, **kwargs)

    download = objects.download

    def download_of_generation(request, response, storage, *args, **kwargs):
        """A read of `?generation=N` once the object has a newer one: 404, as GCS answers in a bucket
        without object versioning (the old generation is gone)."""
        wanted = (request.query.get("generation") or [None])[0]
        if wanted is not None:
            try:
                current = str(storage.get_file_obj(request.params["bucket_name"],
                                                   request.params["object_id"])["generation"])
            except NotFound:
                current = None
            if current != wanted:
                response.status = HTTPStatus.NOT_FOUND
                response.json({"error": {"code": 404, "message": f"No such object generation {wanted}."}})
                return None
        return download(request, response, storage, *args, **kwargs)

    insert_if_generation_matches.honours_generation_match = True
    objects.insert = insert_if_generation_matches  # the router's fallback for uploads without /upload
    objects.download = download_of_generation  # `get` with alt=media calls it by name
    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is insert:
                handlers[method] = insert_if_generation_matches
            elif handler is download:
                handlers[method] = download_of_generation


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
        cmd = [sys.executable, __file__, "--data-dir", str(self.data_dir), "start",
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


if __name__ == "__main__":  # the emulator's own command line, with ifGenerationMatch honoured
    from gcp_storage_emulator.__main__ import main

    honour_generation_match()
    main(sys.argv[1:])
