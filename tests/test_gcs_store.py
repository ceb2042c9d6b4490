"""The router data path and the adapter/report writes against a real GCS API (gcp-storage-emulator in a
subprocess, `COURSEGPT_STORE=gs://...`), and what an outage in the middle of a write leaves behind."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
from pathlib import Path

import dagster as dg
import pytest
from google.cloud.storage import Blob, transfer_manager

from coursegpt_assets.core import layout
from coursegpt_assets.core.layout import card_manifest
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.defs.data.assets import DATA_ASSETS, raw_examples
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.defs.publishing.assets import MODEL_CARD_ASSETS, MODEL_CARD_CHECKS
from coursegpt_assets.defs.tuning.assets import tuning_dataset
from resources.gcs_store import GcsStore
from resources.hub import LocalHub
from resources.local_store import LocalStore
from resources.storage import ArtifactStore, StoreError
from tests.conftest import step_failure_text
from tests.fakes.gcs_emulator import PREFIX
from tests.fakes.publish_artifacts import ADAPTER_VERSION, write_upstream

ROUTER_PAIRS = [p.key for p in default_plan().planned_pairs if p.agent == "router"]
SUMMARY = "training_summary.json"
FAST_FAIL_S = 1.0  # how long the store retries while the emulator is down (the default is GCS's 120 s)


def run_router_path(store: ArtifactStore, run_config: dict | None = None) -> list[dg.ExecuteInProcessResult]:
    """raw_examples → clean_examples → dataset_splits for `router`, then tuning_dataset for every router pair."""
    results = [dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store}, run_config=run_config)]
    upstream = [a.to_source_asset() for a in DATA_ASSETS]
    for pair in ROUTER_PAIRS:
        results.append(dg.materialize([tuning_dataset, *upstream], partition_key=pair, resources={"store": store},
                                      selection=[tuning_dataset]))
    return results


def uri_metadata(results) -> list[str]:
    return [v.value for r in results for e in r.get_asset_materialization_events()
            for k, v in e.materialization.metadata.items() if k.endswith("uri")]


def test_router_path_on_gcs_writes_what_the_local_store_writes(gcs_emulator, gcs_store, tmp_path, monkeypatch):
    # the source is on GCS too: raw_examples downloads it, every asset writes to gs://<bucket>/<prefix>
    source = gcs_emulator.client().bucket(gcs_emulator.bucket).blob("sources/router.jsonl")
    source.upload_from_filename(str(FIXTURES_DIR / "router.jsonl"))
    monkeypatch.setenv("COURSEGPT_ROUTER_SOURCE", f"gs://{gcs_emulator.bucket}/sources/router.jsonl")
    gcs_results = run_router_path(gcs_store)
    local = LocalStore(root=str(tmp_path / "local-store"))
    run_router_path(local, {"ops": {"raw_examples": {"config": {"source": str(FIXTURES_DIR / "router.jsonl")}}}})

    root = f"gs://{gcs_emulator.bucket}/{PREFIX}/"
    uris = uri_metadata(gcs_results)
    assert uris and all(u.startswith(root) for u in uris), uris
    # the same keys (quarantine files and split sets are named after their run id), the same bytes for every JSONL
    def keys(store) -> dict[str, str]:
        version = store.read_json(layout.splits_manifest("router"))["version"]
        return {k.replace(version, "<run>"): k for k in store.list_keys() if not k.startswith("quarantine/")}
    gcs_keys, local_keys = keys(gcs_store), keys(local)
    assert sorted(gcs_keys) == sorted(local_keys)
    assert {k for k in local_keys if k.startswith("tuning/")} == {
        f"tuning/{pair}/{name}" for pair in ROUTER_PAIRS for name in ("train.jsonl", "validation.jsonl", "manifest.json")
    }
    assert {k for k in local_keys if k.startswith("datasets/router/splits/")} == {
        "datasets/router/splits/manifest.json", *(f"datasets/router/splits/<run>/{s}.jsonl" for s in layout.SPLITS)}
    for key in local_keys:
        if key.endswith(".jsonl"):
            assert gcs_store.read_bytes(gcs_keys[key]) == local.read_bytes(local_keys[key]), key
    # what another client sees: whole objects under the prefix, hashes matching the tuning manifests
    bucket = gcs_emulator.client().bucket(gcs_emulator.bucket)
    assert gcs_emulator.object_names(f"{PREFIX}/") == [f"{PREFIX}/{k}" for k in gcs_store.list_keys()]
    for pair in ROUTER_PAIRS:
        manifest = gcs_store.read_json(layout.tuning_manifest(pair))
        assert manifest["train_uri"] == root + layout.tuning_records(pair, "train")
        for split in ("train", "validation"):
            data = bucket.blob(f"{PREFIX}/{layout.tuning_records(pair, split)}").download_as_bytes()
            assert hashlib.sha256(data).hexdigest() == manifest["sha256"][split], (pair, split)
            assert data.count(b"\n") == manifest["counts"][split]


def adapter_folder(path: Path, seed: int) -> dict[str, bytes]:
    """An adapter-shaped folder (binary weights, JSON, a nested checkpoint) with content that depends on seed."""
    files = {
        "adapter_config.json": f'{{"r": 16, "seed": {seed}}}\n'.encode(),
        "adapter_model.safetensors": hashlib.sha256(str(seed).encode()).digest() * 4096,
        "checkpoint-8/trainer_state.json": f'{{"global_step": {seed}}}\n'.encode(),
        "loss_curve.png": bytes(range(256)) * (seed + 1),
        SUMMARY: f'{{"version": "v{seed}"}}\n'.encode(),
    }
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return files


def test_upload_dir_round_trips_an_adapter_folder(gcs_emulator, gcs_store, tmp_path):
    files = adapter_folder(tmp_path / "out", seed=1)
    prefix = layout.adapter_dir("router__tiny-llama", "v1")
    uri = gcs_store.upload_dir(tmp_path / "out", prefix, last=SUMMARY)
    assert uri == f"gs://{gcs_emulator.bucket}/{PREFIX}/{prefix}"
    assert gcs_store.list_keys(prefix) == sorted(f"{prefix}/{name}" for name in files)
    copy = gcs_store.local_dir(prefix, tmp_path / "cache")
    assert {p.relative_to(copy).as_posix(): p.read_bytes() for p in copy.rglob("*") if p.is_file()} == files
    # a refreshed cache is replaced whole: a file gone from the store does not linger, and beside the link
    # only the copy it names is left (no staging, no earlier copy)
    (copy / "stale.bin").write_bytes(b"old")
    again = gcs_store.local_dir(prefix, tmp_path / "cache")
    assert again == copy and not (copy / "stale.bin").exists()
    assert sorted(p.name for p in copy.parent.iterdir()) == sorted([copy.name, os.readlink(copy)])
    # the marker is the newest object of the version (written after all the others)
    blobs = list(gcs_emulator.client().list_blobs(gcs_emulator.bucket, prefix=f"{PREFIX}/{prefix}/"))
    newest = max(blobs, key=lambda b: (b.time_created, b.generation))
    assert newest.name.endswith(f"/{SUMMARY}")


def test_card_and_publish_read_the_adapter_and_report_from_gcs(gcs_emulator, gcs_store, tmp_path):
    pair = "router__llama31-8b"  # a real base model's pair: a smoke pair is never published
    written = write_upstream(gcs_store, pair, base_dir=str(tmp_path / "base" / "llama31-8b"))
    upstream = [dg.AssetSpec("evaluation_report", partitions_def=PAIR_PARTITIONS),
                dg.AssetSpec("adapter", partitions_def=PAIR_PARTITIONS)]
    hub = LocalHub(root=str(tmp_path / "hub"))
    result = dg.materialize([*upstream, *MODEL_CARD_ASSETS, *MODEL_CARD_CHECKS], partition_key=pair,
                            resources={"store": gcs_store, "hub": hub}, selection=["model_card", "published_adapter"])
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    card = gcs_emulator.client().bucket(gcs_emulator.bucket).blob(f"{PREFIX}/{layout.card(pair)}").download_as_text()
    manifest = gcs_store.read_json(card_manifest(pair))
    assert manifest["card_sha256"] == hashlib.sha256(card.encode("utf-8")).hexdigest()
    assert manifest["adapter_version"] == ADAPTER_VERSION
    published = {p.name: p for p in (tmp_path / "hub").rglob("*") if p.is_file()}
    weights = gcs_store.read_bytes(f"{written['adapter_key']}/adapter_model.safetensors")
    assert published["adapter_model.safetensors"].read_bytes() == weights
    assert published["README.md"].read_text(encoding="utf-8") == card
    assert ADAPTER_VERSION in gcs_store.read_text(f"{written['adapter_key']}/{SUMMARY}")


# -- outages ---------------------------------------------------------------------------------------------
def test_outage_in_the_middle_of_a_stream_fails_cleanly_and_rematerialises(gcs_emulator, tmp_path):
    store = GcsStore(root=os.environ["COURSEGPT_STORE"], retry_deadline_s=FAST_FAIL_S)
    records_key, manifest_key = layout.raw_records("router"), layout.raw_manifest("router")
    assert dg.materialize([raw_examples], partition_key="router", resources={"store": store}).success
    before = {k: store.read_bytes(k) for k in store.list_keys()}
    generations = {b.name: b.generation for b in gcs_emulator.client().list_blobs(gcs_emulator.bucket)}

    # a large source streamed through a FIFO: the emulator dies while raw_examples is still writing
    fixture = (FIXTURES_DIR / "router.jsonl").read_bytes()
    copies = 40
    fifo = tmp_path / "router.jsonl"
    os.mkfifo(fifo)

    def feed():
        with fifo.open("wb") as fh:
            for i in range(copies):
                if i == copies // 2:
                    fh.flush()
                    gcs_emulator.kill()
                fh.write(fixture)

    feeder = threading.Thread(target=feed)
    feeder.start()
    result = dg.materialize([raw_examples], partition_key="router", resources={"store": store},
                            run_config={"ops": {"raw_examples": {"config": {"source": str(fifo)}}}},
                            raise_on_error=False)
    feeder.join(timeout=60)
    assert not feeder.is_alive() and not gcs_emulator.running
    assert not result.success
    message = step_failure_text(result)
    assert f"upload to {store.uri(records_key)} failed" in message and "previous version" in message, message

    # after a restart: the previous version, byte for byte and at the same generation; nothing else appeared
    gcs_emulator.start()
    assert {k: store.read_bytes(k) for k in store.list_keys()} == before
    assert {b.name: b.generation for b in gcs_emulator.client().list_blobs(gcs_emulator.bucket)} == generations

    large = tmp_path / "router-large.jsonl"
    large.write_bytes(fixture * copies)
    again = dg.materialize([raw_examples], partition_key="router", resources={"store": store},
                           run_config={"ops": {"raw_examples": {"config": {"source": str(large)}}}})
    assert again.success
    rows = fixture.count(b"\n") * copies
    assert store.read_json(manifest_key)["rows"] == rows
    assert store.read_bytes(records_key).count(b"\n") == rows


def test_outage_between_adapter_files_leaves_the_published_version_intact(gcs_emulator, tmp_path, monkeypatch):
    store = GcsStore(root=os.environ["COURSEGPT_STORE"], retry_deadline_s=FAST_FAIL_S)
    pair = "router__tiny-llama"
    v1, v2 = layout.adapter_dir(pair, "v1"), layout.adapter_dir(pair, "v2")
    old = adapter_folder(tmp_path / "v1", seed=1)
    store.upload_dir(tmp_path / "v1", v1, last=SUMMARY)
    store.write_json(layout.adapter_latest(pair), {"version": "v1"})
    new = adapter_folder(tmp_path / "v2", seed=2)

    # the emulator dies after two files of v2 went up (as tuning_job's upload would be cut off)
    original = transfer_manager.upload_many

    def upload_many(pairs, **kwargs):
        done = original(pairs[:2], **kwargs)
        gcs_emulator.kill()
        return done + original(pairs[2:], **kwargs)

    monkeypatch.setattr(transfer_manager, "upload_many", upload_many)
    with pytest.raises(StoreError, match=re.escape(f"to {store.uri(v2)} failed")):
        store.upload_dir(tmp_path / "v2", v2, last=SUMMARY)
    monkeypatch.setattr(transfer_manager, "upload_many", original)

    gcs_emulator.start()
    assert store.read_json(layout.adapter_latest(pair)) == {"version": "v1"}
    assert {k[len(v1) + 1:]: store.read_bytes(k) for k in store.list_keys(v1)} == old
    written = {k[len(v2) + 1:]: store.read_bytes(k) for k in store.list_keys(v2)}
    assert len(written) == 2 and SUMMARY not in written  # the version is visibly incomplete: no marker
    assert all(new[name] == data for name, data in written.items())  # and no object holds part of a file

    assert store.upload_dir(tmp_path / "v2", v2, last=SUMMARY) == store.uri(v2)
    assert {k[len(v2) + 1:]: store.read_bytes(k) for k in store.list_keys(v2)} == new


def test_a_gcs_source_that_cannot_be_read_names_the_uri(gcs_emulator):
    from coursegpt_assets.data.sources import SourceError, iter_source

    with pytest.raises(SourceError) as missing_bucket:
        list(iter_source("gs://no-such-bucket/router/records.jsonl"))
    message = str(missing_bucket.value)
    assert message.startswith("gs://no-such-bucket/router/records.jsonl: could not read from Google Cloud Storage")
    assert "STORAGE_EMULATOR_HOST" in message
    with pytest.raises(SourceError, match="no objects found"):
        list(iter_source(f"gs://{gcs_emulator.bucket}/nothing/here.jsonl"))


def test_sha256_of_a_stored_object_comes_with_it_and_falls_back_to_the_bytes(gcs_emulator, gcs_store, monkeypatch):
    _, _, written = gcs_store.write_lines("datasets/x/records.jsonl", [b'{"a": 1}', b'{"b": 2}'])
    with monkeypatch.context() as m:  # the recorded digest: no download needed
        m.setattr(type(gcs_store), "read_bytes", lambda *a, **k: pytest.fail("sha256 downloaded the object"))
        assert gcs_store.sha256("datasets/x/records.jsonl") == written
    # an object another tool uploaded has no recorded digest: its bytes are hashed
    blob = gcs_emulator.client().bucket(gcs_emulator.bucket).blob(f"{PREFIX}/datasets/x/other.jsonl")
    blob.upload_from_string(b'{"c": 3}\n')
    assert gcs_store.sha256("datasets/x/other.jsonl") == hashlib.sha256(b'{"c": 3}\n').hexdigest()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gcs_store.sha256("datasets/x/missing.jsonl")


def test_lines_stream_in_ranged_reads_of_one_generation(gcs_emulator, gcs_store, monkeypatch):
    """A JSONL object is read a chunk at a time (never whole), and an overwrite during a read cannot mix
    two versions into it: the read stays on the generation it opened, which GCS answers 404 once replaced."""
    import resources.gcs_store as gcs_module

    old = [f'{{"id": "old-{i:05d}", "pad": "{"x" * 50}"}}'.encode() for i in range(400)]
    gcs_store.write_lines("big/records.jsonl", old)
    monkeypatch.setattr(gcs_module, "READ_CHUNK_BYTES", 4096)  # ~28 KB object: several ranged reads
    fetched = []
    download = Blob.download_as_bytes

    def counting(self, *args, **kwargs):
        data = download(self, *args, **kwargs)
        fetched.append(len(data))
        return data

    monkeypatch.setattr(Blob, "download_as_bytes", counting)
    assert [line for _, line in gcs_store.iter_lines("big/records.jsonl")] == old
    assert len(fetched) > 4 and max(fetched) <= 4096 + 1  # ranged reads, none of the whole object

    lines, fetched[:] = gcs_store.iter_lines("big/records.jsonl"), []
    first = [line for _, line in itertools.islice(lines, 10)]
    gcs_store.write_lines("big/records.jsonl", [b'{"id": "new"}'] * 400)  # overwritten mid-read
    assert first == old[:10]
    with pytest.raises(StoreError, match=r"big/records.jsonl changed while it was being read"):
        list(lines)  # the bucket keeps no old generation: the read stops, naming the object
    assert [line for _, line in gcs_store.iter_lines("big/records.jsonl")] == [b'{"id": "new"}'] * 400
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        list(gcs_store.iter_lines("missing.jsonl"))
