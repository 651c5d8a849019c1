"""The writer lease: one process at a time changes a store; readers never take it.

Commands that write (``train``, ``update``, ``gc``, ``rollback``; ``bake`` and ``compose`` through
``BlockStore.writer_lease``) hold the lease for their whole run. The lease is one small object,
``lease/zarr.json`` (a zarr group whose attributes hold it, so zarr sees nothing foreign), taken and
renewed only by compare-and-swap (``blocknerf.store.conditional``): an exclusive create or a
conditional put on S3, a locked compare-and-rename on a local disk. It names its holder (a random
id, host, pid, command) and an expiry; a heartbeat thread renews it every third of its time to
live. It lapses when its expiry passes, or at once when its holder ran on this host and that
process is gone (a killed writer does not block the next one). A second writer waits, printing
who holds it, or fails with one line (``--no-wait``). ``BlockStore.publish`` refuses to write the
manifest while a live lease is held by another process, so a writer that lost its lease never
publishes over the new holder.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from blocknerf.errors import StoreError
from blocknerf.store.conditional import StoreObjects

__all__ = ["LEASE_KEY", "LeaseHolder", "WriterLease", "read_holder"]

LEASE_KEY = "lease/zarr.json"
DEFAULT_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds (or held) a store's writer lease."""

    holder: str
    command: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float
    """Seconds since the epoch; the lease lapses after it unless renewed."""

    def describe(self, now: float) -> str:
        left = self.expires_at - now
        return f"`{self.command}` (pid {self.pid} on {self.host}, lease expires in {max(left, 0):.0f} s unless renewed)"

    def is_live(self, now: float) -> bool:
        """Not expired, and (when it ran on this host) its process still exists."""
        if self.expires_at <= now:
            return False
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return True

    def is_this_process(self) -> bool:
        return self.host == socket.gethostname() and self.pid == os.getpid()


def _encode(holder: LeaseHolder | None) -> bytes:
    attrs = {"writer_lease": None if holder is None else asdict(holder)}
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attrs}).encode()


def _decode(data: bytes) -> LeaseHolder | None:
    try:
        doc = json.loads(data)["attributes"]["writer_lease"]
        return None if doc is None else LeaseHolder(**{k: doc[k] for k in LeaseHolder.__slots__})
    except (ValueError, OverflowError, KeyError, TypeError):
        return None  # an unreadable lease object counts as free (and is replaced by compare-and-swap)


def read_holder(objects: StoreObjects) -> tuple[LeaseHolder | None, str | None]:
    """The current lease holder (None when free) and the object's token (None when absent)."""
    found = objects.read(LEASE_KEY)
    if found is None:
        return None, None
    return _decode(found[0]), found[1]


class WriterLease:
    """A store's writer lease, held from ``acquire`` (or ``with``) to ``release``."""

    def __init__(
        self, objects: StoreObjects, url: str, *, command: str, ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.objects = objects
        self.url = url
        self.command = command
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self.holder: LeaseHolder | None = None
        self._token: str | None = None
        self._stop = threading.Event()
        self._lost: str | None = None
        self._thread: threading.Thread | None = None

    # -- taking and giving back -----------------------------------------------------------------
    def try_acquire(self) -> LeaseHolder | None:
        """Take the lease if it is free or lapsed: None on success, else the live holder."""
        now = self.clock()
        current, token = read_holder(self.objects)
        if current is not None and current.is_live(now) and not current.is_this_process():
            return current
        mine = LeaseHolder(uuid.uuid4().hex, self.command, socket.gethostname(), os.getpid(), now, now + self.ttl_s)
        data = _encode(mine)
        new_token = self.objects.create(LEASE_KEY, data) if token is None else self.objects.replace(LEASE_KEY, data, token)
        if new_token is None:  # somebody else swapped it first: look again
            again, _ = read_holder(self.objects)
            return again if again is not None else mine
        self.holder, self._token, self._lost = mine, new_token, None
        return None

    def acquire(
        self, *, wait: bool = True, on_wait: Callable[[LeaseHolder], None] | None = None, poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> WriterLease:
        """Take the lease; when another writer holds it, wait (calling ``on_wait`` once with the
        holder) or, with ``wait=False``, raise StoreError naming the holder. Starts the heartbeat."""
        started = self.clock()
        told = False
        while True:
            other = self.try_acquire()
            if other is None:
                break
            if not wait or (timeout_s is not None and self.clock() - started > timeout_s):
                raise StoreError(self.url, f"another writer holds the store's lease: {other.describe(self.clock())}")
            if on_wait is not None and not told:
                on_wait(other)
                told = True
            self._stop.wait(poll_s)
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="blocknerf-lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def renew(self) -> None:
        """Extend the lease by its time to live; StoreError when it was lost to another writer."""
        if self.holder is None or self._token is None:
            raise StoreError(self.url, "the writer lease is not held")
        now = self.clock()
        renewed = LeaseHolder(self.holder.holder, self.command, self.holder.host, self.holder.pid, self.holder.acquired_at, now + self.ttl_s)
        token = self.objects.replace(LEASE_KEY, _encode(renewed), self._token)
        if token is None:
            self._lost = "the writer lease was taken by another writer (this one lapsed)"
            raise StoreError(self.url, self._lost)
        self.holder, self._token = renewed, token

    def check(self) -> None:
        """StoreError when this lease has been lost (call before publishing)."""
        if self._lost:
            raise StoreError(self.url, self._lost)
        current, token = read_holder(self.objects)
        if current is None or self.holder is None or current.holder != self.holder.holder:
            self._lost = "the writer lease was taken by another writer (this one lapsed)"
            raise StoreError(self.url, self._lost)

    def release(self) -> None:
        """Give the lease back (stops the heartbeat); a lost lease is left to its new holder."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._token is not None and not self._lost:
            self.objects.replace(LEASE_KEY, _encode(None), self._token)
        self.holder, self._token = None, None

    def __enter__(self) -> WriterLease:
        if self.holder is None:
            self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3.0):
            try:
                self.renew()
            except (StoreError, OSError):
                return
