"""GcsStore folders against the emulator: one client per resource, transfer_manager for folder copies, a
cache copy swapped in by one atomic step, and folder prefixes that do not match siblings of a longer name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dagster_gcp
from google.cloud.storage import transfer_manager

from coursegpt_assets.core import layout
from resources.gcs_store import GcsStore

PAIR = "router__tiny-llama"
SUMMARY = layout.SUMMARY_FILE


def _folder(path: Path, tag: str, n: int = 3) -> dict[str, bytes]:
    files = {f"part-{i}.bin": f"{tag}-{i}\n".encode() * 100 for i in range(n)}
    files["checkpoint-1/state.json"] = f'{{"tag": "{tag}"}}\n'.encode()
    files[SUMMARY] = f'{{"version": "{tag}"}}\n'.encode()
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return files


def _tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_one_client_serves_every_call_of_a_resource(gcs_emulator, tmp_path, monkeypatch):
    built = []
    original = dagster_gcp.GCSResource.get_client

    def get_client(self):
        built.append(self)
        return original(self)

    monkeypatch.setattr(dagster_gcp.GCSResource, "get_client", get_client)
    store = GcsStore(root=os.environ["COURSEGPT_STORE"])
    store.write_json("a/one.json", {"n": 1})
    store.write_lines("a/rows.jsonl", [b'{"x": 1}'])
    assert store.read_json("a/one.json") == {"n": 1} and store.exists("a/rows.jsonl")
    _folder(tmp_path / "x", "x")
    store.upload_dir(tmp_path / "x", "folder", last=SUMMARY)
    store.local_dir("folder", tmp_path / "cache")
    store.delete("a/one.json")
    assert len(built) == 1
    GcsStore(root=os.environ["COURSEGPT_STORE"]).exists("a/rows.jsonl")  # another resource: its own client
    assert len(built) == 2


def test_folders_move_through_transfer_manager_and_the_marker_goes_last(gcs_emulator, gcs_store, tmp_path,
                                                                       monkeypatch):
    calls = []
    for name in ("upload_many", "download_many_to_path"):
        original = getattr(transfer_manager, name)

        def record(*args, _name=name, _original=original, **kwargs):
            calls.append((_name, len(args[1] if _name == "download_many_to_path" else args[0])))
            return _original(*args, **kwargs)

        monkeypatch.setattr(transfer_manager, name, record)
    files = _folder(tmp_path / "out", "v1")
    prefix = layout.adapter_dir(PAIR, "v1")
    gcs_store.upload_dir(tmp_path / "out", prefix, last=SUMMARY)
    assert calls == [("upload_many", len(files) - 1), ("upload_many", 1)]  # everything, then the marker alone
    assert _tree(gcs_store.local_dir(prefix, tmp_path / "cache")) == files
    assert calls[-1] == ("download_many_to_path", len(files))
    for key in gcs_store.list_keys(prefix):  # each object carries its digest, as single writes do
        assert gcs_store.sha256(key) == hashlib.sha256(files[key[len(prefix) + 1:]]).hexdigest()


def test_a_version_folder_does_not_take_in_a_sibling_with_a_longer_name(gcs_emulator, gcs_store, tmp_path):
    v1, v10 = layout.adapter_dir(PAIR, "v1"), layout.adapter_dir(PAIR, "v10")
    one = _folder(tmp_path / "v1", "v1")
    _folder(tmp_path / "v10", "v10", n=5)
    gcs_store.upload_dir(tmp_path / "v1", v1, last=SUMMARY)
    gcs_store.upload_dir(tmp_path / "v10", v10, last=SUMMARY)
    assert gcs_store.list_keys(v1) == sorted(f"{v1}/{name}" for name in one)
    copy = gcs_store.local_dir(v1, tmp_path / "cache")
    assert _tree(copy) == one
    assert not (tmp_path / "cache" / f"{v1}0").exists()


def test_a_refreshed_cache_copy_is_swapped_in_by_one_rename(gcs_emulator, gcs_store, tmp_path, monkeypatch):
    prefix = layout.adapter_dir(PAIR, "v1")
    files = _folder(tmp_path / "out", "v1")
    gcs_store.upload_dir(tmp_path / "out", prefix, last=SUMMARY)
    target = tmp_path / "cache" / prefix
    gcs_store.local_dir(prefix, tmp_path / "cache")
    seen, original = [], os.replace

    def replace(src, dst, *args, **kwargs):
        seen.append(_tree(target) == files)  # before each rename a reader finds the whole copy ...
        original(src, dst, *args, **kwargs)
        seen.append(_tree(target) == files)  # ... and after it

    monkeypatch.setattr(os, "replace", replace)
    assert gcs_store.local_dir(prefix, tmp_path / "cache") == target
    monkeypatch.setattr(os, "replace", original)
    assert seen == [True, True]  # one rename, with the folder whole on both sides of it

    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, os.readlink(target)])
