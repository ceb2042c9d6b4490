"""A loopback server speaking the slice of the OpenAI API that `OpenAICompatibleServer` calls.

GET /v1/models lists the served names; POST /v1/completions and /v1/chat/completions answer from
`answer(model, prompt_or_messages)`. Every request body is kept in `requests` for assertions, so a
test can check what vLLM or Ollama would have been sent (model name, stop token, rendered prompt).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAIServer:
    def __init__(self, models: list[str], answer: Callable[[str, object], str], *, answer_as: str | None = None):
        self.models = models
        self.answer = answer
        self.answer_as = answer_as  # a server that answers under another name than asked
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") != "/v1/models":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with fake._lock:
                    fake.requests.append({"path": self.path, "body": body,
                                          "authorization": self.headers.get("Authorization")})
                if body.get("model") not in fake.models:
                    return self._send(404, {"error": {"message": f"model {body.get('model')} not found"}})
                chat = self.path.endswith("/chat/completions")
                text = fake.answer(body["model"], body["messages"] if chat else body["prompt"])
                choice = {"index": 0, "finish_reason": "stop"}
                choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                self._send(200, {"id": "cmpl-1", "model": fake.answer_as or body["model"], "choices": [choice],
                                 "usage": {"completion_tokens": len(text.split())}})

        return Handler
