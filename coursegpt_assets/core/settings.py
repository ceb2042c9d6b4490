"""The one place that decides the environment: local (default) or gcp, and where things live.

Read at call time, never at import time, so tests and the CLI can point a process elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from coursegpt_assets.core.plan import PROJECT_ROOT

ENVIRONMENTS = ("local", "gcp")
FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"


class SettingsError(ValueError):
    """A required environment variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    env: str
    home: Path
    store: str
    inference_url: str = ""  # COURSEGPT_INFERENCE_URL: an OpenAI-compatible server answers the benchmarks

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
    return Settings(env=env, home=home, store=store, inference_url=inference_url)


def source_for(agent: str, var: str) -> str:
    """Where an agent's raw records come from: its env variable `var` (`Agent.source_variable`), else the
    shipped fixture `fixtures/<agent>.jsonl`."""
    value = os.environ.get(var, "").strip()
    if value:
        return value
    fixture = FIXTURES_DIR / f"{agent}.jsonl"
    if not fixture.exists():
        raise SettingsError(f"{var} is not set and there is no shipped fixture {fixture}")
    return str(fixture)
