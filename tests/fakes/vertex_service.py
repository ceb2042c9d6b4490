"""The two Vertex AI stand-ins behind one URL, as a user's one `COURSEGPT_VERTEX_API_ENDPOINT` serves both.

The tuning resource (`tuningJobs`) and the prediction resource (`endpoints`) read the same setting, so a
process configured by environment variables alone talks to both at one host. This server routes each
request by its path to a `FakeVertexServer` (`tuning`) or a `FakeVertexPredictServer` (`prediction`),
whose controls and records the test uses directly. `succeed` also deploys the tuned model: the endpoint
the job reports (`tunedModel.endpoint`) is then served, as a Vertex PEFT job deploys its tuned model.
"""

from __future__ import annotations

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.loopback import LoopbackServer
from tests.fakes.vertex_predict_server import FakeVertexPredictServer
from tests.fakes.vertex_server import FakeVertexServer


class FakeVertexService(LoopbackServer):
    """`tuningJobs` and `endpoints` on one loopback port; use as a context manager."""

    thread_name = "fake-vertex-service"

    def __init__(self, predict: Callable[[str], Any], **tuning_options):
        super().__init__()
        self.tuning = FakeVertexServer(**tuning_options)
        self.prediction = FakeVertexPredictServer(predict)

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        (self.prediction if "/endpoints/" in path else self.tuning)._dispatch(handler)

    def succeed(self, name: str, *, files: dict[str, bytes]) -> str:
        """The job SUCCEEDED with `files` under its outputUri and its tuned model deployed; returns the
        endpoint's resource name."""
        self.tuning.succeed(name, files=files)
        endpoint = self.tuning.job(name)["tunedModel"]["endpoint"]
        _, project, _, location, _, endpoint_id = endpoint.split("/")
        self.prediction.add_endpoint(endpoint_id, project=project, location=location)
        return endpoint
