"""Blend weights: inverse distance, range taper, top-k, visibility; sums, limits and continuity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.blend import (
    blend_weights,
    geometric_weights,
    inverse_distance,
    keep_top,
    normalise,
    range_taper,
    visibility_factors,
)


def test_inverse_distance_hand_computed() -> None:
    # d = (1, 2, 4), p = 2: d^-2 = (1, 1/4, 1/16), scaled so the nearest is 1.
    np.testing.assert_allclose(inverse_distance(np.array([1.0, 2.0, 4.0]), 2.0), [1.0, 0.25, 0.0625])


def test_inverse_distance_at_a_centre_is_one_hot() -> None:
    w = normalise(inverse_distance(np.array([0.0, 3.0, 5.0]), 4.0))
    assert w[0] == pytest.approx(1.0, abs=1e-12)
    assert w[1:].sum() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("x", "taper", "expected"),
    [
        (0.0, 0.3, 1.0),
        (0.7, 0.3, 1.0),  # the taper starts at 1 - 0.3
        (0.85, 0.3, 0.5),  # smoothstep(0.5) = 0.5
        (1.0, 0.3, 0.0),
        (1.2, 0.3, 0.0),
        (0.775, 0.3, 0.84375),  # t = 0.75: 3 t^2 - 2 t^3 = 1.6875 - 0.84375
        (0.99, 0.0, 1.0),  # no taper: a step at the range
        (1.01, 0.0, 0.0),
    ],
    ids=["centre", "taper-start", "taper-middle", "edge", "beyond", "taper-quarter", "hard-in", "hard-out"],
)
def test_range_taper_values(x: float, taper: float, expected: float) -> None:
    assert range_taper(np.array([x]), taper)[0] == pytest.approx(expected)


def test_keep_top_subtracts_the_next_weight() -> None:
    # Top 2 of (5, 3, 2, 1): (5 - 2, 3 - 2, 0, 0).
    np.testing.assert_allclose(keep_top(np.array([3.0, 1.0, 5.0, 2.0]), 2), [1.0, 0.0, 3.0, 0.0])
    np.testing.assert_allclose(keep_top(np.array([3.0, 1.0]), 2), [3.0, 1.0])


@pytest.mark.parametrize(
    ("vis", "expected"),
    [(0.05, 0.0), (0.1, 0.0), (0.15, 0.5), (0.2, 1.0), (0.9, 1.0)],
    ids=["below", "at-threshold", "in-ramp", "ramp-end", "visible"],
)
def test_visibility_ramp(vis: float, expected: float) -> None:
    assert visibility_factors(np.array([vis]), threshold=0.1, ramp=0.1)[0] == pytest.approx(expected)


def test_hard_visibility_threshold_and_no_test() -> None:
    np.testing.assert_array_equal(visibility_factors(np.array([0.09, 0.1]), threshold=0.1, ramp=0.0), [0.0, 1.0])
    np.testing.assert_array_equal(visibility_factors(np.array([0.0, 0.5]), threshold=0.0, ramp=0.1), [1.0, 1.0])


def test_blocks_that_fail_visibility_are_dropped_but_one_stays() -> None:
    w = blend_weights(np.array([2.0, 3.0]), np.array([10.0, 10.0]), visibility=np.array([0.9, 0.01]))
    np.testing.assert_allclose(w, [1.0, 0.0])
    # Every block fails: the most visible one is kept.
    w = blend_weights(np.array([2.0, 3.0]), np.array([10.0, 10.0]), visibility=np.array([0.01, 0.05]))
    np.testing.assert_allclose(w, [0.0, 1.0])


def test_out_of_every_range_keeps_the_nearest() -> None:
    w = blend_weights(np.array([30.0, 25.0, 40.0]), np.array([10.0, 10.0, 10.0]))
    np.testing.assert_allclose(w, [0.0, 1.0, 0.0])


def test_weights_hand_computed() -> None:
    # Two blocks well inside range (no taper), p = 1: weights ~ 1/2 and 1/6 -> 3/4 and 1/4.
    w = blend_weights(np.array([2.0, 6.0]), np.array([100.0, 100.0]), power=1.0)
    np.testing.assert_allclose(w, [0.75, 0.25])


distances = st.lists(st.floats(0.0, 200.0, allow_nan=False), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    d=distances,
    power=st.floats(0.0, 8.0),
    taper=st.floats(0.0, 1.0),
    k=st.integers(1, 5),
    vis_seed=st.integers(0, 2**16),
    with_vis=st.booleans(),
)
def test_weights_non_negative_and_sum_to_one(d: list[float], power: float, taper: float, k: int, vis_seed: int, with_vis: bool) -> None:
    dist = np.array(d)
    radii = np.random.default_rng(vis_seed).uniform(5.0, 80.0, len(d))
    vis = np.random.default_rng(vis_seed + 1).uniform(0.0, 1.0, len(d)) if with_vis else None
    w = blend_weights(dist, radii, power=power, taper=taper, max_blocks=k, visibility=vis)
    assert w.shape == dist.shape
    assert np.all(w >= 0.0)
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.count_nonzero(w) <= k


def _walk(max_blocks: int) -> np.ndarray:
    """Normalised weights of a 3x3 grid of blocks (40 m apart, radius 40 m) along a 120 m
    diagonal walk in ~1 cm steps: (steps, 9)."""
    xy = np.array([[i * 40.0, j * 40.0] for i in range(3) for j in range(3)])
    radii = np.full(len(xy), 40.0)
    t = np.linspace(0.0, 1.0, 12001)
    path = np.stack([-10.0 + 100.0 * t, 5.0 + 60.0 * t], axis=1)
    return np.array(
        [
            normalise(geometric_weights(np.linalg.norm(xy - p, axis=1), radii, power=4.0, range_factor=1.0, taper=0.3, max_blocks=max_blocks))
            for p in path
        ]
    )


@pytest.mark.parametrize("max_blocks", [2, 3], ids=["k2", "k3"])
def test_weights_are_continuous_along_a_path(max_blocks: int) -> None:
    """No weight jumps between positions 1 cm apart: a switch of blocks makes no pop."""
    weights = _walk(max_blocks)
    assert np.abs(np.diff(weights, axis=0)).max() < 0.01
    # The dominant block does change along the way (the walk crosses switches).
    assert len(set(np.argmax(weights, axis=1))) >= 3


def test_one_block_at_a_time_is_a_hard_switch() -> None:
    """With max_blocks = 1 nothing can be blended: the weight jumps from one block to the next."""
    weights = _walk(1)
    assert np.abs(np.diff(weights, axis=0)).max() == pytest.approx(1.0)
    assert set(np.unique(weights)) <= {0.0, 1.0}


def test_hard_settings_do_jump() -> None:
    """Without taper and top-k subtraction the same walk has jumps: the smoothing is what helps."""
    xy = np.array([[0.0, 0.0], [40.0, 0.0]])
    path = np.stack([np.linspace(-45.0, 85.0, 13001), np.zeros(13001)], axis=1)
    w = np.array(
        [normalise(inverse_distance(np.linalg.norm(xy - p, axis=1), 4.0) * range_taper(np.linalg.norm(xy - p, axis=1) / 40.0, 0.0)) for p in path]
    )
    assert np.abs(np.diff(w, axis=0)).max() > 0.2
