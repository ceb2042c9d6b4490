"""A loopback stand-in for the Vertex AI `tuningJobs` REST API, for tests of the real SDK.

google-cloud-aiplatform 2.7.0's tuning client talks REST to `/v1beta1/projects/<p>/locations/<l>/tuningJobs`
(create: POST with the TuningJob JSON; get: GET `.../tuningJobs/<id>`; list: GET with `filter`, `pageSize`,
`pageToken`; cancel: POST `...:cancel`), asking for `$alt=json;enum-encoding=int`. This server answers those
calls from memory so `aiplatform.init(api_endpoint="http://127.0.0.1:<port>", api_transport="rest")` works
unchanged. Tests drive jobs through states (`set_state`, `succeed`, `fail`, `script`), count creates, can
make a create "lose" its response after the job exists (the crash-after-submit case), and can make a create
take `create_delay_s` before the job exists, as the real service's create call takes a moment: the window in
which a second submitter that listed no job would create another.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackServer

# google.cloud.aiplatform_v1beta1.types.JobState numbers (the wire form under enum-encoding=int).
JOB_STATES = {
    "JOB_STATE_UNSPECIFIED": 0, "JOB_STATE_QUEUED": 1, "JOB_STATE_PENDING": 2, "JOB_STATE_RUNNING": 3,
    "JOB_STATE_SUCCEEDED": 4, "JOB_STATE_FAILED": 5, "JOB_STATE_CANCELLING": 6, "JOB_STATE_CANCELLED": 7,
    "JOB_STATE_PAUSED": 8, "JOB_STATE_EXPIRED": 9, "JOB_STATE_UPDATING": 10, "JOB_STATE_PARTIALLY_SUCCEEDED": 11,
}
# What a succeeded SFT job reports about its data (int64 fields, sent as strings in JSON).
DEFAULT_DATA_STATS = {"tuningDatasetExampleCount": 64, "tuningStepCount": 24, "totalBillableTokenCount": 18432,
                      "totalTuningCharacterCount": 73728, "totalBillableCharacterCount": 73728,
                      "totalTruncatedExampleCount": 0}
_ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
_PATH = re.compile(r"^/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
                   r"/tuningJobs(?:/(?P<job>[^/:]+))?(?P<verb>:cancel)?$")
_LABEL_TERM = re.compile(r'^labels\.(?P<key>[a-z][a-z0-9_-]*)\s*=\s*"(?P<value>[^"]*)"$')
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 503: "UNAVAILABLE"}


class ApiError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class FakeVertexServer(LoopbackServer):
    """In-memory `tuningJobs` service on 127.0.0.1; use as a context manager.

    filter_mode: "honour" applies `labels.k="v" AND ...` filters (anything else is a 400, as an unknown
    filter is on the real service); "ignore" returns every job; "reject" answers any filter with a 400.
    """

    thread_name = "fake-vertex"

    def __init__(self, *, page_size: int = 2, filter_mode: str = "honour"):
        if filter_mode not in ("honour", "ignore", "reject"):
            raise ValueError(f"filter_mode={filter_mode!r}: expected honour, ignore or reject")
        super().__init__()
        self.page_size, self.filter_mode = page_size, filter_mode
        self.create_calls = 0
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query)
        self.created_bodies: list[dict] = []
        self.lose_next_create_responses = 0  # job is stored, then the client gets a 503
        self.create_delay_s = 0.0  # a create waits this long (other requests are served) before the job exists
        self._jobs: dict[str, dict] = {}
        self._scripts: dict[str, list[tuple[str, str | None]]] = {}
        self._lock = threading.Lock()
        self._next_id = 7_000_000_000_000_000_001
        self._last_time = datetime(2026, 1, 1, tzinfo=UTC)

    # -- test controls ----------------------------------------------------------------------------------
    def jobs(self) -> list[dict]:
        with self._lock:
            return [json.loads(json.dumps(job)) for job in self._jobs.values()]

    def job(self, name: str) -> dict:
        with self._lock:
            return json.loads(json.dumps(self._jobs[self._full_name(name)]))

    def set_state(self, name: str, state: str, *, error_message: str | None = None, error_code: int = 3,
                  tuned_model: dict | None = None) -> None:
        if state not in JOB_STATES:
            raise ValueError(f"unknown job state {state!r}")
        with self._lock:
            self._apply(self._jobs[self._full_name(name)], state, error_message, error_code, tuned_model)

    def fail(self, name: str, message: str, code: int = 3) -> None:
        self.set_state(name, "JOB_STATE_FAILED", error_message=message, error_code=code)

    def succeed(self, name: str, *, files: dict[str, bytes] | None = None, deploy: bool = True,
                data_stats: dict[str, int] | None = None) -> None:
        """Mark a job SUCCEEDED, naming its tuned model and (unless `deploy` is False) the endpoint Vertex
        deployed it to, as `tunedModel.model` / `tunedModel.endpoint`; `files` are written under its outputUri
        on GCS (google-cloud-storage, so STORAGE_EMULATOR_HOST points it at the emulator). `data_stats`
        (camelCase SupervisedTuningDataStats fields) become `tuningDataStats.supervisedTuningDataStats`,
        int64s as JSON strings like the real service sends them; None sends DEFAULT_DATA_STATS, {} none."""
        job = self.job(name)
        if files:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            bucket_name, _, prefix = job["outputUri"][len("gs://"):].partition("/")
            bucket = storage.Client(project="fake-vertex", credentials=AnonymousCredentials()).bucket(bucket_name)
            for rel, data in files.items():
                bucket.blob(f"{prefix.rstrip('/')}/{rel}".lstrip("/")).upload_from_string(data)
        base, job_id = job["name"].split("/tuningJobs/")
        tuned = {"model": f"{base}/models/{job_id}@1"}
        if deploy:
            tuned["endpoint"] = f"{base}/endpoints/{job_id}"
        stats = DEFAULT_DATA_STATS if data_stats is None else data_stats
        with self._lock:
            stored = self._jobs[self._full_name(name)]
            stored.setdefault("startTime", self._tick())
            if stats:
                stored["tuningDataStats"] = {"supervisedTuningDataStats": {k: str(v) for k, v in stats.items()}}
            self._apply(stored, "JOB_STATE_SUCCEEDED", None, 3, tuned)

    def script(self, name: str, steps: list[tuple[str, str | None]]) -> None:
        """Each later GET of `name` first moves it to the next (state, error message) of `steps`."""
        with self._lock:
            self._scripts[self._full_name(name)] = list(steps)

    # -- HTTP -------------------------------------------------------------------------------------------
    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((handler.command, parts.path, query))
        int_enums = "enum-encoding=int" in query.get("$alt", "")
        try:
            match = _PATH.match(parts.path)
            if not match:
                raise ApiError(404, f"no such method: {handler.command} {parts.path}")
            parent = f"projects/{match['project']}/locations/{match['location']}"
            if handler.command == "POST" and match["job"] and match["verb"]:
                status, body = 200, self._cancel(f"{parent}/tuningJobs/{match['job']}")
            elif handler.command == "POST" and not match["job"]:
                status, body = self._create(parent, json.loads(raw or b"{}"))
            elif handler.command == "GET" and match["job"] and not match["verb"]:
                status, body = 200, self._get(f"{parent}/tuningJobs/{match['job']}")
            elif handler.command == "GET" and not match["job"]:
                status, body = 200, self._list(parent, query)
            else:
                raise ApiError(404, f"no such method: {handler.command} {parts.path}")
            body = self._encode(body, int_enums)
        except ApiError as e:
            status = e.code
            body = {"error": {"code": e.code, "message": e.message, "status": _STATUS_NAMES.get(e.code, "UNKNOWN")}}
        except (ValueError, KeyError) as e:
            status, body = 400, {"error": {"code": 400, "message": f"bad request: {e}", "status": "INVALID_ARGUMENT"}}
        self.send_json(handler, status, body)

    def _create(self, parent: str, body: dict) -> tuple[int, dict]:
        spec = body.get("supervisedTuningSpec") or {}
        if not body.get("baseModel"):
            raise ApiError(400, "TuningJob.base_model is required.")
        for field in ("trainingDatasetUri", "validationDatasetUri"):
            uri = spec.get(field)
            if (field == "trainingDatasetUri" or uri) and not str(uri or "").startswith("gs://"):
                raise ApiError(400, f"supervised_tuning_spec.{field} must be a gs:// URI, got {uri!r}.")
        for key, value in (body.get("labels") or {}).items():
            if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
                raise ApiError(400, f"Invalid label {key}={value!r}: keys [a-z][a-z0-9_-]{{0,62}}, "
                                    "values [a-z0-9_-]{0,63}.")
        if self.create_delay_s:
            time.sleep(self.create_delay_s)
        with self._lock:
            self.create_calls += 1
            self.created_bodies.append(json.loads(json.dumps(body)))
            name = f"{parent}/tuningJobs/{self._next_id}"
            self._next_id += 1
            job = dict(body, name=name, state="JOB_STATE_PENDING", createTime=self._tick(), updateTime=self._tick())
            self._jobs[name] = job
            if self.lose_next_create_responses > 0:
                self.lose_next_create_responses -= 1
                raise ApiError(503, "The service is currently unavailable (response lost after the job was created).")
            return 200, json.loads(json.dumps(job))

    def _get(self, name: str) -> dict:
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                raise ApiError(404, f"TuningJob {name} not found.")
            steps = self._scripts.get(name)
            if steps:
                state, message = steps.pop(0)
                self._apply(job, state, message, 3, None)
            return json.loads(json.dumps(job))

    def _list(self, parent: str, query: dict) -> dict:
        wanted = self._parse_filter(query.get("filter", ""))
        with self._lock:
            found = [j for j in self._jobs.values() if j["name"].startswith(parent + "/")
                     and all((j.get("labels") or {}).get(k) == v for k, v in wanted.items())]
            start = int(query.get("pageToken") or 0)
            size = int(query.get("pageSize") or 0) or self.page_size
            page = [json.loads(json.dumps(j)) for j in found[start:start + size]]
        body: dict = {"tuningJobs": page} if page else {}
        if start + size < len(found):
            body["nextPageToken"] = str(start + size)
        return body

    def _cancel(self, name: str) -> dict:
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                raise ApiError(404, f"TuningJob {name} not found.")
            if job["state"] not in _ENDED:
                self._apply(job, "JOB_STATE_CANCELLED", "Job cancelled by user.", 1, None)
            return {}

    def _parse_filter(self, text: str) -> dict[str, str]:
        text = text.strip()
        if not text or self.filter_mode == "ignore":
            return {}
        if self.filter_mode == "reject":
            raise ApiError(400, f"Unsupported filter: {text}")
        wanted = {}
        for term in re.split(r"\s+AND\s+", text):
            match = _LABEL_TERM.match(term.strip())
            if not match:
                raise ApiError(400, f"Unsupported filter term: {term!r}")
            wanted[match["key"]] = match["value"]
        return wanted

    # -- helpers (called with the lock held) ------------------------------------------------------------
    def _full_name(self, name: str) -> str:
        if name in self._jobs:
            return name
        matches = [n for n in self._jobs if n.rsplit("/", 1)[-1] == name]
        if len(matches) != 1:
            raise KeyError(f"no single tuning job named {name!r} (have {sorted(self._jobs)})")
        return matches[0]

    def _apply(self, job: dict, state: str, message: str | None, code: int, tuned_model: dict | None) -> None:
        job["state"] = state
        job["updateTime"] = self._tick()
        if state == "JOB_STATE_RUNNING":
            job.setdefault("startTime", job["updateTime"])
        if state in _ENDED:
            job["endTime"] = job["updateTime"]
        if message is not None:
            job["error"] = {"code": code, "message": message}
        if tuned_model:
            job["tunedModel"] = tuned_model

    def _tick(self) -> str:
        now = max(datetime.now(UTC), self._last_time + timedelta(microseconds=1))
        self._last_time = now
        return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @staticmethod
    def _encode(body: dict, int_enums: bool) -> dict:
        if not int_enums:
            return body

        def fix(job: dict) -> dict:
            return dict(job, state=JOB_STATES[job["state"]]) if isinstance(job.get("state"), str) else job

        if "tuningJobs" in body:
            return dict(body, tuningJobs=[fix(j) for j in body["tuningJobs"]])
        return fix(body)
