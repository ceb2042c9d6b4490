"""Finding new adapter versions in a listing of the store's `adapters/` prefix: plain functions the sensor calls.

A version folder `adapters/<pair>/<version>/` is complete once `training_summary.json` exists (it is
written last). The cursor remembers every version already handled, so a restarted sensor never reports
or evaluates one twice, and the reasons folders were skipped, so each reason is logged once. Incomplete
and malformed folders are not marked seen: once fixed (or finished uploading) they are picked up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from coursegpt_assets.core import layout
from coursegpt_assets.core.layout import ADAPTER_CONFIG, ADAPTER_WEIGHTS, SUMMARY_FILE
from coursegpt_assets.core.names import split_pair

CURSOR_VERSION = 1


@dataclass
class ScanCursor:
    """What the sensor has handled: versions seen per pair, and the current skip reason per folder."""

    seen: dict[str, set[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # "<pair>/<version>" -> reason

    @classmethod
    def parse(cls, text: str | None) -> ScanCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        if raw.get("v") != CURSOR_VERSION:
            raise ValueError(f"adapter sensor cursor version {raw.get('v')!r} is not {CURSOR_VERSION}; reset the cursor")
        return cls(seen={p: set(v) for p, v in raw.get("seen", {}).items()}, skipped=dict(raw.get("skipped", {})))

    def dump(self) -> str:
        seen = {p: sorted(v) for p, v in sorted(self.seen.items())}
        return json.dumps({"v": CURSOR_VERSION, "seen": seen, "skipped": dict(sorted(self.skipped.items()))},
                          separators=(",", ":"))

    def has(self, pair: str, version: str) -> bool:
        return version in self.seen.get(pair, ())


#: what a usable adapter folder holds; the summary is the adapter asset's last write
REQUIRED_FILES = frozenset({SUMMARY_FILE, ADAPTER_CONFIG, ADAPTER_WEIGHTS})


def adapter_folders(keys: Iterable[str]) -> dict[tuple[str, str], bool]:
    """(pair, version) -> whether the folder is complete (summary, config and weights all listed), from store
    keys under `adapters/`. A folder still being copied in (`cp -r` has no file order) is not complete yet."""
    root = layout.adapters_root() + "/"
    files: dict[tuple[str, str], set[str]] = {}
    for key in keys:
        if not key.startswith(root):
            continue
        parts = key[len(root):].split("/")
        if len(parts) < 3:  # adapters/<pair>/latest.json and stray files are not version folders
            continue
        names = files.setdefault((parts[0], parts[1]), set())
        if len(parts) == 3:
            names.add(parts[2])
    return {folder: REQUIRED_FILES <= names for folder, names in files.items()}


def summary_problem(summary, pair: str, version: str) -> str | None:
    """Why a parsed summary does not describe the adapter in `adapters/<pair>/<version>/`, or None."""
    if not isinstance(summary, dict):
        return f"{SUMMARY_FILE} is not a JSON object"
    if summary.get("pair") not in (None, pair):
        return f"{SUMMARY_FILE} names pair {summary['pair']!r}, but the folder is under {pair!r}"
    if summary.get("version") not in (None, version):
        return f"{SUMMARY_FILE} names version {summary['version']!r}, but the folder is {version!r}"
    base_model = split_pair(pair)[1]
    if summary.get("base_model") not in (None, base_model):
        return f"{SUMMARY_FILE} names base model {summary['base_model']!r}, but the pair's is {base_model!r}"
    return None


@dataclass(frozen=True)
class NewAdapter:
    """The version of one pair to report and evaluate, plus any older new versions it supersedes."""

    pair: str
    version: str
    summary: dict
    superseded: tuple[str, ...] = ()
    choice: str = "only new version"


@dataclass
class ScanResult:
    new: list[NewAdapter]
    skipped: dict[str, str]  # every folder skipped on this scan
    newly_skipped: dict[str, str]  # those whose reason was not logged before
    cursor: ScanCursor


def scan(keys: Iterable[str], cursor: ScanCursor, *, known_pairs: Iterable[str],
         read_json: Callable[[str], object]) -> ScanResult:
    """New complete versions per pair (the newest one chosen), skipped folders with reasons, the next cursor."""
    known = set(known_pairs)
    fresh: dict[str, dict[str, dict]] = {}
    skipped: dict[str, str] = {}
    for (pair, version), complete in sorted(adapter_folders(keys).items()):
        if cursor.has(pair, version):
            continue
        reason = None
        if pair not in known:
            reason = f"unknown pair {pair!r} (not in training_plan.yaml pairs)"
        elif not complete:
            reason = f"incomplete: no {SUMMARY_FILE} yet (still uploading, or not an adapter)"
        else:
            summary_key = layout.adapter_summary(pair, version)
            try:
                summary = read_json(summary_key)
            except Exception as e:  # unreadable or invalid JSON: skip this folder, keep scanning
                reason = f"unreadable {SUMMARY_FILE}: {type(e).__name__}: {e}"
            else:
                reason = summary_problem(summary, pair, version)
        if reason:
            skipped[f"{pair}/{version}"] = reason
        else:
            fresh.setdefault(pair, {})[version] = summary
    new = [_choose(pair, versions, read_json) for pair, versions in sorted(fresh.items())]
    seen = {p: set(v) for p, v in cursor.seen.items()}
    for pair, versions in fresh.items():
        seen.setdefault(pair, set()).update(versions)
    newly = {k: r for k, r in skipped.items() if cursor.skipped.get(k) != r}
    return ScanResult(new=new, skipped=skipped, newly_skipped=newly, cursor=ScanCursor(seen=seen, skipped=skipped))


def _choose(pair: str, versions: dict[str, dict], read_json: Callable[[str], object]) -> NewAdapter:
    """One version per pair: the only one, else the one latest.json points at, else the most recently
    finished (training_summary.json `finished_at`), else the last by name."""
    names = sorted(versions)
    if len(names) == 1:
        return NewAdapter(pair, names[0], versions[names[0]])
    try:
        pointed = (read_json(layout.adapter_latest(pair)) or {}).get("version")
    except Exception:  # no or unreadable pointer: fall back to the name order
        pointed = None
    finished = {v: str(s.get("finished_at") or "") if isinstance(s, dict) else "" for v, s in versions.items()}
    if pointed in versions:
        chosen, choice = pointed, "named by latest.json"
    elif any(finished.values()):
        chosen = max(names, key=lambda v: (finished[v], v))
        choice = "most recently finished (latest.json names none of the new versions)"
    else:
        chosen, choice = names[-1], "last by name (latest.json names none of the new versions)"
    return NewAdapter(pair, chosen, versions[chosen], tuple(v for v in names if v != chosen), choice)
