import pytest

from resources.gcs_store import GcsStore
from resources.storage import ArtifactStore, StoreError


def test_jsonl_round_trip_and_hash(store):
    uri, count, sha = store.write_jsonl("a/rows.jsonl", iter([{"x": 1}, {"x": "é"}]))
    assert count == 2 and len(sha) == 64 and uri.endswith("a/rows.jsonl")
    assert store.read_jsonl("a/rows.jsonl") == [{"x": 1}, {"x": "é"}]
    assert store.list_keys("a") == ["a/rows.jsonl"]


def test_a_failed_write_leaves_neither_a_file_nor_a_temp_file(store, tmp_path):
    store.write_text("b/report.json", "old")

    def rows():
        yield {"ok": 1}
        raise RuntimeError("crash in the middle of a write")

    with pytest.raises(RuntimeError):
        store.write_jsonl("b/report.json", rows())
    assert store.read_text("b/report.json") == "old"  # the previous version is intact
    assert list((tmp_path / "store" / "b").iterdir()) == [tmp_path / "store" / "b" / "report.json"]
    with pytest.raises(RuntimeError):
        store.write_jsonl("c/new.jsonl", rows())
    assert not store.exists("c/new.jsonl")


def test_missing_object_error_names_the_path(store):
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        store.read_json("nope.json")


def test_invalid_jsonl_line_is_reported_with_its_number(store):
    store.write_text("d/bad.jsonl", '{"a": 1}\n{broken\n')
    with pytest.raises(StoreError, match="line 2: invalid JSON"):
        store.read_jsonl("d/bad.jsonl")


def test_upload_dir_writes_the_marker_last(store, tmp_path):
    src = tmp_path / "adapter"
    src.mkdir()
    for name in ("training_summary.json", "adapter_config.json", "z.bin"):
        (src / name).write_text(name)
    order = []
    original = ArtifactStore.write_bytes

    def spy(self, key, data, content_type="application/octet-stream"):
        order.append(key.rsplit("/", 1)[-1])
        return original(self, key, data, content_type)

    ArtifactStore.write_bytes = spy
    try:
        store.upload_dir(src, "adapters/p/v1", last="training_summary.json")
    finally:
        ArtifactStore.write_bytes = original
    assert order[-1] == "training_summary.json" and len(order) == 3


def test_gcs_uri_shape():
    s = GcsStore(root="gs://bucket/some/prefix")
    assert s.uri("datasets/router/x.jsonl") == "gs://bucket/some/prefix/datasets/router/x.jsonl"


def test_many_chunk_write_matches_the_bytes_and_their_digest(store, tmp_path):
    import hashlib

    lines = [b'{"i": %d, "pad": "%s"}' % (i, b"x" * 300) for i in range(20_000)]  # ~6 MiB: several chunks
    _, count, sha = store.write_lines("big/rows.jsonl", iter(lines))
    data = (tmp_path / "store" / "big" / "rows.jsonl").read_bytes()
    assert count == len(lines) and data == b"\n".join(lines) + b"\n"
    assert sha == hashlib.sha256(data).hexdigest() == store.sha256("big/rows.jsonl")


def test_a_producer_error_after_several_chunks_keeps_the_previous_version(store):
    store.write_lines("big/rows.jsonl", [b'{"v": "old"}'])

    def lines():
        for _ in range(20_000):
            yield b'{"pad": "%s"}' % (b"x" * 300)
        raise ValueError("bad record 20001")

    with pytest.raises(ValueError, match="20001"):
        store.write_lines("big/rows.jsonl", lines())
    assert store.read_jsonl("big/rows.jsonl") == [{"v": "old"}]
    assert store.list_keys("big") == ["big/rows.jsonl"]


def test_a_write_error_on_the_writer_thread_reaches_the_caller(store, monkeypatch):
    import resources.storage as storage

    def broken(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage._ChunkSink, "_write", broken)
    with pytest.raises(OSError, match="No space left"):
        store.write_lines("full/rows.jsonl", (b'{"pad": "%s"}' % (b"x" * 300) for _ in range(20_000)))
    assert not store.exists("full/rows.jsonl") and store.list_keys("full") == []


def test_recorded_digest_is_used_only_while_the_file_is_as_written(store, tmp_path, monkeypatch):
    import hashlib
    import os

    _, _, sha = store.write_lines("d/rows.jsonl", [b'{"a": 1}'])
    path = tmp_path / "store" / "d" / "rows.jsonl"
    reads = []
    real_digest = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda fh, name: reads.append(1) or real_digest(fh, name))
    assert store.sha256("d/rows.jsonl") == sha
    recorded = not reads  # filesystems without user xattrs hash every time, which is also right
    with path.open("r+b") as fh:  # an edit in place, same size: the record must not be trusted
        fh.write(b'{"a": 2}')
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    assert store.sha256("d/rows.jsonl") == hashlib.sha256(path.read_bytes()).hexdigest() != sha
    assert reads, "a changed file must be hashed"
    if recorded:
        reads.clear()
        store.write_bytes("d/blob.bin", b"abc")
        assert store.sha256("d/blob.bin") == hashlib.sha256(b"abc").hexdigest() and not reads
