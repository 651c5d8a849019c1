"""Prefetching: blocks loaded ahead are hits when reached; waits on loads in flight; the budget
holds with a prefetch thread running."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streaming.compositor import Compositor
from streaming.config import StreamConfig
from streaming.prefetch import Prefetcher, extrapolate
from streaming.streamer import BlockStreamer


def test_extrapolate_constant_velocity() -> None:
    history = np.array([[0.0, 0.0, 2.0], [1.0, 0.5, 2.0], [2.0, 1.0, 2.0]])
    np.testing.assert_allclose(extrapolate(history, 2), [[3.0, 1.5, 2.0], [4.0, 2.0, 2.0]])
    np.testing.assert_allclose(extrapolate(history[:1], 2), [[0.0, 0.0, 2.0], [0.0, 0.0, 2.0]])
    assert extrapolate(history, 0).shape == (0, 3)


def _line_streamer(fakes, budget_bytes: int, **cfg: object) -> tuple[BlockStreamer, object]:  # noqa: ANN001
    """Six fake blocks 10 m apart along x (radius 10 m), 100 bytes each."""
    blocks = [fakes.Block(f"b{i}", center=(10.0 * i, 0.0, 0.0), radius=10.0, color=(0.1 * i, 0.5, 0.5)) for i in range(6)]
    source = fakes.Source(blocks)
    return BlockStreamer(source, StreamConfig(memory_budget_mb=budget_bytes / 1e6, **cfg)), source


def test_prefetched_blocks_are_hits_when_reached(fakes) -> None:  # noqa: ANN001
    streamer, source = _line_streamer(fakes, 400, max_blocks=2, visibility_threshold=0.0)
    compositor = Compositor(streamer)
    path = [np.array([x, 0.5, 2.0]) for x in np.arange(0.0, 50.0, 2.5)]
    with Prefetcher(streamer, lookahead=6) as prefetcher:
        for i, pos in enumerate(path):
            prefetcher.schedule(path[i : i + 6])  # this frame and the next few
            assert prefetcher.wait_idle(timeout=30)
            frame = compositor.render(fakes.view(pos))
            assert frame.cache["misses"] == 0
    c = streamer.cache.counters()
    assert c.misses == 0 and c.hits > 0
    # Every block was loaded once, by the prefetcher, and its first use was a prefetched hit.
    assert sorted(k[0] for k in source.loads) == [f"b{i}" for i in range(6)]
    assert c.prefetch_loads == 6 and c.prefetch_hits == 6


def test_prefetch_never_evicts_what_the_frame_needs(fakes) -> None:  # noqa: ANN001
    # Room for two blocks: the frame's two blocks are pinned, so the prefetcher cannot load b2/b3.
    streamer, source = _line_streamer(fakes, 200, max_blocks=2, visibility_threshold=0.0)
    compositor = Compositor(streamer)
    frame = compositor.render(fakes.view([4.0, 0.0, 2.0]))
    used = {(u.block_id, u.version) for u in frame.blocks}
    assert used == {("b0", 1), ("b1", 1)}
    with Prefetcher(streamer, lookahead=4) as prefetcher:
        prefetcher.schedule([np.array([24.0, 0.0, 2.0]), np.array([34.0, 0.0, 2.0])])
        assert prefetcher.wait_idle(timeout=30)
    assert {k[:2] for k in streamer.cache.keys()} == used
    assert streamer.cache.counters().prefetch_loads == 0


def test_observe_prefetches_along_the_motion(fakes) -> None:  # noqa: ANN001
    streamer, source = _line_streamer(fakes, 1000, max_blocks=2)
    with Prefetcher(streamer, lookahead=3) as prefetcher:
        for x in (0.0, 5.0, 10.0):
            prefetcher.observe(np.array([x, 0.0, 2.0]))
        assert prefetcher.wait_idle(timeout=30)
    # Moving +5 m a step from x = 10: x = 15, 20, 25 need blocks b1..b3.
    assert {"b1", "b2", "b3"} <= {k[0] for k in streamer.cache.keys()}


def test_a_demand_for_a_block_in_flight_waits_for_it(fakes) -> None:  # noqa: ANN001
    """The renderer asks for a block the prefetcher is loading: it waits, and the block is
    loaded once."""
    started, gate, waiting = threading.Event(), threading.Event(), threading.Event()

    def hold(key: tuple[str, int]) -> None:
        if key[0] == "b3":
            started.set()
            assert gate.wait(timeout=30)

    streamer, source = _line_streamer(fakes, 1000)
    source.block_loads = hold
    cache = streamer.cache

    class Signalling(type(cache._cond)):  # type: ignore[misc]
        def wait(self, timeout: float | None = None) -> bool:
            waiting.set()
            return super().wait(timeout)

    cache._cond = Signalling(cache._cond._lock)  # noqa: SLF001 - observe the wait deterministically
    prefetched: list[bool] = []
    worker = threading.Thread(target=lambda: prefetched.append(cache.prefetch(("b3", 1, 0))))
    worker.start()
    assert started.wait(timeout=30)
    got: list[object] = []
    demand = threading.Thread(target=lambda: got.append(cache.acquire(("b3", 1, 0))))
    demand.start()
    assert waiting.wait(timeout=30)
    gate.set()
    demand.join(timeout=30)
    worker.join(timeout=30)
    assert prefetched == [True] and got and got[0] is source.blocks[("b3", 1)]
    assert source.loads.count(("b3", 1)) == 1
    c = cache.counters()
    assert (c.waits, c.hits, c.misses, c.prefetch_hits) == (1, 1, 0, 1)
    cache.release(("b3", 1, 0))


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["walk0", "walk1", "walk2"])
def test_budget_holds_with_the_prefetch_thread(fakes, seed: int) -> None:  # noqa: ANN001
    """A random walk over a 5x5 grid with prefetching in a thread: the cache never holds (or
    reserves) more than its budget, and every frame renders."""
    rng = np.random.default_rng(seed)
    blocks = fakes.grid(5, spacing=10.0)
    for b in blocks:
        # Loaded sizes vary below what the metadata says (an upper bound, as the store's is).
        b.metadata_nbytes, b.nbytes = 140, int(rng.integers(60, 141))
    source = fakes.Source(blocks)
    budget = 350
    streamer = BlockStreamer(source, StreamConfig(memory_budget_mb=budget / 1e6, max_blocks=3))
    compositor = Compositor(streamer)
    steps = np.cumsum(rng.normal(0.0, 3.0, (40, 2)), axis=0) + 20.0
    path = [np.array([x, y, 2.0]) for x, y in np.clip(steps, -5.0, 45.0)]
    with Prefetcher(streamer, lookahead=5) as prefetcher:
        for i, pos in enumerate(path):
            prefetcher.schedule(path[i + 1 : i + 6])
            frame = compositor.render(fakes.view(pos))
            assert sum(u.weight for u in frame.blocks) == pytest.approx(1.0)
            assert streamer.cache.accounted_bytes <= budget
    c = streamer.cache.counters()
    assert c.peak_bytes <= budget and c.over_budget_bytes == 0
    assert c.evictions > 0  # the walk needed more blocks than fit
