"""The one place that decides the environment: local (default) or gcp, and where things live.

Read at call time, never at import time, so tests and the CLI can point a process elsewhere. Every
variable a user sets is read and validated here once, and a bad value is a SettingsError naming it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from coursegpt_assets.core.plan import DEFAULT_PLAN_PATH, PROJECT_ROOT, plan_file

ENVIRONMENTS = ("local", "gcp")
FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"
DEFAULT_VERTEX_LOCATION = "us-central1"
GCP_CREDENTIALS = ("adc", "anonymous")
_REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")  # us-central1, europe-west4, northamerica-northeast1
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?$")


class SettingsError(ValueError):
    """A required environment variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    env: str
    home: Path
    store: str
    inference_url: str = ""  # COURSEGPT_INFERENCE_URL: an OpenAI-compatible server answers the benchmarks
    vertex_location: str = DEFAULT_VERTEX_LOCATION  # COURSEGPT_VERTEX_LOCATION: tuning jobs and endpoints
    vertex_api_endpoint: str | None = None  # COURSEGPT_VERTEX_API_ENDPOINT: PSC host or a stand-in's URL
    gcp_credentials: str = "adc"  # COURSEGPT_GCP_CREDENTIALS: adc | anonymous (stand-ins only)
    plan: Path = DEFAULT_PLAN_PATH  # COURSEGPT_PLAN: the training plan every process reads

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.home / "dagster")

    @property
    def is_gcp(self) -> bool:
        return self.env == "gcp"


def environment() -> str:
    """COURSEGPT_ENV, normalised: `local` when unset, else one of ENVIRONMENTS."""
    env = os.environ.get("COURSEGPT_ENV", "local").strip().lower() or "local"
    if env not in ENVIRONMENTS:
        raise SettingsError(f"COURSEGPT_ENV={env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return env


def current() -> Settings:
    env = environment()
    home = Path(os.environ.get("COURSEGPT_HOME") or PROJECT_ROOT / ".coursegpt").resolve()
    store = os.environ.get("COURSEGPT_STORE") or str(home / "store")
    if env == "gcp" and not store.startswith("gs://"):
        raise SettingsError(
            "COURSEGPT_ENV=gcp needs COURSEGPT_STORE=gs://<bucket>/<prefix> (Vertex AI reads tuning data from GCS)"
        )
    inference_url = os.environ.get("COURSEGPT_INFERENCE_URL", "").strip()
    if inference_url and not inference_url.startswith(("http://", "https://")):
        raise SettingsError(f"COURSEGPT_INFERENCE_URL={inference_url!r}: expected an http(s) URL ending in /v1")
    return Settings(env=env, home=home, store=store, inference_url=inference_url, vertex_location=_vertex_location(),
                    vertex_api_endpoint=_vertex_api_endpoint(), gcp_credentials=_gcp_credentials(), plan=_plan())


def _vertex_location() -> str:
    location = os.environ.get("COURSEGPT_VERTEX_LOCATION", "").strip() or DEFAULT_VERTEX_LOCATION
    if not _REGION.match(location):
        raise SettingsError(f"COURSEGPT_VERTEX_LOCATION={location!r}: expected a Vertex AI region such as "
                            f"{DEFAULT_VERTEX_LOCATION} (the default) or europe-west4")
    return location


def _vertex_api_endpoint() -> str | None:
    """A host (a Private Service Connect endpoint) or an http(s) URL with no path (a stand-in); None means
    the region's public endpoint."""
    endpoint = os.environ.get("COURSEGPT_VERTEX_API_ENDPOINT", "").strip().rstrip("/")
    if not endpoint:
        return None
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and not (parts.path or parts.query)
    else:
        valid = bool(_HOST.match(endpoint))
    if not valid:
        raise SettingsError(f"COURSEGPT_VERTEX_API_ENDPOINT={endpoint!r}: expected a host such as "
                            "us-central1-aiplatform.googleapis.com or a URL with no path such as http://127.0.0.1:8080")
    return endpoint


def _gcp_credentials() -> str:
    credentials = os.environ.get("COURSEGPT_GCP_CREDENTIALS", "").strip().lower() or "adc"
    if credentials not in GCP_CREDENTIALS:
        raise SettingsError(f"COURSEGPT_GCP_CREDENTIALS={credentials!r}: expected adc (Application Default "
                            "Credentials, the default) or anonymous (loopback stand-ins only)")
    return credentials


def _plan() -> Path:
    path = plan_file()
    if not path.is_file():
        if os.environ.get("COURSEGPT_PLAN", "").strip():
            raise SettingsError(f"COURSEGPT_PLAN={str(path)!r}: no such file (unset it to use {DEFAULT_PLAN_PATH})")
        raise SettingsError(f"{path}: training plan not found (restore it or set COURSEGPT_PLAN)")
    return path.resolve()


def require_named_sources(variables: list[str]) -> None:
    """Under gcp every agent's source must be named: the shipped fixtures (a few dozen rows) are for the
    embedded default, and a paid job must never train on them because a variable was forgotten."""
    missing = [var for var in variables if not os.environ.get(var, "").strip()]
    if missing:
        raise SettingsError(f"COURSEGPT_ENV=gcp needs every agent's source named: set {', '.join(missing)} "
                            "(a gs://, hf:// or local path; the shipped fixtures are for the local default)")


def is_shipped_fixture(source: str | None) -> bool:
    """Whether a source is one of the fixture files shipped in the package."""
    if not source or source.startswith(("gs://", "hf://")):
        return False
    return Path(source).expanduser().resolve().is_relative_to(FIXTURES_DIR)


def source_for(agent: str, var: str) -> str:
    """Where an agent's raw records come from: its env variable `var` (`Agent.source_variable`), else (in
    the local environment only) the shipped fixture `fixtures/<agent>.jsonl`."""
    value = os.environ.get(var, "").strip()
    if value:
        return value
    if environment() == "gcp":
        require_named_sources([var])
    fixture = FIXTURES_DIR / f"{agent}.jsonl"
    if not fixture.exists():
        raise SettingsError(f"{var} is not set and there is no shipped fixture {fixture}")
    return str(fixture)
