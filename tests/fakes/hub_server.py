"""A loopback Hugging Face Hub: the endpoints `HfApi.create_repo` + `upload_folder` call, nothing else.

huggingface_hub 2.x sends, in order: POST /api/repos/create, GET /api/models/<repo>/tree/<rev> (the
remote file list, when `delete_patterns` is given), POST /api/validate-yaml (when README.md is
in the commit), POST /api/models/<repo>/preupload/<rev>, then POST /api/models/<repo>/commit/<rev> with
an NDJSON body (a header line, then one line per file). The preupload answer decides how each file
travels; this fake answers "regular" for every file, so the commit line carries the file's bytes
(base64) and the test can compare exactly what landed. Real LFS/Xet transfers are out of scope.
Any other request is answered 404 and recorded in `unexpected`, so a test can assert none happened.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

_REPO = r"(?P<repo>[\w.\-]+/[\w.\-]+)"
_PREUPLOAD = re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/?]+)$")
_COMMIT = re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/?]+)$")
_REPO_INFO = re.compile(rf"^/api/models/{_REPO}$")
_DATASET_INFO = re.compile(rf"^/api/datasets/{_REPO}(?:/revision/(?P<rev>[^/?]+))?$")
_TREE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/?]+)$")


@dataclass
class FakeRepo:
    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)


class FakeHub:
    """Start with `with FakeHub(token="hf_...") as hub:`; point HfApi at `hub.endpoint`."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, FakeRepo] = {}
        self.datasets: dict[str, dict[str, str]] = {}  # dataset id -> {revision (branch, tag or commit): commit}
        self.calls: list[tuple[str, str]] = []
        self.unexpected: list[tuple[str, str]] = []
        self.auth_failures = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "FakeHub is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- request handling (called from the server thread) ---------------------------------------------
    def authorised(self, header: str | None) -> bool:
        return self.token is None or header == f"Bearer {self.token}"

    def create_repo(self, payload: dict) -> tuple[int, dict]:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        url = {"url": f"{self.endpoint}/{repo_id}", "name": repo_id}
        with self._lock:
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", **url}
            self.repos[repo_id] = FakeRepo(repo_id, private=payload.get("visibility") == "private")
        return 200, url

    def preupload(self, repo_id: str, payload: dict) -> tuple[int, dict]:
        if repo_id not in self.repos:
            return 404, {"error": f"Repository {repo_id} not found"}
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
            for f in payload.get("files", [])
        ]
        return 200, {"files": files, "commitOid": None}

    def commit(self, repo_id: str, body: bytes) -> tuple[int, dict]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"error": f"Repository {repo_id} not found"}
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((ln["value"] for ln in lines if ln["key"] == "header"), {})
        landed: dict[str, bytes] = {}
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                content = value["content"]
                landed[value["path"]] = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
            elif line["key"] in ("deletedFile", "deletedFolder"):
                landed.pop(value["path"], None)
                repo.files.pop(value["path"], None)
            elif line["key"] != "header":
                return 400, {"error": f"fake hub does not accept '{line['key']}' operations"}
        oid = hashlib.sha1(body).hexdigest()
        with self._lock:
            repo.files.update(landed)
            repo.commits.append({"oid": oid, "summary": header.get("summary"), "files": sorted(landed)})
        return 200, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, payload: dict | list) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400 and "error" in payload:
            self.send_header("X-Error-Message", payload["error"])
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        self.fake.calls.append(("GET", path))
        d = _DATASET_INFO.match(path)
        if d and d["repo"] in self.fake.datasets:
            commit = self.fake.datasets[d["repo"]].get(urllib.parse.unquote(d["rev"] or "main"))
            if commit:
                return self._reply(200, {"id": d["repo"], "sha": commit, "private": False})
            return self._reply(404, {"error": f"Invalid rev id: {d['rev']}"})
        m = _REPO_INFO.match(path)
        if m and m["repo"] in self.fake.repos:
            repo = self.fake.repos[m["repo"]]
            return self._reply(200, {"id": repo.repo_id, "private": repo.private, "sha": None})
        m = _TREE.match(path)
        if m and m["repo"] in self.fake.repos:  # one page: the recursive listing of every file
            files = self.fake.repos[m["repo"]].files
            return self._reply(200, [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                                     for name, data in sorted(files.items())])
        self.fake.unexpected.append(("GET", path))
        self._reply(404, {"error": f"fake hub: no route GET {path}"})

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        body = self._body()
        self.fake.calls.append(("POST", path))
        if not self.fake.authorised(self.headers.get("Authorization")):
            self.fake.auth_failures += 1
            return self._reply(401, {"error": "Invalid credentials in Authorization header"})
        if path == "/api/repos/create":
            return self._reply(*self.fake.create_repo(json.loads(body)))
        if path == "/api/validate-yaml":
            content = json.loads(body)["content"]
            block = re.match(r"^---\n(.*?)\n---", content, re.S)
            try:
                yaml.safe_load(block.group(1) if block else "")
            except yaml.YAMLError as e:
                return self._reply(400, {"errors": [{"message": str(e)}], "warnings": []})
            return self._reply(200, {"errors": [], "warnings": []})
        if m := _PREUPLOAD.match(path):
            return self._reply(*self.fake.preupload(m["repo"], json.loads(body)))
        if m := _COMMIT.match(path):
            return self._reply(*self.fake.commit(m["repo"], body))
        self.fake.unexpected.append(("POST", path))
        self._reply(404, {"error": f"fake hub: no route POST {path}"})
