"""Sources as users have them: a UTF-8 BOM (files saved on Windows), `.jsonl.gz` / `.jsonl.zst`, on disk and on
GCS, and files that are not what their name says (one error naming the file and what it holds)."""

from __future__ import annotations

import gzip
import json
import random

import dagster as dg
import pytest
import zstandard

from coursegpt_assets.core import layout
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.data import sources
from coursegpt_assets.data.sources import SourceError, iter_source, line_table
from coursegpt_assets.defs.data.assets import DATA_ASSETS, raw_examples
from tests.conftest import step_failure_text

ROUTER = FIXTURES_DIR / "router.jsonl"
COMPRESS = {".gz": gzip.compress, ".zst": lambda data: zstandard.ZstdCompressor().compress(data)}


def _rows(source) -> list[tuple[int, dict | None, str | None]]:
    return [(r.line, r.record, r.error) for r in iter_source(str(source))]


def _random_lines(n: int) -> bytes:
    """Lines that do not compress to almost nothing, so a cut file really ends mid-stream."""
    rng = random.Random(7)
    return "".join(json.dumps({"id": i, "x": rng.random()}) + "\n" for i in range(n)).encode()


def test_a_utf8_bom_is_no_part_of_the_first_record(tmp_path):
    plain = ROUTER.read_bytes()
    bom = tmp_path / "router.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.replace(b"\n", b"\r\n"))  # as Notepad saves it
    rows = _rows(bom)
    assert rows == _rows(ROUTER)
    assert rows[0][1] is not None and rows[0][2] is None


def test_the_raw_asset_quarantines_nothing_more_for_a_bom(tmp_path, store):
    bom = tmp_path / "router.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + ROUTER.read_bytes())
    config = {"ops": {"raw_examples": {"config": {"source": str(bom)}}}}
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store}, run_config=config)
    with_bom = store.read_json(layout.clean_manifest("router"))
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store},
                   run_config={"ops": {"raw_examples": {"config": {"source": str(ROUTER)}}}})
    assert with_bom["quarantined"] == store.read_json(layout.clean_manifest("router"))["quarantined"]
    assert with_bom["sha256"] == store.read_json(layout.clean_manifest("router"))["sha256"]


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_files_read_as_the_plain_file(tmp_path, suffix):
    packed = tmp_path / f"router.jsonl{suffix}"
    packed.write_bytes(COMPRESS[suffix](b"\xef\xbb\xbf" + ROUTER.read_bytes()))
    assert _rows(packed) == _rows(ROUTER)


def test_a_multi_frame_zstd_file_is_read_to_its_end(tmp_path):
    data = _random_lines(3000)
    half = data.index(b"\n", len(data) // 2) + 1
    packed = tmp_path / "two-frames.jsonl.zst"  # zstd -T / pzstd write several frames, one after the other
    packed.write_bytes(COMPRESS[".zst"](data[:half]) + COMPRESS[".zst"](data[half:]))
    assert [r.record["id"] for r in iter_source(str(packed))] == list(range(3000))


def test_a_folder_mixes_plain_and_compressed_files_and_names_them_by_line(tmp_path):
    lines = ROUTER.read_bytes().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines[:5]))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[5:12])))
    (tmp_path / "c.ndjson.zst").write_bytes(COMPRESS[".zst"](b"".join(lines[12:])))
    (tmp_path / "dataset_info.json.gz").write_bytes(gzip.compress(b"{}"))  # not records: left alone
    assert [r[1:] for r in _rows(tmp_path)] == [r[1:] for r in _rows(ROUTER)]
    table = line_table(str(tmp_path))
    assert [t["file"] for t in table] == ["a.jsonl", "b.jsonl.gz", "c.ndjson.zst"]
    assert table[1] == {"file": "b.jsonl.gz", "first": 6, "last": 12}


@pytest.mark.parametrize(("name", "data", "message"), [
    ("router.jsonl", gzip.compress(b'{"a": 1}\n'), "router.jsonl: holds gzip-compressed data, not JSON Lines text; "
                                                   "name it router.jsonl.gz"),
    ("router.jsonl", COMPRESS[".zst"](b'{"a": 1}\n'), "holds Zstandard-compressed data, not JSON Lines text; "
                                                      "name it router.jsonl.zst"),
    ("router.jsonl", b"PAR1" + bytes(range(256)) * 4, "holds Parquet data, not JSON Lines text; name it router.parquet"),
    ("router.jsonl", b"\x7fELF\x02\x01\x01\x00" + bytes(300), "holds binary data (NUL bytes"),
    ("router.jsonl", '{"a": 1}\n'.encode("utf-16"), "holds UTF-16 text, not JSON Lines text; save it as UTF-8"),
    ("router.jsonl", b"PK\x03\x04" + bytes(40), "holds a ZIP archive"),
    ("router.jsonl.gz", b'{"a": 1}\n', "named .gz but holds uncompressed data, not gzip-compressed data"),
    ("router.jsonl.zst", gzip.compress(b'{"a": 1}\n'), "named .zst but holds gzip-compressed data"),
    ("router.jsonl.gz", gzip.compress(gzip.compress(b'{"a": 1}\n')), "after gzip decompression, holds gzip-compressed"),
])
def test_a_file_that_is_not_what_its_name_says_fails_once_saying_what_it_is(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(SourceError) as error:
        _rows(path)
    assert str(path) in str(error.value) and message in str(error.value)


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_a_cut_compressed_file_fails_instead_of_ending_early(tmp_path, suffix):
    packed = COMPRESS[suffix](_random_lines(20_000))
    path = tmp_path / f"router.jsonl{suffix}"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(SourceError, match="stream is corrupt or cut short") as error:
        _rows(path)
    assert str(path) in str(error.value)
    with pytest.raises(SourceError, match="stream is corrupt or cut short"):
        sources.last_nonblank_line(path)


def test_the_raw_asset_fails_with_one_message_for_gzip_named_jsonl(tmp_path, store):
    source = tmp_path / "router.jsonl"
    source.write_bytes(gzip.compress(ROUTER.read_bytes()))
    result = dg.materialize([raw_examples], partition_key="router", resources={"store": store},
                            run_config={"ops": {"raw_examples": {"config": {"source": str(source)}}}},
                            raise_on_error=False)
    assert not result.success
    assert "gzip-compressed data, not JSON Lines text; name it router.jsonl.gz" in step_failure_text(result)
    assert not store.exists(layout.raw_records("router"))


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_objects_on_gcs_read_as_the_plain_file(gcs_emulator, suffix):
    bucket = gcs_emulator.client().bucket(gcs_emulator.bucket)
    bucket.blob(f"sources/router.jsonl{suffix}").upload_from_string(COMPRESS[suffix](ROUTER.read_bytes()))
    assert _rows(f"gs://{gcs_emulator.bucket}/sources/router.jsonl{suffix}") == _rows(ROUTER)


def test_a_gcs_folder_is_read_without_its_siblings_of_a_longer_name(gcs_emulator):
    bucket = gcs_emulator.client().bucket(gcs_emulator.bucket)
    lines = ROUTER.read_bytes().splitlines(keepends=True)
    bucket.blob("src/router/part-0.jsonl.gz").upload_from_string(gzip.compress(b"".join(lines)))
    bucket.blob("src/router2/part-0.jsonl").upload_from_string(b'{"not": "router"}\n')
    assert _rows(f"gs://{gcs_emulator.bucket}/src/router") == _rows(ROUTER)
