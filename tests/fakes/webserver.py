"""`dagster-webserver` on `workspace.yaml` in a subprocess on a free loopback port, for the UI tests.

The module-scoped `dagster_webserver` fixture builds the subprocess environment itself (an isolated
COURSEGPT_HOME, and a DAGSTER_HOME with an empty `dagster.yaml`) instead of relying on the autouse
`isolated_home` fixture, which is function-scoped and only patches this process. It waits until
`/server_info` answers and the code location has loaded, and kills the process group at teardown
(the webserver starts its own `dagster api grpc` code server as a child).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.gcs_emulator import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WEBSERVER_BIN = PROJECT_ROOT / ".venv" / "bin" / "dagster-webserver"
LOCATION_NAME = "coursegpt_forge"  # workspace.yaml
START_TIMEOUT_S = 120.0
#: variables from the caller's environment that must not leak into the webserver's
_SCRUBBED = ("COURSEGPT_ENV", "COURSEGPT_STORE", "COURSEGPT_ROUTER_SOURCE", "COURSEGPT_MATH_SOURCE",
             "COURSEGPT_CODE_SOURCE", "COURSEGPT_PLAN", "DAGSTER_HOME", "COURSEGPT_HOME")

WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } }
    ... on PythonError { message } } }
"""


@dataclass
class Webserver:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60.0) -> dict:
        """POST /graphql; returns `data`, failing on transport or GraphQL errors."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = json.loads(resp.read())
        assert not payload.get("errors"), payload["errors"]
        return payload["data"]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"


def webserver_env(home: Path) -> dict[str, str]:
    """The subprocess environment: this one, less the project's variables, plus an isolated home."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("")
    env.update(COURSEGPT_HOME=str(home), DAGSTER_HOME=str(dagster_home), PYTHONUNBUFFERED="1")
    return env


def _wait_ready(server: Webserver) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/server_info", timeout=5) as resp:
                if resp.status == 200:
                    ws = server.graphql(WORKSPACE_QUERY)["workspaceOrError"]
                    entries = {e["name"]: e for e in ws.get("locationEntries", [])}
                    entry = entries.get(LOCATION_NAME)
                    if entry and entry["loadStatus"] == "LOADED":
                        loaded = entry["locationOrLoadError"]
                        if loaded["__typename"] != "RepositoryLocation":
                            raise RuntimeError(f"{LOCATION_NAME} failed to load: {loaded}")
                        return
                    last_error = f"workspace: {ws}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as exc:
            last_error = repr(exc)
        time.sleep(0.25)
    raise RuntimeError(f"dagster-webserver not ready within {START_TIMEOUT_S:.0f} s ({last_error}):\n"
                       f"{server.log_tail()}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group this module started (webserver + code server)."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    # the grpc code server may outlive the webserver by a moment; make sure the group is gone
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def launch(args: list[str], home: Path, env: dict[str, str]) -> Webserver:
    """Start a Dagster UI process (`dagster-webserver` or `dagster dev`) in its own process group on a free
    port, and wait until its code location has loaded; the caller stops it with `stop`."""
    port = free_port()
    log_path = home / "webserver.log"
    cmd = [*args, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = Webserver(url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path)
    try:
        _wait_ready(server)
    except RuntimeError as exc:
        stop(proc)
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope="module")
def dagster_webserver(tmp_path_factory) -> Webserver:
    """A running `dagster-webserver -w workspace.yaml` with an isolated home, for the whole module."""
    if not WEBSERVER_BIN.exists():
        pytest.fail(f"{WEBSERVER_BIN} is missing; run `make install`")
    home = tmp_path_factory.mktemp("webserver_home")
    server = launch([str(WEBSERVER_BIN)], home, webserver_env(home))
    try:
        yield server
    finally:
        stop(server.proc)
