"""Loopback inference servers that misbehave on cue, for the retry and resume tests.

`Faults` scripts what happens to each answerable request (an OpenAI completion, a Vertex predict call) in the
order they arrive: "503"; "429:<s>" (Retry-After in seconds); "429-date:<s>" (Retry-After as an HTTP-date <s>
seconds ahead); "hang:<s>" (the answer comes <s> seconds late, after the client gave up); anything else, or
past the end of the script, is answered normally. `die_after=n` SIGKILLs the serving process right after its
n-th normal answer: a server crashing mid-run. Only a server in its own process may die, so that mode exists
only through `spawn()`, which runs `python -m tests.fakes.faulty_server SPEC.json` on a chosen port.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.vertex_predict_server import FakeVertexPredictServer

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Faults:
    def __init__(self, script: list[str] = (), *, die_after: int | None = None, own_process: bool = False):
        if die_after is not None and not own_process:
            raise ValueError("die_after kills the serving process: run the server with spawn()")
        self.script, self.die_after = list(script), die_after
        self.arrived = self.answered = 0
        self.sent = Counter()  # faults answered, by kind
        self._lock = threading.Lock()

    def intercept(self, handler: BaseHTTPRequestHandler) -> bool:
        """Answer the request with its scripted fault (True), or leave it to the real handler (False)."""
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        handler.rfile = io.BytesIO(body)  # the real handler reads it again
        with self._lock:
            action = self.script[self.arrived] if self.arrived < len(self.script) else "ok"
            self.arrived += 1
        kind, _, arg = action.partition(":")
        if kind == "hang":
            time.sleep(float(arg))
            return False
        if kind not in ("503", "429", "429-date"):
            return False
        with self._lock:
            self.sent[kind] += 1
        headers = {}
        if kind == "429":
            headers["Retry-After"] = arg
        elif kind == "429-date":
            headers["Retry-After"] = formatdate(time.time() + float(arg), usegmt=True)
        status = 503 if kind == "503" else 429
        _send(handler, status, {"error": {"code": status, "message": f"scripted {action}",
                                          "status": "UNAVAILABLE" if status == 503 else "RESOURCE_EXHAUSTED"}}, headers)
        return True

    def answered_one(self) -> None:
        with self._lock:
            self.answered += 1
            dying = self.die_after is not None and self.answered >= self.die_after
        if dying:
            os.kill(os.getpid(), signal.SIGKILL)


def _send(handler: BaseHTTPRequestHandler, status: int, body: dict, headers: dict[str, str]) -> None:
    payload = json.dumps(body).encode("utf-8")
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", "Content-Length": str(len(payload)), **headers}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(payload)


def _faulty(base):
    """`base` (a fake server class) with `Faults` applied to its answerable requests."""

    class Faulty(base):
        def __init__(self, *args, faults: Faults, **kwargs):
            super().__init__(*args, **kwargs)
            self.faults = faults

        def _answerable(self, handler) -> bool:
            return handler.command == "POST"

        def _dispatch(self, handler):
            answerable = self._answerable(handler)
            if answerable and self.faults.intercept(handler):
                return
            try:
                super()._dispatch(handler)
            except (BrokenPipeError, ConnectionResetError):  # a late answer to a client that timed out
                return
            if answerable:
                self.faults.answered_one()

    Faulty.__name__ = f"Faulty{base.__name__.removeprefix('Fake')}"
    return Faulty


FaultyOpenAIServer = _faulty(FakeOpenAIServer)
FaultyVertexPredictServer = _faulty(FakeVertexPredictServer)


def answer_by_query(answers: dict[str, str]):
    """The gold completion of the benchmark row whose user query is inside the prompt (or last message)."""

    def answer(prompt) -> str:
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        return next(c for q, c in answers.items() if q in text)

    return answer


def _serve(spec: dict) -> None:
    faults = Faults(spec.get("script", []), die_after=spec.get("die_after"), own_process=True)
    answer = answer_by_query(spec["answers"])
    if spec["kind"] == "openai":
        server = FaultyOpenAIServer(spec["models"], lambda model, prompt: answer(prompt), faults=faults)
    else:
        server = FaultyVertexPredictServer(answer, faults=faults)
    server.port = spec.get("port", 0)
    server.start()
    if spec["kind"] == "vertex":
        server.add_endpoint(spec["endpoint_id"])
    print(f"port {server._httpd.server_port}", flush=True)
    threading.Event().wait()  # serve until killed


@contextlib.contextmanager
def spawn(spec: dict, workdir: Path):
    """Run a faulty server in its own process; yields (process, port). The process is killed afterwards if
    it is still alive."""
    path = workdir / "faulty_server.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.faulty_server", str(path)], cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"the faulty server did not start (exit {proc.wait(timeout=10)})")
        yield proc, int(line.split()[1])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


if __name__ == "__main__":
    _serve(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
