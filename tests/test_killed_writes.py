"""Runs of dataset_splits killed (SIGKILL, a real child process) at several points while re-materialising over
a complete split set with new input: readers stay on the set published before, never a mix of new splits
and an old manifest, and the next successful write removes what the killed run left under its own prefix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from coursegpt_assets.core import layout
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.defs.common import published_splits
from coursegpt_assets.defs.data.assets import DATA_ASSETS, clean_examples, dataset_splits, raw_examples
from coursegpt_assets.defs.tuning.assets import tuning_dataset
from resources.local_store import LocalStore
from resources.storage import ArtifactStore
from tests.conftest import PROJECT_ROOT, step_failure_text
from tests.fakes.gcs_emulator import PREFIX

PAIR = "router__tiny-llama"
READY_TIMEOUT_S = 120.0
SPLITS_ROOT = layout.splits_root("router")


def _source(tmp_path: Path, name: str, lines: slice) -> dict:
    """Run config reading part of the router fixture (distinct inputs give distinct split sets)."""
    path = tmp_path / name
    path.write_text("".join(FIXTURES_DIR.joinpath("router.jsonl").read_text().splitlines(keepends=True)[lines]))
    return {"ops": {"raw_examples": {"config": {"source": str(path)}}}}


def _published(store: ArtifactStore) -> tuple[dict, dict[str, bytes]]:
    """What a reader of the split set gets: the manifest, and the bytes of the files it publishes (verified)."""
    manifest, keys = published_splits(store, "router", partition="router")
    return manifest, {split: store.read_bytes(key) for split, key in keys.items()}


def _kill_at(store: ArtifactStore, pause_at: str, tmp_path: Path) -> None:
    """Run dataset_splits in a child that stops at `pause_at`, then SIGKILL it there."""
    ready = tmp_path / f"ready-{pause_at.replace(':', '-')}"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.killed_split_writer", store.root, pause_at, str(ready)],
        cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the child never reached {pause_at}:\n{child.communicate()[0][-3000:]}")
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.stdout.close()


def _files_under_splits(store: ArtifactStore, emulator=None) -> set[str]:
    """Everything under the agent's split prefix as the backend holds it, temp files included."""
    if emulator is not None:
        return {name[len(PREFIX) + 1:] for name in emulator.object_names(f"{PREFIX}/{SPLITS_ROOT}/")}
    root = Path(store.root)
    return {p.relative_to(root).as_posix() for p in (root / SPLITS_ROOT).rglob("*") if p.is_file()}


def _set_files(manifest: dict) -> set[str]:
    """The manifest, the published set and the set before it: all a successful write keeps."""
    versions = [manifest["version"], manifest.get("previous_version")]
    return {layout.splits_manifest("router"),
            *(layout.split_records("router", s, v) for v in versions if v for s in layout.SPLITS)}


def _kill_and_recover(store: ArtifactStore, pause_at: str, tmp_path: Path, emulator=None) -> None:
    # a complete set from input A, then raw and clean from new input B: dataset_splits is what gets killed
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store},
                   run_config=_source(tmp_path, "a.jsonl", slice(0, 60)))
    old_manifest, old_files = _published(store)
    dg.materialize([raw_examples, clean_examples], partition_key="router", resources={"store": store},
                   run_config=_source(tmp_path, "b.jsonl", slice(20, None)))

    _kill_at(store, pause_at, tmp_path)

    left = _files_under_splits(store, emulator) - _set_files(old_manifest)
    manifest, files = _published(store)
    if pause_at == "manifest.json:after":  # killed once the new set was published: readers are on it, whole
        assert manifest["version"] != old_manifest["version"] and files != old_files
        assert manifest["previous_version"] == old_manifest["version"]
    else:  # killed before: readers are on the old set, byte for byte; the killed run's files are left over
        assert (manifest, files) == (old_manifest, old_files)
        assert left, "the kill should have left files of the unpublished set"
    # a downstream reader materialises from the published set
    tuned = dg.materialize([tuning_dataset, *[a.to_source_asset() for a in DATA_ASSETS]], partition_key=PAIR,
                           resources={"store": store}, selection=[tuning_dataset])
    assert tuned.success
    assert store.read_json(layout.tuning_manifest(PAIR))["splits_content_hash"] == manifest["content_hash"]

    # the next successful write publishes input B's set and removes what the killed run left
    result = dg.materialize([dataset_splits, *[a.to_source_asset() for a in DATA_ASSETS[:2]]],
                            partition_key="router", resources={"store": store}, selection=[dataset_splits])
    final, _ = _published(store)
    assert final["previous_version"] == manifest["version"]
    assert _files_under_splits(store, emulator) == _set_files(final)
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["stale_files_removed"].value >= len(left - _set_files(final))


@pytest.mark.parametrize("pause_at", ["train.jsonl:during", "train.jsonl:after", "test.jsonl:after",
                                      "manifest.json:after"])
def test_a_killed_split_write_on_a_folder_leaves_readers_on_a_whole_set(tmp_path, pause_at):
    store = LocalStore(root=str(tmp_path / "store"))
    _kill_and_recover(store, pause_at, tmp_path)


def test_a_killed_write_leaves_its_temp_file_and_the_next_write_removes_only_its_own(tmp_path):
    store = LocalStore(root=str(tmp_path / "store"))
    # another artifact's temp file, as a killed clean_examples would leave it: not dataset_splits' to remove
    other = Path(store.root) / "datasets/router/clean/.records.jsonl.killed.tmp"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"{}\n")
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store})
    _kill_at(store, "validation.jsonl:during", tmp_path)
    temp = [p for p in (Path(store.root) / SPLITS_ROOT).rglob("*.tmp")]
    assert len(temp) == 1 and temp[0].name.startswith(".validation.jsonl.") and temp[0].stat().st_size > 0
    assert temp[0].name not in {Path(k).name for k in store.list_keys(SPLITS_ROOT)}  # invisible to readers
    dg.materialize([dataset_splits, *[a.to_source_asset() for a in DATA_ASSETS[:2]]],
                   partition_key="router", resources={"store": store}, selection=[dataset_splits])
    assert not temp[0].exists() and not temp[0].parent.exists()  # the killed run's folder is gone with it
    assert other.exists()


@pytest.mark.parametrize("pause_at", ["train.jsonl:after", "test.jsonl:after", "manifest.json:after"])
def test_a_killed_split_write_on_gcs_leaves_readers_on_a_whole_set(gcs_emulator, gcs_store, tmp_path, pause_at):
    _kill_and_recover(gcs_store, pause_at, tmp_path, emulator=gcs_emulator)


def test_an_unversioned_manifest_fails_its_readers_clearly(store, tmp_path):
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store})
    manifest = store.read_json(layout.splits_manifest("router"))
    store.write_json(layout.splits_manifest("router"), {k: v for k, v in manifest.items() if k != "version"})
    with pytest.raises(dg.Failure, match="names no split-set version .* re-materialise dataset_splits for router"):
        published_splits(store, "router", partition="router")


class _PrunedMeanwhile(LocalStore):
    """As if another run published first and pruned this run's half-written set: train goes before test is written."""

    def _write_file(self, key, writer, content_type):
        if key.endswith("/test.jsonl"):
            (Path(self.root) / key).with_name("train.jsonl").unlink()
        return super()._write_file(key, writer, content_type)


def test_a_set_pruned_by_a_concurrent_run_is_never_published(tmp_path):
    store = LocalStore(root=str(tmp_path / "store"))
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store})
    before = _published(store)
    result = dg.materialize([dataset_splits, *[a.to_source_asset() for a in DATA_ASSETS[:2]]], partition_key="router",
                            resources={"store": _PrunedMeanwhile(root=store.root)}, selection=[dataset_splits],
                            raise_on_error=False)
    assert not result.success
    text = step_failure_text(result)
    assert "train.jsonl went missing before this run's split set was published" in text
    assert "the published set is unchanged" in text
    assert _published(store) == before
