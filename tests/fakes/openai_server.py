"""A loopback server speaking the slice of the OpenAI API that `OpenAICompatibleServer` calls.

GET /v1/models lists the served names; POST /v1/completions and /v1/chat/completions answer from
`answer(model, prompt_or_messages)`. Every request body is kept in `requests` for assertions, so a
test can check what vLLM or Ollama would have been sent (model name, stop token, rendered prompt).

A `/v1/completions` request with `echo: true` and `logprobs` is answered as OpenAI's API answers it for
scoring: the prompt echoed as `text` with `logprobs.tokens`, `token_logprobs` and `text_offset`. The tokens
are `ECHO_TOKEN` pieces (a word with its trailing white space, or a run of white space) and each one's
log-probability is `token_logprob(model, token)` (default `echo_rule`: deterministic, per model); the first
token has none (null), as a real server reports it.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from tests.fakes.loopback import LoopbackServer

ECHO_TOKEN = re.compile(r"\S+\s*|\s+")


def echo_rule(model: str, token: str) -> float:
    """A token's log-probability under `model`: -log(2 + len(token)), scaled by a per-model factor in [0.5, 1)
    (from the name's bytes), so two served names give two different perplexities."""
    scale = 0.5 + (sum(model.encode()) % 50) / 100
    return -scale * math.log(2 + len(token))


def echo_tokens(text: str) -> list[tuple[str, int]]:
    """(token, character offset) of the fake's tokenisation of `text`."""
    return [(m.group(), m.start()) for m in ECHO_TOKEN.finditer(text)]


class FakeOpenAIServer(LoopbackServer):
    thread_name = "fake-openai"

    def __init__(self, models: list[str], answer: Callable[[str, object], str], *, answer_as: str | None = None,
                 token_logprob: Callable[[str, str], float] = echo_rule):
        super().__init__()
        self.models = models
        self.answer = answer
        self.token_logprob = token_logprob
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
        if not chat and body.get("echo") and body.get("logprobs"):
            return self.send_json(handler, 200, self._echo(body))
        text = self.answer(body["model"], body["messages"] if chat else body["prompt"])
        choice = {"index": 0, "finish_reason": "stop"}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        self.send_json(handler, 200, {"id": "cmpl-1", "model": self.answer_as or body["model"], "choices": [choice],
                                      "usage": {"completion_tokens": len(text.split())}})

    def _echo(self, body: dict) -> dict:
        """The scoring answer: the prompt echoed with every token's log-probability (max_tokens 0: nothing more)."""
        pieces = echo_tokens(body["prompt"])
        logprobs = {"tokens": [t for t, _ in pieces], "text_offset": [o for _, o in pieces],
                    "token_logprobs": [None, *(self.token_logprob(body["model"], t) for t, _ in pieces[1:])],
                    "top_logprobs": None}
        choice = {"index": 0, "text": body["prompt"], "logprobs": logprobs, "finish_reason": "length"}
        return {"id": "cmpl-echo", "model": body["model"], "choices": [choice],
                "usage": {"prompt_tokens": len(pieces), "completion_tokens": 0}}
