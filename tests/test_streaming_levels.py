"""Levels of detail: the screen-space error rule, fitting levels to the byte budget, eviction of
fine levels before coarse ones, and the compositor drawing a cold view coarse and refining it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.cache import BlockCache
from streaming.compositor import Compositor
from streaming.config import StreamConfig
from streaming.levels import fit_levels, level_for, projected_px
from streaming.streamer import BlockStreamer

VOXELS_M = (8.0, 4.0, 2.0, 1.0)
"""Four levels, coarsest first, each voxel half the size of the last."""


def test_projected_size_by_hand() -> None:
    # A 2 m voxel 100 m away under a 500 px focal length covers 2 * 500 / 100 = 10 pixels.
    assert projected_px(2.0, 100.0, 500.0) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("distance_m", "level"),
    # focal 100 px, 1 px allowed: level k fits when VOXELS_M[k] * 100 / d <= 1, i.e. d >= 100 v.
    [(1000.0, 0), (800.0, 0), (500.0, 1), (300.0, 2), (200.0, 2), (150.0, 3), (5.0, 3)],
    ids=["1000m", "800m", "500m", "300m", "200m", "150m", "5m"],
)
def test_the_level_follows_the_projected_size(distance_m: float, level: int) -> None:
    assert level_for(VOXELS_M, distance_m, 100.0, max_error_px=1.0) == level


@settings(max_examples=200, deadline=None)
@given(
    near=st.floats(0.1, 1e4), factor=st.floats(1.0, 100.0), focal=st.floats(10.0, 4000.0),
    weight=st.floats(0.0, 1.0), error=st.floats(0.1, 8.0),
)
def test_the_level_grows_with_the_projected_size(near: float, factor: float, focal: float, weight: float, error: float) -> None:
    """Nearer, a longer focal length or a larger blend weight: never a coarser level."""
    far = near * factor
    at = lambda d, f=focal, w=weight: level_for(VOXELS_M, d, f, weight=w, max_error_px=error)  # noqa: E731
    assert at(near) >= at(far)
    assert at(far, f=2 * focal) >= at(far)
    assert at(far, w=min(1.0, 2 * weight)) >= at(far)
    assert 0 <= at(near) < len(VOXELS_M)


def test_fit_levels_demotes_the_least_important_block_first() -> None:
    nbytes = [[10, 40, 160]] * 3
    # Wanted 2, 2, 2 = 480 bytes; budget 250: the last block goes down to 0 (330), then the second to 1 (210).
    assert fit_levels([2, 2, 2], nbytes, 250) == [2, 1, 0]
    assert fit_levels([2, 2, 2], nbytes, 480) == [2, 2, 2]
    # Not even the coarse levels fit: the least important blocks leave, never the first.
    assert fit_levels([2, 2, 2], nbytes, 15) == [0, None, None]
    assert fit_levels([2, 2, 2], nbytes, 15, drop=False) == [0, 0, 0]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fitted_levels_stay_within_the_budget(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 6))
    nbytes = [sorted(data.draw(st.lists(st.integers(1, 100), min_size=3, max_size=3))) for _ in range(n)]
    wanted = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    budget = data.draw(st.integers(1, 400))
    chosen = fit_levels(wanted, nbytes, budget)
    assert chosen[0] is not None
    assert all(c is None or c <= w for c, w in zip(chosen, wanted))
    total = sum(nbytes[i][c] for i, c in enumerate(chosen) if c is not None)
    assert total <= budget or (chosen[0] == 0 and all(c is None for c in chosen[1:]))


def test_eviction_keeps_coarse_levels_before_fine_ones() -> None:
    """Fine levels leave first, even ones used more recently than a far block's coarse level."""
    sizes = {0: 10, 1: 40, 2: 100}
    cache = BlockCache(200, load=lambda key: type("Level", (), {"nbytes": sizes[key[2]]})(), estimate=lambda key: sizes[key[2]],
                       evict_first=lambda key: key[2])
    for key in (("far", 1, 0), ("near", 1, 0), ("near", 1, 1), ("near", 1, 2)):  # 150 bytes
        with cache.lease(key):
            pass
    with cache.lease(("next", 1, 2)):  # 100 more: 50 must go; "far" level 0 is the least recent
        pass
    assert ("far", 1, 0) in cache and ("near", 1, 0) in cache
    assert ("near", 1, 2) not in cache  # the finest level went first
    assert cache.accounted_bytes <= 200


# -- the compositor over fake blocks with levels ----------------------------------------------------
def _leveled_street(fakes, n: int = 6, spacing: float = 20.0):  # noqa: ANN001, ANN202
    """``n`` blocks in a row with four levels each (coarse 10 bytes .. finest 1000)."""
    return [
        fakes.Block(f"b{i}", center=(i * spacing, 0.0, 0.0), radius=spacing, color=(0.3 + 0.1 * i, 0.5, 0.5),
                    level_voxels_m=(8.0, 4.0, 2.0, 0.5), level_nbytes=(10, 40, 160, 1000), nbytes=1000)
        for i in range(n)
    ]


def _streamer(fakes, budget: int, **cfg):  # noqa: ANN001, ANN003, ANN202
    source = fakes.Source(_leveled_street(fakes))
    config = StreamConfig(memory_budget_mb=budget / 1e6, visibility_threshold=0.0, max_blocks=None, **cfg)
    return BlockStreamer(source, config), source


def test_a_cold_view_draws_coarse_and_the_next_frame_refines_it(fakes) -> None:  # noqa: ANN001
    streamer, source = _streamer(fakes, 100_000)
    compositor = Compositor(streamer)
    view = fakes.view([1.0, 0.5, 2.0], size=(64, 48))
    cold = compositor.render(view)
    assert {u.level for u in cold.used} == {0}  # nothing waited for a fine level
    assert all(k[2] == 0 for k in source.level_loads)
    near = cold.used[0]
    assert near.block_id == "b0" and near.wanted_level == 3  # the camera stands in b0
    warm = compositor.render(view)
    levels = {u.block_id: u.level for u in warm.used}
    assert levels["b0"] == 3  # refined to its finest level
    assert all(u.level == u.wanted_level for u in warm.used)
    assert len(warm.used) >= 2  # no fixed count: every block in range blends
    stats = warm.to_dict()
    assert {b["id"]: b["level"] for b in stats["blocks"] if b["weight"] > 0} == levels
    assert sum(stats["resident_bytes_by_level"].values()) == streamer.cache.used_bytes


def test_a_frame_that_may_not_wait_keeps_the_loaded_level(fakes) -> None:  # noqa: ANN001
    streamer, _ = _streamer(fakes, 100_000, lod_frame_load_ms=0.0)
    compositor = Compositor(streamer)
    view = fakes.view([1.0, 0.5, 2.0], size=(64, 48))
    for _ in range(3):
        frame = compositor.render(view)
    assert {u.level for u in frame.used} == {0}  # without a prefetcher nothing loads the finer levels
    settled = compositor.render(view, settled=True)
    assert all(u.level == u.wanted_level for u in settled.used)


def test_a_cold_frame_past_its_load_time_leaves_the_lightest_blocks_to_the_next_frames(fakes) -> None:  # noqa: ANN001
    import threading

    def slow(key) -> None:  # noqa: ANN001 - every load takes longer than a frame may spend on loads
        threading.Event().wait(0.06)

    blocks = fakes.grid(2)
    streamer = BlockStreamer(fakes.Source(blocks, block_loads=slow),
                             StreamConfig(prefetch=False, max_blocks=None, visibility_threshold=0.0, lod_frame_load_ms=50.0))
    compositor = Compositor(streamer)
    view = fakes.view([5.0, 4.0, 0.0])
    drawn = []
    for _ in range(4):
        frame = compositor.render(view)
        drawn.append([u.block_id for u in frame.used])
        assert len(frame.used) + len(frame.deferred) == 4 and frame.to_dict()["deferred_blocks"] == list(frame.deferred)
    heaviest = max(frame.blocks, key=lambda u: u.weight).block_id
    assert drawn[0] == [heaviest]  # the cold frame: one load, then the rest wait
    assert [len(d) for d in drawn] == [1, 2, 3, 4]  # one more block each frame, none lost
    settled = compositor.render(view, settled=True)
    assert not settled.deferred


def test_far_blocks_keep_only_their_coarse_levels_within_the_budget(fakes) -> None:  # noqa: ANN001
    """A drive down the street under a budget of about one fine level: the bytes held never pass
    the budget, and the blocks left behind keep their coarse levels, not their fine ones."""
    budget = 1400
    streamer, _ = _streamer(fakes, budget)
    compositor = Compositor(streamer)
    for x in np.arange(0.0, 101.0, 5.0):
        frame = compositor.render(fakes.view([x, 0.5, 2.0], size=(64, 48)), settled=True)
        assert streamer.cache.accounted_bytes <= budget
        assert frame.dominant == f"b{int(round(x / 20.0))}" or x % 20 == 10
    keys = streamer.cache.keys()
    behind = {k for k in keys if k[0] in ("b0", "b1", "b2")}
    assert behind and all(k[2] < 3 for k in behind)
    assert ("b5", 1, 3) in keys  # where the camera is: its finest level
    c = streamer.cache.counters()
    assert c.peak_bytes <= budget and c.over_budget_bytes == 0
