"""The block cache: LRU order, counters, byte budget (never exceeded), leases, pins, prefetches."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocknerf.errors import BlockNerfError
from streaming.cache import BlockCache, BlockTooLargeError, CacheFullError


class Loader:
    """Blocks of given sizes; checks the budget while each load is in flight."""

    def __init__(self, sizes: dict[str, int], *, actual: dict[str, int] | None = None) -> None:
        self.sizes = sizes
        self.actual = actual or sizes
        self.loads: list[tuple[str, int]] = []
        self.cache: BlockCache | None = None
        self.transient: list[int] = []

    def estimate(self, key: tuple[str, int]) -> int:
        return self.sizes[key[0]]

    def load(self, key: tuple[str, int]) -> SimpleNamespace:
        assert self.cache is not None
        self.transient.append(self.cache.accounted_bytes)  # room is made before loading
        self.loads.append(key)
        return SimpleNamespace(key=key, nbytes=self.actual[key[0]])


def make(budget: int, sizes: dict[str, int], **kw: dict[str, int]) -> tuple[BlockCache, Loader]:
    loader = Loader(sizes, **kw)
    cache = BlockCache(budget, loader.load, loader.estimate)
    loader.cache = cache
    return cache, loader


def get(cache: BlockCache, name: str) -> SimpleNamespace:
    with cache.lease((name, 1)) as block:
        return block


def test_lru_eviction_and_counters() -> None:
    cache, loader = make(300, {n: 100 for n in "abcde"})
    for n in "abc":
        get(cache, n)
    get(cache, "a")  # a is now the most recently used
    get(cache, "d")  # evicts b, the least recently used
    assert [k[0] for k in cache.keys()] == ["c", "a", "d"]
    c = cache.counters()
    assert (c.hits, c.misses, c.evictions, c.loads) == (1, 4, 1, 4)
    assert cache.used_bytes == 300 and c.peak_bytes == 300
    # Held + reserved while each block loads (its own reservation included): b left before d came.
    assert loader.transient == [100, 200, 300, 300]


def test_resizing_evicts_the_least_recently_used_blocks_not_in_use() -> None:
    cache, _ = make(300, {n: 100 for n in "abc"})
    for n in "abc":
        get(cache, n)
    with cache.lease(("a", 1)):  # in use: it stays, the least recently used of the others goes
        cache.resize(150)
        assert [k[0] for k in cache.keys()] == ["a"] and cache.used_bytes == 100
    cache.resize(50)  # a, no longer in use, does not fit: evicted
    assert cache.keys() == [] and cache.max_bytes == 50
    with pytest.raises(ValueError):
        cache.resize(0)


def test_a_block_larger_than_the_budget_is_a_clear_error() -> None:
    cache, _ = make(1_000_000, {"big": 34_100_000})
    with pytest.raises(BlockTooLargeError) as err:
        get(cache, "big")
    assert isinstance(err.value, BlockNerfError)
    text = str(err.value)
    # dask.utils.format_bytes writes binary units: 34.1e6 B = 32.52 MiB, 1e6 B = 0.95 MiB.
    assert "big v1" in text and "32.52 MiB" in text and "0.95 MiB" in text
    assert cache.accounted_bytes == 0


def test_charge_is_the_larger_of_estimate_and_actual() -> None:
    # The metadata says 50 but the loaded block holds 120: it is charged 120 and others make room.
    cache, loader = make(250, {"a": 100, "b": 100, "c": 50}, actual={"a": 100, "b": 100, "c": 120})
    get(cache, "a")
    get(cache, "b")
    get(cache, "c")
    assert cache.used_bytes == 220 and [k[0] for k in cache.keys()] == ["b", "c"]
    assert cache.counters().over_budget_bytes == 0
    assert cache.estimate(("c", 1)) == 120  # remembered for the next time
    # Actual smaller than the estimate: charged the estimate (an upper bound by construction).
    cache2, _ = make(250, {"a": 100}, actual={"a": 10})
    get(cache2, "a")
    assert cache2.used_bytes == 100


def test_leased_blocks_are_never_evicted() -> None:
    cache, _ = make(200, {"a": 150, "b": 100})
    block = cache.acquire(("a", 1))
    with pytest.raises(CacheFullError, match="held by 150"):
        cache.acquire(("b", 1))
    assert ("a", 1) in cache
    cache.release(("a", 1))
    assert get(cache, "b").nbytes == 100 and ("a", 1) not in cache
    assert block.nbytes == 150
    with pytest.raises(KeyError):
        cache.release(("b", 1))


def test_prefetch_respects_pins_protection_and_leases() -> None:
    cache, _ = make(300, {n: 100 for n in "abcde"})
    for n in "abc":
        get(cache, n)
    cache.pin({("a", 1)})
    # Room for d: b is the least recently used block that is neither pinned nor protected.
    assert cache.prefetch(("d", 1), protected={("c", 1)})
    assert [k[0] for k in cache.keys()] == ["a", "c", "d"]
    # e would have to evict a (pinned), c or d (protected): it is not loaded.
    assert not cache.prefetch(("e", 1), protected={("c", 1), ("d", 1)})
    assert [k[0] for k in cache.keys()] == ["a", "c", "d"]
    # Already loaded: nothing to do.
    assert not cache.prefetch(("c", 1))
    # A demand load may evict the pinned block when nothing else is left.
    cache.pin({("a", 1), ("c", 1), ("d", 1)})
    get(cache, "e")
    assert ("a", 1) not in cache
    c = cache.counters()
    assert c.prefetch_loads == 1 and c.prefetch_hits == 0
    get(cache, "d")
    assert cache.counters().prefetch_hits == 1


def test_discard_superseded_versions() -> None:
    cache, _ = make(1000, {"a": 100, "b": 100})
    get(cache, "a")
    get(cache, "b")
    current = {"a": 2, "b": 1}
    gone = cache.discard(lambda key: current[key[0]] == key[1])
    assert gone == [("a", 1)] and cache.keys() == [("b", 1)]
    assert cache.used_bytes == 100


def test_a_failed_load_releases_its_reservation() -> None:
    def load(key: tuple[str, int]) -> SimpleNamespace:
        raise OSError("disk on fire")

    cache = BlockCache(100, load, lambda key: 60)
    with pytest.raises(OSError):
        cache.acquire(("a", 1))
    assert cache.accounted_bytes == 0
    assert not cache.prefetch(("a", 1))
    assert cache.accounted_bytes == 0


class ReferenceLRU:
    """The textbook LRU under a byte budget: what the cache must do for demand loads."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.items: OrderedDict[str, int] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def get(self, name: str, size: int) -> None:
        if name in self.items:
            self.hits += 1
            self.items.move_to_end(name)
            return
        self.misses += 1
        while sum(self.items.values()) + size > self.budget:
            self.items.popitem(last=False)
            self.evictions += 1
        self.items[name] = size


ops = st.lists(
    st.tuples(st.sampled_from(["get", "prefetch", "pin"]), st.integers(0, 11), st.sets(st.integers(0, 11), max_size=3), st.integers(0, 2)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 100), min_size=12, max_size=12), budget=st.integers(100, 400), sequence=ops)
def test_budget_is_never_exceeded(sizes: list[int], budget: int, sequence: list[tuple[str, int, set[int], int]]) -> None:
    """Random sequences of demand loads, prefetches and pins of the levels of detail of 12 blocks
    (level k of a block holds ``size // 4**(2 - k)`` bytes, at least 1; finer levels are evicted
    first, as the streamer ranks them): the bytes held plus the bytes reserved never pass the
    budget, neither after an operation nor while a load is in flight."""
    names = [f"b{i}" for i in range(12)]

    def nbytes(key: tuple[str, int, int]) -> int:
        return max(1, sizes[names.index(key[0])] // 4 ** (2 - key[2]))

    transient: list[int] = []

    def load(key: tuple[str, int, int]) -> SimpleNamespace:
        transient.append(cache.accounted_bytes)  # room is made before loading
        return SimpleNamespace(key=key, nbytes=nbytes(key))

    cache = BlockCache(budget, load, nbytes, evict_first=lambda key: key[2])
    for op, i, others, level in sequence:
        key = (names[i], 1, level)
        if op == "get":
            with cache.lease(key):
                pass
        elif op == "prefetch":
            cache.prefetch(key, protected={(names[j], 1, level) for j in others})
        else:
            cache.pin({(names[j], 1, lv) for j in others for lv in (0, level)})
        assert cache.accounted_bytes <= budget
        assert cache.used_bytes == sum(nbytes(k) for k in cache.keys())
        assert sum(cache.charges().values()) == cache.used_bytes
    assert all(t <= budget for t in transient)
    c = cache.counters()
    assert c.peak_bytes <= budget and c.over_budget_bytes == 0
    assert c.loaded_bytes >= cache.used_bytes


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 100), min_size=8, max_size=8), budget=st.integers(100, 300), sequence=st.lists(st.integers(0, 7), min_size=1, max_size=80))
def test_demand_loads_match_a_reference_lru(sizes: list[int], budget: int, sequence: list[int]) -> None:
    names = [f"b{i}" for i in range(8)]
    cache, _ = make(budget, dict(zip(names, sizes)))
    ref = ReferenceLRU(budget)
    for i in sequence:
        get(cache, names[i])
        ref.get(names[i], sizes[i])
    c = cache.counters()
    assert (c.hits, c.misses, c.evictions) == (ref.hits, ref.misses, ref.evictions)
    assert [k[0] for k in cache.keys()] == list(ref.items)
