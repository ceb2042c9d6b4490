"""A loopback server speaking the slice of the OpenAI API that `OpenAICompatibleServer` calls.

GET /v1/models lists the served names; POST /v1/completions and /v1/chat/completions answer from
`answer(model, prompt_or_messages)`. Every request body is kept in `requests` for assertions, so a
test can check what vLLM or Ollama would have been sent (model name, stop token, rendered prompt).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from tests.fakes.loopback import LoopbackServer


class FakeOpenAIServer(LoopbackServer):
    thread_name = "fake-openai"

    def __init__(self, models: list[str], answer: Callable[[str, object], str], *, answer_as: str | None = None):
        super().__init__()
        self.models = models
        self.answer = answer
        self.answer_as = answer_as  # a server that answers under another name than asked
        self.requests: list[dict] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"{self.endpoint}/v1"

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.command == "GET":
            if handler.path.rstrip("/") != "/v1/models":
                return self.send_json(handler, 404, {"error": {"message": f"no route {handler.path}"}})
            return self.send_json(handler, 200, {"object": "list",
                                                 "data": [{"id": m, "object": "model"} for m in self.models]})
        body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length", 0))))
        with self._lock:
            self.requests.append({"path": handler.path, "body": body,
                                  "authorization": handler.headers.get("Authorization")})
        if body.get("model") not in self.models:
            return self.send_json(handler, 404, {"error": {"message": f"model {body.get('model')} not found"}})
        chat = handler.path.endswith("/chat/completions")
        text = self.answer(body["model"], body["messages"] if chat else body["prompt"])
        choice = {"index": 0, "finish_reason": "stop"}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        self.send_json(handler, 200, {"id": "cmpl-1", "model": self.answer_as or body["model"], "choices": [choice],
                                      "usage": {"completion_tokens": len(text.split())}})
