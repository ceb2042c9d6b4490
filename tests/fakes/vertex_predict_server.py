"""A loopback stand-in for the Vertex AI `endpoints` REST API (online prediction), for tests of the real SDK.

google-cloud-aiplatform 2.7.0 over REST (`aiplatform.init(api_endpoint="http://127.0.0.1:<port>",
api_transport="rest")`) makes these calls for `aiplatform.Endpoint(name).predict(instances=[...])`:

- `Endpoint(name)` only builds the resource name. The first `predict` (it asks `dedicated_endpoint_enabled`),
  or any attribute that needs the resource (`list_models()`, `traffic_split`, ...), is
  GET `/v1/projects/<p>/locations/<l>/endpoints/<id>` (EndpointService.GetEndpoint), answered with the
  Endpoint JSON including `deployedModels` and `trafficSplit`. The SDK fetches again before every call
  while the Endpoint it holds has no `createTime`, so the fake always sends one.
- `predict` is POST `/v1/projects/<p>/locations/<l>/endpoints/<id>:predict` (PredictionService.Predict),
  body `{"instances": [...]}` (+ `"parameters"` when given; instance numbers are protobuf Values, so an int
  64 arrives as 64.0), answered with `{"predictions": [...], "deployedModelId", "model", "modelVersionId",
  "modelDisplayName"}`.

Both are asked for with `?$alt=json;enum-encoding=int`. An unknown endpoint is a 404 with Google's error
body (`{"error": {"code": 404, "message": ..., "status": "NOT_FOUND"}}`), which the SDK raises as
`google.api_core.exceptions.NotFound`. Predictions come from a callable the test passes (prompt -> text, or
any JSON value to send as the prediction); every request is recorded (method, path, query, JSON body).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackServer

_PATH = re.compile(r"^/(?P<version>v1|v1beta1)/(?P<name>projects/[^/]+/locations/[^/]+/endpoints/[^/:]+)"
                   r"(?::(?P<verb>[A-Za-z]+))?$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 500: "INTERNAL", 503: "UNAVAILABLE"}
_TIME = "2026-01-01T00:00:00.000000Z"


class ApiError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class FakeVertexPredictServer(LoopbackServer):
    """In-memory Vertex AI endpoints on 127.0.0.1 (use as a context manager).

    `predict(prompt)` answers each instance's `prompt`; `add_endpoint` registers an endpoint with one
    deployed model (and, optionally, its own `predict`, e.g. a base model's endpoint). `requests` holds every call as {"method", "path", "query", "body"}; `predict_bodies`
    the JSON bodies of the predict calls.
    """

    thread_name = "fake-vertex-predict"

    def __init__(self, predict: Callable[[str], Any]):
        super().__init__()
        self.predict = predict
        self.requests: list[dict] = []
        self._endpoints: dict[str, dict] = {}
        self._predictors: dict[str, Callable[[str], Any]] = {}
        self._lock = threading.Lock()

    # -- test controls ----------------------------------------------------------------------------------
    def add_endpoint(self, endpoint_id: str, *, project: str = "p", location: str = "us-central1",
                     deployed_model_id: str = "1234567890", model_id: str = "9876543210",
                     model_version_id: str = "1", display_name: str | None = None,
                     predict: Callable[[str], Any] | None = None) -> str:
        """Register an endpoint serving one deployed model; returns its resource name."""
        name = f"projects/{project}/locations/{location}/endpoints/{endpoint_id}"
        model = f"projects/{project}/locations/{location}/models/{model_id}"
        with self._lock:
            if predict is not None:
                self._predictors[name] = predict
            self._endpoints[name] = {
                "name": name, "displayName": display_name or f"endpoint-{endpoint_id}",
                "deployedModels": [{
                    "id": deployed_model_id, "model": model, "modelVersionId": model_version_id,
                    "displayName": f"model-{model_id}", "createTime": _TIME,
                    "dedicatedResources": {"machineSpec": {"machineType": "g2-standard-12",
                                                           "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1},
                                           "minReplicaCount": 1, "maxReplicaCount": 1},
                }],
                "trafficSplit": {deployed_model_id: 100},
                "etag": "AMEw9yN", "createTime": _TIME, "updateTime": _TIME,
            }
        return name

    @property
    def predict_bodies(self) -> list[dict]:
        with self._lock:
            return [r["body"] for r in self.requests if r["path"].endswith(":predict")]

    # -- HTTP -------------------------------------------------------------------------------------------
    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self.requests.append({"method": handler.command, "path": parts.path, "query": query, "body": body})
        try:
            match = _PATH.match(parts.path)
            if not match:
                raise ApiError(404, f"no such method: {handler.command} {parts.path}")
            if handler.command == "GET" and not match["verb"]:
                status, answer = 200, self._get(match["name"])
            elif handler.command == "POST" and match["verb"] == "predict":
                status, answer = 200, self._predict(match["name"], body)
            else:
                raise ApiError(404, f"no such method: {handler.command} {parts.path}")
        except ApiError as e:
            status = e.code
            answer = {"error": {"code": e.code, "message": e.message, "status": _STATUS_NAMES.get(e.code, "UNKNOWN")}}
        self.send_json(handler, status, answer)

    def _lookup(self, name: str) -> dict:
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise ApiError(404, f"Endpoint `{name}` not found.")
            return json.loads(json.dumps(endpoint))

    def _get(self, name: str) -> dict:
        return self._lookup(name)

    def _predict(self, name: str, body: Any) -> dict:
        endpoint = self._lookup(name)
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list) or not body["instances"]:
            raise ApiError(400, "Invalid JSON payload: `instances` must be a non-empty list.")
        predictions = []
        for i, instance in enumerate(body["instances"]):
            if not isinstance(instance, dict) or not isinstance(instance.get("prompt"), str):
                raise ApiError(400, f"instances[{i}]: the serving container expects an object with a `prompt` string")
            predictions.append(self._predictors.get(name, self.predict)(instance["prompt"]))
        deployed = endpoint["deployedModels"][0]
        return {"predictions": predictions, "deployedModelId": deployed["id"], "model": deployed["model"],
                "modelDisplayName": deployed["displayName"], "modelVersionId": deployed["modelVersionId"]}
