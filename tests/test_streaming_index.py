"""The block index: KD-tree queries against brute force, the nearest-block rule, plans."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partitioning import BlockPlan, BlockSpec, PartitionConfig
from streaming.index import BlockIndex


def _index(n: int, seed: int) -> BlockIndex:
    rng = np.random.default_rng(seed)
    centers = np.column_stack([rng.uniform(-100, 100, (n, 2)), rng.uniform(0, 10, n)])
    return BlockIndex([f"b{i:03d}" for i in range(n)], centers, rng.uniform(5.0, 40.0, n))


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 30), seed=st.integers(0, 2**16), x=st.floats(-150, 150), y=st.floats(-150, 150), factor=st.floats(0.2, 3.0))
def test_query_matches_brute_force(n: int, seed: int, x: float, y: float, factor: float) -> None:
    index = _index(n, seed)
    pos = np.array([x, y, 123.0])  # height does not matter: regions are vertical cylinders
    d = np.hypot(index.centers[:, 0] - x, index.centers[:, 1] - y)
    inside = {index.block_ids[i] for i in np.flatnonzero(d <= factor * index.radii)}
    got = index.query(pos, range_factor=factor)
    if inside:
        assert {c.block_id for c in got} == inside
        assert all(c.in_range for c in got)
    else:
        assert [c.block_id for c in got] == [index.block_ids[int(np.argmin(d))]]
        assert not got[0].in_range
    assert [c.distance_m for c in got] == sorted(c.distance_m for c in got)
    for c in got:
        assert c.distance_m == pytest.approx(d[index.block_ids.index(c.block_id)])


def test_nearest_and_lookups() -> None:
    index = BlockIndex(["a", "b", "c"], np.array([[0.0, 0, 0], [10, 0, 0], [30, 0, 0]]), np.array([5.0, 5.0, 5.0]))
    near = index.nearest(np.array([12.0, 0.0, 0.0]), k=2)
    assert [c.block_id for c in near] == ["b", "a"]
    assert near[0].distance_m == pytest.approx(2.0) and near[0].in_range
    assert "c" in index and "z" not in index
    np.testing.assert_array_equal(index.center_of("c"), [30.0, 0.0, 0.0])
    assert index.radius_of("a") == 5.0


def test_empty_index_has_no_candidates() -> None:
    index = BlockIndex([], np.zeros((0, 3)), np.zeros(0))
    assert index.query(np.zeros(3)) == [] and len(index) == 0


@pytest.mark.parametrize(
    ("ids", "centers", "radii"),
    [(["a", "a"], [[0, 0, 0], [1, 0, 0]], [1, 1]), (["a"], [[0, 0, 0]], [0.0]), (["a", "b"], [[0, 0, 0]], [1, 1])],
    ids=["duplicate-id", "zero-radius", "length-mismatch"],
)
def test_bad_input_is_refused(ids: list[str], centers: list[list[float]], radii: list[float]) -> None:
    with pytest.raises(ValueError):
        BlockIndex(ids, np.array(centers, dtype=float), np.array(radii, dtype=float))


def test_from_plan_keeps_the_given_blocks() -> None:
    specs = tuple(BlockSpec(f"b{i}", (40.0 * i, 0.0, 5.0), 40.0, 0.0, 10.0) for i in range(3))
    plan = BlockPlan(specs, "grid", PartitionConfig(), 40.0)
    index = BlockIndex.from_plan(plan, ["b0", "b2"])
    assert index.block_ids == ("b0", "b2")
    assert [c.block_id for c in index.query(np.array([39.0, 0.0, 0.0]))] == ["b0"]  # b1 is not indexed
