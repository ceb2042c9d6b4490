"""The lifecycle every loopback fake server shares: a threaded HTTP server on 127.0.0.1, a free port, a
context manager, and every request handed to the subclass's `_dispatch(handler)`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    thread_name = "fake-server"

    def __init__(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0  # any free port; set it before start() to serve where an earlier server was
        self._thread: threading.Thread | None = None

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    @staticmethod
    def send_json(handler: BaseHTTPRequestHandler, status: int, body) -> None:
        """Answer the request with `body` as JSON."""
        payload = json.dumps(body).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server naming)
                server._dispatch(self)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The server's base URL (the `api_endpoint` to give `aiplatform.init`)."""
        return f"http://127.0.0.1:{self._httpd.server_port}"
