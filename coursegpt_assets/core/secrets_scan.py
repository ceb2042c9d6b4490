"""Find and scrub secrets and machine-local paths in text that leaves the machine (model cards, repo files).

Cards are built from training summaries and reports that other assets wrote; those may carry a token
pasted into a config, or the absolute path of a local base model. A published card must hold neither,
so the card builder scrubs its inputs and the card check refuses any card where one survives.
Findings never repeat the secret itself: they name the line and the kind of secret.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

REDACTED = "<redacted>"
LOCAL_PATH = "<local path>"

# (kind, pattern) for credentials: a match is replaced wholesale.
_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key block", re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----)?", re.S)),
    ("Hugging Face token", re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{20,}")),
    ("Google OAuth access token", re.compile(r"(?<![A-Za-z0-9])ya29\.[0-9A-Za-z_\-]{10,}")),
    ("Google API key", re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{30,}")),
    ("GitHub token", re.compile(r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}")),
    ("AWS access key id", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")),
    ("bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{16,}=*")),
    ("credentials in a URL", re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://(?P<secret>[^/\s:@]+:[^/\s@]+)@")),
    ("credential assignment", re.compile(
        r"(?i)\b(?:password|passwd|client_secret|secret_key|private_key|private_key_id|api_key|apikey"
        r"|access_token|auth_token|refresh_token|hf_token|huggingface_token)\b[\"']?\s*[:=]\s*[\"']?"
        r"(?P<secret>(?!<redacted>)[^\s\"',}]{6,})")),
)

# Absolute paths on a developer machine or runner, with at least one segment below the root (a bare
# "/tmp" names no machine). The look-behind keeps URL paths (https://host/home/...) and relative
# paths (a/tmp/b) out. Besides the usual roots, the top folders this very machine works from (the
# project's checkout, the interpreter, home, temp) count: a CI runner cloning to /check/... or /builds/...
# leaks that path into a card just as a laptop leaks /home/....
_USUAL_ROOTS = ("home", "root", "tmp", "work", "Users", "mnt", "private", "var/folders", "scratch",
                "workspace", "opt", "srv", "data")


def _machine_roots() -> tuple[str, ...]:
    """The first folder of each place this process works from (checkout, interpreter, home, temp)."""
    places = (os.path.dirname(os.path.abspath(__file__)), os.getcwd(), sys.prefix, os.path.expanduser("~"),
              tempfile.gettempdir())
    heads = {p.split("/")[1] for p in places if p.startswith("/") and p.count("/") >= 2}
    return tuple(sorted(h for h in heads if h and h not in _USUAL_ROOTS))


_PATH_ROOTS = "|".join(re.escape(root) for root in _USUAL_ROOTS + _machine_roots())
_POSIX_PATH = re.compile(rf"(?<![\w.:/~\-])/(?:{_PATH_ROOTS})/[^\s\"'`<>|)\]}},;]+")
_FILE_URI = re.compile(r"\bfile://[^\s\"'`<>|)\]},;]+")
_WINDOWS_PATH = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]:\\(?:[^\s\"'`<>|)\]},;]*)")


@dataclass(frozen=True)
class Finding:
    line: int
    kind: str
    hint: str  # a safe hint (never the secret): the path's first segment, or ''

    def describe(self, where: str = "") -> str:
        prefix = f"{where} " if where else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{prefix}line {self.line}: {self.kind}{hint}"


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _path_hint(path: str) -> str:
    path = path.removeprefix("file://")
    head = re.split(r"[\\/]", path.lstrip("/"), maxsplit=1)[0]
    return f"{'/' if path.startswith('/') else ''}{head}/…"


def find_secrets(text: str) -> list[Finding]:
    """Every token, key, credential or local absolute path in `text`, in order of position."""
    found: list[tuple[int, Finding]] = []
    spans: list[tuple[int, int]] = []
    for kind, pattern in _SECRET_PATTERNS:
        for m in pattern.finditer(text):
            if not any(a < m.end() and m.start() < b for a, b in spans):
                spans.append(m.span())
                found.append((m.start(), Finding(_line_of(text, m.start()), kind, "")))
    for pattern in (_FILE_URI, _POSIX_PATH, _WINDOWS_PATH):
        for m in pattern.finditer(text):
            if not any(a < m.end() and m.start() < b for a, b in spans):
                spans.append(m.span())
                found.append((m.start(), Finding(_line_of(text, m.start()), "local absolute path", _path_hint(m.group()))))
    found.sort(key=lambda item: item[0])
    return [f for _, f in found]


def _basename(path: str) -> str:
    parts = [p for p in re.split(r"[\\/]", path.removeprefix("file://")) if p]
    return parts[-1] if len(parts) > 1 else ""


def _redact(m: re.Match[str]) -> str:
    """Replace the secret part only (the value of `password=...`), or the whole match."""
    if "secret" in m.re.groupindex and m.group("secret") is not None:
        start, end = m.span("secret")
        whole_start = m.start()
        return m.group()[: start - whole_start] + REDACTED + m.group()[end - whole_start:]
    return REDACTED


def _scrub_path(m: re.Match[str]) -> str:
    name = _basename(m.group())
    return f"{LOCAL_PATH}/{name}" if name else LOCAL_PATH


def scrub(text: str) -> str:
    """`text` with credentials replaced by <redacted> and local paths by <local path>/<file name>."""
    for _, pattern in _SECRET_PATTERNS:
        text = pattern.sub(_redact, text)
    for pattern in (_FILE_URI, _POSIX_PATH, _WINDOWS_PATH):
        text = pattern.sub(_scrub_path, text)
    return text


def scrub_obj(obj: Any) -> Any:
    """Scrub every string inside a JSON-like value (keys included), leaving numbers and booleans alone."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {scrub(str(k)): scrub_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_obj(v) for v in obj]
    return obj
