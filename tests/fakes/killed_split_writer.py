"""A child process that materialises dataset_splits for `router` and stops at a named point of its writes, so
the parent can SIGKILL it there, deterministically (tests/test_killed_writes.py).

    python -m tests.fakes.killed_split_writer <store root> <file>:<when> <ready file>

`<file>` is the name of the key to stop at (`train.jsonl`, `test.jsonl`, `manifest.json`); `<when>` is
`during` (its bytes are written, not yet renamed into place), or `after` (it is in place). At that point the
child creates `<ready file>` and sleeps until it is killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import dagster as dg

from coursegpt_assets.defs.data.assets import DATA_ASSETS, dataset_splits
from resources.gcs_store import GcsStore
from resources.local_store import LocalStore

WHEN = ("during", "after")


class _Pausing:
    """Mixed into a store: `_write_file` stops at `pause_at` and signals `ready_file`."""

    pause_at: str
    ready_file: str

    def _stop(self) -> None:
        Path(self.ready_file).write_text("ready\n")
        while True:  # the parent kills this process now
            time.sleep(60)

    def _write_file(self, key, writer, content_type):
        name, _, when = self.pause_at.partition(":")
        if Path(key).name != name:
            return super()._write_file(key, writer, content_type)
        if when == "during":
            def write_then_stop(fh):
                sha = writer(fh)
                fh.flush()
                self._stop()
                return sha

            return super()._write_file(key, write_then_stop, content_type)
        uri = super()._write_file(key, writer, content_type)
        self._stop()
        return uri


class PausingLocalStore(_Pausing, LocalStore):
    pause_at: str
    ready_file: str


class PausingGcsStore(_Pausing, GcsStore):
    pause_at: str
    ready_file: str


def main(root: str, pause_at: str, ready_file: str) -> None:
    if pause_at.partition(":")[2] not in WHEN:
        raise SystemExit(f"{pause_at!r}: expected <file>:{'|'.join(WHEN)}")
    backend = PausingGcsStore if root.startswith("gs://") else PausingLocalStore
    store = backend(root=root, pause_at=pause_at, ready_file=ready_file)
    upstream = [a.to_source_asset() for a in DATA_ASSETS if a is not dataset_splits]
    dg.materialize([dataset_splits, *upstream], partition_key="router", resources={"store": store},
                   selection=[dataset_splits])
    raise SystemExit(f"dataset_splits finished without reaching {pause_at}")


if __name__ == "__main__":
    main(*sys.argv[1:])
