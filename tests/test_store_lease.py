"""`ArtifactStore.create_exclusive` on both backends (a folder, and GCS through the emulator with
`ifGenerationMatch` honoured as real GCS does) and the StoreLease built on it: one winner among racing
writers, expiry of a crashed holder's lease, release, and no number ever reused."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from resources.store_lease import LEASE_PREFIX, StoreLease, describe, is_held


@pytest.fixture(params=["local", "gcs"])
def any_store(request, store):
    """The same tests on LocalStore and on GcsStore (the emulator in a subprocess)."""
    if request.param == "local":
        return store
    return request.getfixturevalue("gcs_store")


def test_create_exclusive_writes_once_and_keeps_the_first_bytes(any_store):
    assert any_store.create_exclusive("leases/x/00000000.json", b'{"n": 1}\n', "application/json")
    assert not any_store.create_exclusive("leases/x/00000000.json", b'{"n": 2}\n')
    assert any_store.create_exclusive("leases/x/00000000.json", b'{"n": 1}\n')  # a retry that had landed
    assert any_store.read_bytes("leases/x/00000000.json") == b'{"n": 1}\n'
    assert any_store.list_keys("leases/x") == ["leases/x/00000000.json"]  # no temp file left behind
    assert any_store.sha256("leases/x/00000000.json") == hashlib.sha256(b'{"n": 1}\n').hexdigest()


def test_of_racing_writers_exactly_one_wins(any_store):
    barrier, wins = threading.Barrier(6), []

    def write(i: int) -> None:
        barrier.wait()
        if any_store.create_exclusive("race/one.json", json.dumps({"writer": i}).encode()):
            wins.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and any_store.read_json("race/one.json") == {"writer": wins[0]}


def test_the_lease_keeps_others_out_until_released(any_store):
    first, second = StoreLease(any_store, "job/abc", note={"pair": "p"}), StoreLease(any_store, "job/abc")
    assert first.acquire() and first.acquire()  # holding it already
    assert not second.acquire()
    n, entry = second.latest()
    assert n == 0 and is_held(entry) and entry["pair"] == "p" and "held by" in describe(entry)
    first.release(created="projects/p/locations/l/tuningJobs/1")
    assert second.acquire()
    second.release()
    states = [any_store.read_json(k)["state"] for k in any_store.list_keys(f"{LEASE_PREFIX}/job/abc")]
    assert states == ["held", "released", "held", "released"]


def test_an_expired_lease_is_taken_over_once(store):
    crashed = StoreLease(store, "job/abc", timeout_s=0.2)
    assert crashed.acquire()
    contenders = [StoreLease(store, "job/abc") for _ in range(3)]
    assert not any(c.acquire() for c in contenders)
    time.sleep(0.3)
    assert [c.acquire() for c in contenders] == [True, False, False]
    crashed.release()  # the late holder's release finds its number taken and writes nothing
    keys = store.list_keys(f"{LEASE_PREFIX}/job/abc")
    assert [store.read_json(k)["state"] for k in keys] == ["held", "held"]
    assert store.read_json(keys[-1])["holder"] == contenders[0].token
