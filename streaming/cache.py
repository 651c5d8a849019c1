"""An LRU cache of loaded blocks under a byte budget that is never exceeded, safe across threads.

Sizes are known before loading (``estimate``: from the store's metadata), so room is made first
and the block loaded after: the bytes held plus the bytes reserved for loads in flight never pass
``max_bytes``. A loaded block is charged ``max(estimate, block.nbytes)``; should the block turn out
larger than estimated, others are evicted at once (and the excess, which should never happen, is
recorded in ``over_budget_bytes``).

Two kinds of load share the budget:

* demand loads (``lease``) by the renderer: they evict least recently used blocks that nobody is
  rendering, pinned ones last, and wait for prefetches in flight when those hold the room;
* prefetch loads (``prefetch``) by a background thread: they evict only blocks that are neither in
  use, nor pinned (the blocks of the frame being rendered), nor protected (needed sooner), and give
  up rather than wait.

Keys are (block id, version, level): each level of detail of a block is its own entry, loaded,
charged and evicted on its own. ``evict_first(key)`` ranks entries for eviction: among those a load
may evict, higher ranks go first (the streamer ranks finer levels higher, so far blocks keep their
coarse levels longest), least recently used first within a rank.

Counters: hits, misses, evictions, prefetch loads, prefetched blocks later hit, waits on loads in
flight, the bytes loaded, and the milliseconds of every load.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dask.utils import format_bytes

from blocknerf.errors import BlockNerfError
from streaming.protocol import LevelKey

B = TypeVar("B")


class BlockTooLargeError(BlockNerfError):
    """A block does not fit in the memory budget on its own."""

    def __init__(self, key: LevelKey, nbytes: int, max_bytes: int) -> None:
        self.key, self.nbytes, self.max_bytes = key, nbytes, max_bytes
        super().__init__(
            f"block {_name(key)} needs {format_bytes(nbytes)} but the memory budget is "
            f"{format_bytes(max_bytes)}; raise the budget (--memory-budget, stream.memory_budget_mb) "
            f"to at least {format_bytes(nbytes)}"
        )


class CacheFullError(BlockNerfError):
    """The blocks in use leave no room for a block that must be loaded now."""

    def __init__(self, key: LevelKey, nbytes: int, max_bytes: int, in_use: int) -> None:
        super().__init__(
            f"cannot load block {_name(key)} ({format_bytes(nbytes)}): the memory budget of "
            f"{format_bytes(max_bytes)} is held by {format_bytes(in_use)} of blocks in use; raise "
            "the budget (--memory-budget) or blend fewer blocks (stream.max_blocks)"
        )


@dataclass(frozen=True, slots=True)
class CacheCounters:
    """A snapshot of the cache's counters."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    prefetch_loads: int = 0
    """Blocks loaded by the prefetcher."""
    prefetch_hits: int = 0
    """Prefetched blocks that were hit when first needed."""
    waits: int = 0
    """Demand requests that waited for a load in flight (usually a prefetch)."""
    loads: int = 0
    """Completed loads (demand and prefetch)."""
    load_ms_total: float = 0.0
    used_bytes: int = 0
    peak_bytes: int = 0
    """Most bytes ever held plus reserved for loads in flight."""
    over_budget_bytes: int = 0
    """Most bytes ever held beyond the budget (0 unless a block was larger than its estimate)."""
    loaded_bytes: int = 0
    """Bytes charged for every completed load together (what streaming read, in memory terms)."""

    def minus(self, before: CacheCounters) -> dict[str, Any]:
        """Counter increments since ``before`` (for per-frame statistics)."""
        return {
            "hits": self.hits - before.hits,
            "misses": self.misses - before.misses,
            "evictions": self.evictions - before.evictions,
            "prefetch_loads": self.prefetch_loads - before.prefetch_loads,
            "prefetch_hits": self.prefetch_hits - before.prefetch_hits,
            "waits": self.waits - before.waits,
        }

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(eq=False)
class _Entry(Generic[B]):
    block: B
    charge: int
    leases: int = 0
    prefetched: bool = False
    used: bool = False


@dataclass(eq=False)
class _Loading:
    reserved: int
    by_prefetch: bool


@dataclass
class _Counts:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    prefetch_loads: int = 0
    prefetch_hits: int = 0
    waits: int = 0
    load_ms: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    over_budget_bytes: int = 0
    loaded_bytes: int = 0


class BlockCache(Generic[B]):
    """Loaded blocks by key, least recently used first out, within ``max_bytes``.

    ``load(key)`` loads a block (called without the lock held, possibly from two threads for two
    different keys); ``estimate(key)`` gives its size in bytes before loading (an upper bound
    ideally; the larger of it and ``nbytes(block)`` is charged).
    """

    def __init__(
        self,
        max_bytes: int,
        load: Callable[[LevelKey], B],
        estimate: Callable[[LevelKey], int],
        *,
        nbytes: Callable[[B], int] = lambda block: int(block.nbytes),  # type: ignore[attr-defined]
        evict_first: Callable[[LevelKey], int] = lambda key: 0,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = int(max_bytes)
        self._load = load
        self._estimate = estimate
        self._nbytes = nbytes
        self._evict_first = evict_first
        self._cond = threading.Condition(threading.RLock())
        self._entries: OrderedDict[LevelKey, _Entry[B]] = OrderedDict()
        self._loading: dict[LevelKey, _Loading] = {}
        self._estimates: dict[LevelKey, int] = {}
        self._pinned: frozenset[LevelKey] = frozenset()
        self._counts = _Counts()
        self._used = 0
        self._reserved = 0

    # -- queries --------------------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        with self._cond:
            return key in self._entries

    def keys(self) -> list[LevelKey]:
        """Loaded keys, least recently used first."""
        with self._cond:
            return list(self._entries)

    @property
    def used_bytes(self) -> int:
        """Bytes charged for loaded blocks."""
        with self._cond:
            return self._used

    @property
    def accounted_bytes(self) -> int:
        """Bytes charged for loaded blocks plus bytes reserved for loads in flight."""
        with self._cond:
            return self._used + self._reserved

    def counters(self) -> CacheCounters:
        with self._cond:
            c = self._counts
            return CacheCounters(
                hits=c.hits, misses=c.misses, evictions=c.evictions, prefetch_loads=c.prefetch_loads,
                prefetch_hits=c.prefetch_hits, waits=c.waits, loads=len(c.load_ms), load_ms_total=float(sum(c.load_ms)),
                used_bytes=self._used, peak_bytes=c.peak_bytes, over_budget_bytes=c.over_budget_bytes,
                loaded_bytes=c.loaded_bytes,
            )

    def charges(self) -> dict[LevelKey, int]:
        """Bytes charged per loaded key, least recently used first."""
        with self._cond:
            return {k: e.charge for k, e in self._entries.items()}

    def load_times_ms(self) -> list[float]:
        """Milliseconds of every completed load, in completion order."""
        with self._cond:
            return list(self._counts.load_ms)

    def estimate(self, key: LevelKey) -> int:
        """The size a block will be charged before it is loaded (remembered per key)."""
        with self._cond:
            known = self._estimates.get(key)
        if known is None:
            known = int(self._estimate(key))  # may read store metadata: outside the lock
            with self._cond:
                self._estimates[key] = known
        return known

    # -- pinning --------------------------------------------------------------------------------
    def pin(self, keys: Collection[LevelKey]) -> None:
        """Replace the pinned set: blocks the frame being rendered needs, which prefetches never
        evict (demand loads evict them only when nothing else is left)."""
        with self._cond:
            self._pinned = frozenset(keys)

    @property
    def pinned(self) -> frozenset[LevelKey]:
        with self._cond:
            return self._pinned

    # -- demand loads ---------------------------------------------------------------------------
    @contextmanager
    def lease(self, key: LevelKey) -> Iterator[B]:
        """The loaded block for ``key`` (loading it if needed), not evictable until released."""
        block = self.acquire(key)
        try:
            yield block
        finally:
            self.release(key)

    def acquire(self, key: LevelKey) -> B:
        """Lease a block, loading it on a miss; pair with ``release(key)``."""
        need = self.estimate(key)
        if need > self.max_bytes:
            raise BlockTooLargeError(key, need, self.max_bytes)
        with self._cond:
            waited = False
            while True:
                entry = self._entries.get(key)
                if entry is not None:
                    self._counts.hits += 1
                    if entry.prefetched and not entry.used:
                        self._counts.prefetch_hits += 1
                    entry.used = True
                    entry.leases += 1
                    self._entries.move_to_end(key)
                    return entry.block
                if key in self._loading:
                    # Someone (the prefetcher) is loading it: wait rather than load it twice. Should
                    # that load fail, the loop comes back here and loads it as a miss.
                    if not waited:
                        self._counts.waits += 1
                        waited = True
                    self._cond.wait()
                    continue
                if self._make_room(need, evictable=self._demand_evictable):
                    break
                if self._loading:
                    self._cond.wait()  # loads in flight hold the room; they finish or fail soon
                    continue
                in_use = sum(e.charge for e in self._entries.values() if e.leases)
                raise CacheFullError(key, need, self.max_bytes, in_use)
            self._counts.misses += 1
            self._begin(key, need, by_prefetch=False)
        return self._run_load(key, leased=True)

    def release(self, key: LevelKey) -> None:
        """End a lease taken with ``acquire``."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is None or entry.leases < 1:
                raise KeyError(f"block {key} is not leased")
            entry.leases -= 1
            self._cond.notify_all()

    # -- prefetch loads -------------------------------------------------------------------------
    def prefetch(self, key: LevelKey, *, protected: Collection[LevelKey] = ()) -> bool:
        """Load ``key`` ahead of need if that evicts nothing in use, pinned or ``protected``;
        True when it was loaded by this call."""
        need = self.estimate(key)
        if need > self.max_bytes:
            return False  # rendering will report it
        keep = frozenset(protected)
        with self._cond:
            if key in self._entries or key in self._loading:
                return False
            if not self._make_room(need, evictable=lambda k, e: not e.leases and k not in self._pinned and k not in keep):
                return False
            self._counts.prefetch_loads += 1
            self._begin(key, need, by_prefetch=True)
        try:
            self._run_load(key, leased=False)
        except Exception:  # noqa: BLE001 - a failed prefetch is retried (and reported) by the demand load
            return False
        return True

    def touch(self, key: LevelKey) -> bool:
        """Mark a loaded block as recently used (it is needed soon); False when it is not loaded."""
        with self._cond:
            if key not in self._entries:
                return False
            self._entries.move_to_end(key)
            return True

    # -- maintenance ----------------------------------------------------------------------------
    def discard(self, keep: Callable[[LevelKey], bool]) -> list[LevelKey]:
        """Evict loaded blocks for which ``keep(key)`` is false (e.g. superseded versions), unless
        leased; returns the keys evicted."""
        with self._cond:
            gone = [k for k, e in self._entries.items() if not e.leases and not keep(k)]
            for k in gone:
                self._evict(k)
            return gone

    def clear(self) -> None:
        """Evict every block not in use."""
        self.discard(lambda key: False)

    def resize(self, max_bytes: int) -> None:
        """Make the budget ``max_bytes`` (e.g. when resident bytes outside the cache take part of
        it) and evict least recently used blocks not in use until what is loaded fits; blocks in
        use stay until they are released."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        with self._cond:
            self.max_bytes = int(max_bytes)
            self._make_room(0, evictable=self._demand_evictable)

    # -- internals (lock held unless noted) ------------------------------------------------------
    def _demand_evictable(self, key: LevelKey, entry: _Entry[B]) -> bool:
        return not entry.leases

    def _make_room(self, need: int, *, evictable: Callable[[LevelKey, _Entry[B]], bool]) -> bool:
        """Evict least recently used evictable blocks (unpinned first) until ``need`` bytes fit.
        Evicts nothing when they would not make enough room."""
        free = self.max_bytes - self._used - self._reserved
        if free >= need:
            return True
        order = [k for k, e in self._entries.items() if evictable(k, e)]
        # Stable: LRU order within each group; unpinned first, higher ranks (finer levels) first.
        order.sort(key=lambda k: (k in self._pinned, -self._evict_first(k)))
        victims, gained = [], 0
        for k in order:
            if free + gained >= need:
                break
            victims.append(k)
            gained += self._entries[k].charge
        if free + gained < need:
            return False
        for k in victims:
            self._evict(k)
        return True

    def _evict(self, key: LevelKey) -> None:
        entry = self._entries.pop(key)
        self._used -= entry.charge
        self._counts.evictions += 1

    def _begin(self, key: LevelKey, reserved: int, *, by_prefetch: bool) -> None:
        self._loading[key] = _Loading(reserved, by_prefetch)
        self._reserved += reserved
        self._counts.peak_bytes = max(self._counts.peak_bytes, self._used + self._reserved)

    def _run_load(self, key: LevelKey, *, leased: bool) -> B:
        """Load outside the lock, then account for the block (takes the lock itself); a demand
        load enters the cache already leased, so nothing can evict it before its caller has it."""
        t0 = time.perf_counter()
        try:
            block = self._load(key)
            actual = int(self._nbytes(block))
        except BaseException:
            with self._cond:
                self._reserved -= self._loading.pop(key).reserved
                self._cond.notify_all()
            raise
        ms = 1e3 * (time.perf_counter() - t0)
        with self._cond:
            loading = self._loading.pop(key)
            self._reserved -= loading.reserved
            charge = max(loading.reserved, actual)
            if charge > self.max_bytes:
                self._cond.notify_all()
                raise BlockTooLargeError(key, charge, self.max_bytes)
            if charge > loading.reserved:
                # Larger than its metadata said: make room now (in-use blocks stay).
                self._make_room(charge, evictable=self._demand_evictable)
                self._estimates[key] = charge
            self._entries[key] = _Entry(block, charge, leases=int(leased), prefetched=loading.by_prefetch, used=leased)
            self._used += charge
            self._counts.load_ms.append(ms)
            self._counts.loaded_bytes += charge
            self._counts.peak_bytes = max(self._counts.peak_bytes, self._used + self._reserved)
            self._counts.over_budget_bytes = max(self._counts.over_budget_bytes, self._used + self._reserved - self.max_bytes)
            self._cond.notify_all()
            return block


def _name(key: LevelKey) -> str:
    return f"{key[0]} v{key[1]}" + (f" level {key[2]}" if len(key) > 2 and key[2] else "")


__all__ = ["BlockCache", "BlockTooLargeError", "CacheCounters", "CacheFullError"]
