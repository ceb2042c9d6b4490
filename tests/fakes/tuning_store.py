"""Writes a small, real tuning dataset for one pair into a store, as the tuning_dataset asset would.

Rows come from the shipped router fixture through the router agent and the pair's chat family, so the
adapter tests train on the same shape of data as the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import tuning_row
from coursegpt_assets.agents.router import valid_fixture_records
from coursegpt_assets.core import layout
from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.core.plan import DEFAULT_PLAN_PATH, default_plan
from coursegpt_assets.core.settings import FIXTURES_DIR
from resources.storage import ArtifactStore


def valid_router_records() -> list[dict]:
    """The shipped router fixture's records that pass validation, in file order."""
    return valid_fixture_records()


def router_rows(family_name: str) -> list[dict]:
    agent = get_agent("router")
    return [tuning_row(agent, record, family_name) for record in valid_router_records()]


def write_tuning_data(store: ArtifactStore, pair: str, *, validation: int = 8, rows: list[dict] | None = None) -> dict:
    """train/validation JSONL + manifest for `pair`, and (when absent) a splits manifest naming the agent's
    configured source, as dataset_splits records it; returns the tuning manifest."""
    base = default_plan().base_model_for(pair)
    fam = family(base.family)
    rows = rows if rows is not None else router_rows(base.family)
    splits = {"train": rows[:-validation] if validation else rows, "validation": rows[-validation:] if validation else []}
    hashes, counts = {}, {}
    for split, split_rows in splits.items():
        _, counts[split], hashes[split] = store.write_jsonl(layout.tuning_records(pair, split), split_rows)
    manifest = {
        "pair": pair, "agent": pair.split("__")[0], "base_model": pair.split("__")[1], "family": base.family,
        "counts": counts, "sha256": hashes,
        "data_version": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
        "chat_template": fam.template, "end_of_turn": fam.end_of_turn,
    }
    store.write_json(layout.tuning_manifest(pair), manifest)
    agent = get_agent(manifest["agent"])
    if not store.exists(layout.splits_manifest(agent.name)):
        store.write_json(layout.splits_manifest(agent.name),
                         {"agent": agent.name, "source": os.environ.get(agent.source_variable)
                          or str(FIXTURES_DIR / f"{agent.name}.jsonl")})
    return manifest


def plan_copy(path, edit, *, base=DEFAULT_PLAN_PATH, monkeypatch=None):
    """Write `base` (the shipped plan) to `path` after `edit(raw)` changes its parsed YAML; with
    `monkeypatch`, COURSEGPT_PLAN names the copy and the cached plan is dropped. Returns `path`."""
    raw = yaml.safe_load(Path(base).read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    if monkeypatch is not None:
        monkeypatch.setenv("COURSEGPT_PLAN", str(path))
        default_plan.cache_clear()
    return path


def plan_with_smoke_max_length(tmp_dir, max_length: int):
    """A copy of the shipped plan with another smoke max_length (router rows need ~800 tiny tokens)."""
    return plan_copy(tmp_dir / "training_plan.yaml", lambda raw: raw["smoke"].update(max_length=max_length))
