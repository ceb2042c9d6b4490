import pytest

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
    s = ArtifactStore(root="gs://bucket/some/prefix")
    assert s.uri("datasets/router/x.jsonl") == "gs://bucket/some/prefix/datasets/router/x.jsonl"
