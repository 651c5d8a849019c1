"""The writer lease: one writer at a time, waits or fails in one line, lapses when its holder dies;
version numbers are claimed atomically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blocknerf.errors import StoreError
from blocknerf.store import BlockStore
from blocknerf.store.lease import LEASE_KEY, LeaseHolder, WriterLease, _encode, read_holder
from blocknerf.store.conditional import LocalObjects


def test_a_second_writer_fails_in_one_line_with_no_wait(tiny_store_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = BlockStore.open(tiny_store_copy, writable=True)
    with store.writer_lease("update"):
        # Another process asks (the lease belongs to this one, so a child process is the other writer).
        proc = subprocess.run(
            [sys.executable, "-m", "blocknerf", "gc", str(tiny_store_copy), "--no-wait"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "another writer holds the store's lease: `update`" in lines[0]
    assert read_holder(LocalObjects(tiny_store_copy))[0] is None  # released


def test_a_second_writer_waits_with_a_message_then_runs(tiny_store_copy: Path) -> None:
    store = BlockStore.open(tiny_store_copy, writable=True)
    lease = store.writer_lease("train").acquire()
    proc = subprocess.Popen(
        [sys.executable, "-m", "blocknerf", "gc", str(tiny_store_copy)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        line = proc.stderr.readline()  # blocks until the waiting message (bounded by the timeout below)
        assert "waiting for the store's writer lease, held by `train`" in line
    finally:
        lease.release()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "published versions kept" in out


def test_a_lease_lapses_when_expired_or_its_process_is_gone(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path)
    stale = LeaseHolder("x", "train", "elsewhere", 1, 0.0, 10.0)  # another host, expired at t=10
    objects.create(LEASE_KEY, _encode(stale))
    with pytest.raises(StoreError, match="another writer holds"):
        WriterLease(objects, "s", command="gc", clock=lambda: 5.0).acquire(wait=False)
    lease = WriterLease(objects, "s", command="gc", clock=lambda: 11.0).acquire(wait=False)
    assert read_holder(objects)[0].command == "gc"
    lease.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    import socket

    objects.replace(LEASE_KEY, _encode(LeaseHolder("y", "update", socket.gethostname(), int(dead.stdout), 0.0, 1e12)), read_holder(objects)[1])
    WriterLease(objects, "s", command="gc").acquire(wait=False).release()  # the holder's process is gone


def test_a_writer_that_lost_its_lease_cannot_renew(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path)
    first = WriterLease(objects, "s", command="train", ttl_s=30.0, clock=lambda: 0.0)
    assert first.try_acquire() is None
    # It lapsed (clock at 100 s, another host's view) and someone else took it.
    objects.replace(LEASE_KEY, _encode(LeaseHolder("z", "gc", "elsewhere", 1, 100.0, 130.0)), read_holder(objects)[1])
    with pytest.raises(StoreError, match="taken by another writer"):
        first.renew()
    with pytest.raises(StoreError, match="taken by another writer"):
        first.check()


def test_publishing_is_refused_while_another_process_holds_the_lease(tiny_store_copy: Path) -> None:
    store = BlockStore.open(tiny_store_copy, writable=True)
    objects = LocalObjects(tiny_store_copy)
    import socket

    objects.create(LEASE_KEY, _encode(LeaseHolder("o", "update", "elsewhere", 1, 0.0, 1e12)))
    block_id = store.plan.ids[0]
    with pytest.raises(StoreError, match="another writer holds the store's lease"):
        store.publish({block_id: 1})
    with pytest.raises(StoreError, match="another writer holds the store's lease"):
        store.gc(2)
    assert socket.gethostname()


def test_version_numbers_are_claimed_atomically(tiny_store_copy: Path) -> None:
    """A second writer that listed the versions before the first claimed one still gets a new number."""
    store = BlockStore.open(tiny_store_copy, writable=True)
    block_id = store.plan.ids[0]
    arrays, attrs = store.read_version(block_id, 1)
    kept = {k: v for k, v in attrs.items() if k not in ("checksum", "version", "created", "complete", "block_id")}
    # Someone else claimed v2 between our listing and our write: the claim is the version's zarr.json.
    assert LocalObjects(tiny_store_copy).create(f"blocks/{block_id}/v2/zarr.json", json.dumps(
        {"zarr_format": 3, "node_type": "group", "attributes": {"complete": False}}).encode())
    assert store.write_version(block_id, arrays, kept) == 3
    assert LocalObjects(tiny_store_copy).create(f"blocks/{block_id}/v3/zarr.json", b"{}") is None
