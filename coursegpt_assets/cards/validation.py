"""`validate_card`: what the blocking card check runs on every generated README.md.

A card must round-trip through huggingface_hub's `ModelCard` / `ModelCardData` unchanged, carry the metadata
the Hub needs, hold only finite numbers in its model-index, and contain no secret or machine-local path.
"""

from __future__ import annotations

import math
import re

import yaml

from coursegpt_assets.core.secrets_scan import find_secrets

SMOKE_TAG = "smoke-test"
SMOKE_PHRASE = "smoke-test model"
REQUIRED_METADATA = ("base_model", "library_name", "license", "pipeline_tag", "tags", "model-index")


def _yaml_block(text: str) -> dict | None:
    m = re.match(r"^\s*---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not m:
        return None
    data = yaml.safe_load(m.group(1))
    return data if isinstance(data, dict) else None


def validate_card(text: str) -> list[str]:
    """Problems with a card: metadata that does not round-trip, missing fields, secrets, local paths."""
    from huggingface_hub import ModelCard, ModelCardData

    problems = [f.describe("README.md") for f in find_secrets(text)]
    try:
        raw = _yaml_block(text)
    except yaml.YAMLError as e:
        return [*problems, f"metadata: not valid YAML ({e})"]
    if raw is None:
        return [*problems, "metadata: no YAML front matter (--- ... ---) at the top of README.md"]
    try:
        card = ModelCard(text)
        data = card.data.to_dict()
        again = ModelCardData(**data).to_dict()
        reparsed = ModelCard(str(card)).data.to_dict()
    except (ValueError, KeyError, TypeError) as e:
        return [*problems, f"metadata: huggingface_hub cannot parse it ({e})"]
    if data != raw:
        lost = sorted(k for k in set(raw) | set(data) if raw.get(k) != data.get(k))
        problems.append(f"metadata: parsing through ModelCardData changes {lost}")
    if again != data or reparsed != data:
        problems.append("metadata: does not round-trip through ModelCardData / ModelCard")
    for key in REQUIRED_METADATA:
        if not data.get(key):
            problems.append(f"metadata: '{key}' is missing or empty")
    if data.get("library_name") not in (None, "peft"):
        problems.append(f"metadata: library_name is {data.get('library_name')!r}, expected 'peft'")
    tags = data.get("tags") or []
    for tag in ("lora", "peft"):
        if tag not in tags:
            problems.append(f"metadata: tag '{tag}' is missing")
    results = card.data.eval_results or []
    if data.get("model-index") and not results:
        problems.append("model-index: holds no evaluation results")
    for r in results:
        v = r.metric_value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            problems.append(f"model-index: metric '{r.metric_type}' has no finite numeric value ({v!r})")
    if SMOKE_TAG in tags and SMOKE_PHRASE not in card.text.lower():
        problems.append(f"body: tagged '{SMOKE_TAG}' but never says it is a {SMOKE_PHRASE}")
    return problems
