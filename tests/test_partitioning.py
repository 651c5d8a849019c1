"""The block planner: config, the ray/region test, placement strategies, assignment, updates."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from partitioning import (
    BlockPlan,
    BlockSpec,
    CameraArrays,
    PartitionConfig,
    affected_blocks,
    crosses_cylinder,
    extend_plan,
    frame_rays,
    plan_blocks,
    ray_pattern,
)
from partitioning.layouts import (
    cameras_from_poses,
    heading_poses,
    orbit,
    straight_line,
    street_grid,
    street_grid_positions,
)
from partitioning.assignment import Shares, assign_frames
from partitioning.placement import Regions, lattice_id
from partitioning.rays import ray_directions

STRATEGIES = ["grid", "trajectory", "clusters"]
ID_PATTERN = re.compile(r"^b(m\d{2,}|\d{3,})_(m\d{2,}|\d{3,})[a-z]?$")


@pytest.fixture(scope="module")
def city() -> tuple[CameraArrays, np.ndarray]:
    """A 2x2 street-grid city like the synthetic one: 60 m blocks, 20 m streets, a stop every 5 m
    at 2 m height, 4 headings, 85 deg horizontal FOV, 160x120 images, every 10th frame held out."""
    return street_grid(2, block_m=60.0, street_m=20.0, step_m=5.0, height_m=2.0, holdout_every=10)


@pytest.fixture(scope="module")
def city_plans(city) -> dict[str, BlockPlan]:  # noqa: ANN001
    cams, _ = city
    return {s: plan_blocks(cams, PartitionConfig(strategy=s)) for s in STRATEGIES}


def recomputed_shares(block: BlockSpec, cams: CameraArrays, far: float, rays: int) -> np.ndarray:
    """Reference: the share of each camera's rays that cross ``block``, with the float64 BlockSpec test."""
    dirs = frame_rays(cams, rays)
    origins = np.repeat(cams.positions, rays, axis=0)
    hit = block.ray_crossing(origins, dirs.reshape(-1, 3), far).reshape(len(cams), rays)
    return hit.mean(axis=1)


def subset(cams: CameraArrays, index) -> CameraArrays:  # noqa: ANN001
    index = np.asarray(index)
    return CameraArrays(
        tuple(cams.ids[i] for i in index), cams.c2w[index], cams.intrinsics[index],
        cams.sizes[index], cams.is_train[index], cams.timestamps[index],
    )


def concat(a: CameraArrays, b: CameraArrays) -> CameraArrays:
    return CameraArrays(
        a.ids + b.ids, np.concatenate([a.c2w, b.c2w]), np.concatenate([a.intrinsics, b.intrinsics]),
        np.concatenate([a.sizes, b.sizes]), np.concatenate([a.is_train, b.is_train]),
        np.concatenate([a.timestamps, b.timestamps]),
    )


# Package hygiene ---------------------------------------------------------------------------------
def test_importing_partitioning_does_not_import_torch_or_blocknerf() -> None:
    code = "import partitioning, sys; assert 'torch' not in sys.modules; assert 'blocknerf' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# Config ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spacing", "overlap", "radius"),
    [(80.0, 0.5, 80.0), (80.0, 0.0, 40.0), (60.0, 0.75, 120.0), (100.0, 0.3, 100.0 / 1.4)],
    ids=["default", "touching", "wide", "thin"],
)
def test_radius_follows_spacing_and_overlap(spacing: float, overlap: float, radius: float) -> None:
    # radius = spacing / (2 (1 - overlap)): e.g. 60 / (2 * 0.25) = 120.
    assert PartitionConfig(spacing_m=spacing, overlap=overlap).radius_m == pytest.approx(radius)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"overlap": 0.95}, "overlap"),
        ({"overlap": -0.1}, "overlap"),
        ({"rays_per_frame": 0}, "rays_per_frame"),
        ({"min_share": 0.0}, "min_share"),
        ({"min_frames": 0}, "min_frames"),
        ({"clusters": 0}, "clusters"),
        ({"z_range_m": (5.0, 1.0)}, "z_range_m"),
        ({"far_m": -1.0}, "far_m"),
        ({"spacing_m": "big"}, "spacing_m"),
        ({"spacing_m": math.inf}, "spacing_m"),
        ({"strategy": "hexagons"}, "strategy"),
        ({"height_below": 0.0, "height_above": 0.0}, "height_below"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else "-".join(v),
)
def test_config_validate_names_the_bad_setting(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PartitionConfig(**change).validate()


def test_config_round_trips_and_rejects_unknown_keys() -> None:
    cfg = PartitionConfig(strategy="clusters", spacing_m="auto", z_range_m=(0.0, 50.0), clusters=7)
    assert PartitionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown partition setting"):
        PartitionConfig.from_dict({"spacing": 10})


def test_config_loads_through_the_blocknerf_loader() -> None:
    from blocknerf.config import from_dict
    from blocknerf.errors import ConfigError

    cfg = from_dict(PartitionConfig, {"strategy": "trajectory", "spacing_m": 60, "z_range_m": [0, 40]})
    assert cfg.spacing_m == 60.0 and cfg.z_range_m == (0.0, 40.0)
    assert from_dict(PartitionConfig, {"spacing_m": "auto"}).auto_spacing
    with pytest.raises(ConfigError, match="overlap"):
        from_dict(PartitionConfig, {"overlap": 1.5})


# Rays and the region test ------------------------------------------------------------------------
def test_ray_pattern_starts_at_the_image_centre_and_stays_inside() -> None:
    p = ray_pattern(256)
    assert p[0].tolist() == [0.5, 0.5]
    assert np.all((p >= 0.0) & (p < 1.0))
    # Low discrepancy: each quarter of the image gets about a quarter of the rays.
    quarters = np.bincount((p[:, 0] >= 0.5) * 2 + (p[:, 1] >= 0.5), minlength=4)
    assert quarters.min() >= 56


def test_ray_directions_match_a_per_camera_reference() -> None:
    rng = np.random.default_rng(3)
    c2w = heading_poses(rng.normal(size=(5, 3)), rng.uniform(0, 6.28, 5), rng.uniform(-1, 1, 5))
    k = np.array([[100.0, 90.0, 80.0, 60.0]] * 5)
    sizes = np.array([[160, 120]] * 5)
    pattern = ray_pattern(7)
    got = ray_directions(c2w, k, sizes, pattern)
    for n in range(5):
        for j, (u, v) in enumerate(pattern):
            d = np.array([(u * 160 - 80.0) / 100.0, -(v * 120 - 60.0) / 90.0, -1.0])
            want = c2w[n, :3, :3] @ (d / np.linalg.norm(d))
            np.testing.assert_allclose(got[n, j], want, atol=1e-12)
    # The first ray goes through the principal point, i.e. along the viewing direction.
    cams = CameraArrays.from_poses(c2w)
    np.testing.assert_allclose(frame_rays(cams, 1)[:, 0], cams.forward, atol=1e-12)


@pytest.mark.parametrize(
    ("origin", "direction", "far", "expected"),
    [
        # Disc of radius 2 at the origin, heights 0..3. From x=-10 along +x the disc starts at t=8.
        ((-10, 0, 1), (1, 0, 0), 7.9, False),
        ((-10, 0, 1), (1, 0, 0), 8.0, True),
        ((-10, 0, 1), (-1, 0, 0), 100.0, False),  # pointing away
        ((-10, 0, 5), (1, 0, 0), 100.0, False),  # passes above the top
        ((-10, 2, 1), (1, 0, 0), 100.0, True),  # grazes the side: touching counts
        ((-10, 2.01, 1), (1, 0, 0), 100.0, False),
        ((0, 0, 10), (0, 0, -1), 6.9, False),  # straight down from above: the top is 7 away
        ((0, 0, 10), (0, 0, -1), 7.0, True),
        ((5, 0, 10), (0, 0, -1), 100.0, False),  # straight down beside the disc
        ((1, 1, 1), (0, 1, 0), 1e-3, True),  # starts inside
        # Rising at 45 deg from (-10, 0, 0): enters the disc at x=-2 where z=8 > 3: misses.
        ((-10, 0, 0), (1, 0, 1), 100.0, False),
        # Rising at 45 deg from (-5, 0, 0): z=3 at x=-2, the disc's edge: touches the top rim.
        ((-5, 0, 0), (1, 0, 1), 100.0, True),
    ],
)
def test_crosses_cylinder_hand_computed(origin, direction, far, expected) -> None:  # noqa: ANN001
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    got = crosses_cylinder(np.asarray(origin, float), d, far, np.zeros(2), 2.0, 0.0, 3.0)
    assert bool(got) is expected
    spec = BlockSpec("b000_000", (0.0, 0.0, 1.5), 2.0, 0.0, 3.0)
    assert bool(spec.ray_crossing(np.asarray(origin, float)[None], np.asarray(direction, float)[None], far)[0]) is expected


def test_block_spec_contains_and_overlap() -> None:
    a = BlockSpec("b000_000", (0.0, 0.0, 5.0), 10.0, 0.0, 10.0)
    b = BlockSpec("b001_000", (10.0, 0.0, 5.0), 10.0, 0.0, 10.0)
    far = BlockSpec("b009_000", (90.0, 0.0, 5.0), 10.0, 0.0, 10.0)
    pts = np.array([[0, 0, 0], [10, 0, 5], [7.1, 7.1, 5], [0, 0, 10.01], [3, 4, 10]], float)
    assert a.contains(pts).tolist() == [True, True, False, False, True]
    # Radii 10 at distance 10: the discs share 10 of a 20 m diameter.
    assert a.overlap_with(b) == pytest.approx(0.5)
    assert a.overlap_with(far) == 0.0
    with pytest.raises(ValueError, match="shares"):
        BlockSpec("x", (0.0, 0.0, 0.0), 1.0, 0.0, 1.0, frames=("a",), shares=())
    with pytest.raises(ValueError, match="empty region"):
        BlockSpec("x", (0.0, 0.0, 0.0), 1.0, 2.0, 1.0)


# Plans on the 2x2 city ---------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_city_plan_covers_every_street_and_no_block_is_empty(city, city_plans, strategy: str) -> None:  # noqa: ANN001
    cams, street = city
    plan = city_plans[strategy]
    cfg = plan.config
    assert 4 <= len(plan) <= 16
    # Every street, sampled every 5 m along its centre line at camera height, lies in some block.
    positions, _ = street_grid_positions(2)
    inside = np.zeros(len(positions), bool)
    for b in plan.blocks:
        inside |= b.contains(positions)
    assert inside.all()
    # Every frame of every street segment is in some block.
    in_plan = np.array([bool(plan.blocks_of_frame(i)) for i in cams.ids])
    for s in np.unique(street):
        assert in_plan[street == s].all(), f"street {s} has frames in no block"
    # No block is empty: each has enough training frames, and its frames really see it.
    train_ids = {i for i, t in zip(cams.ids, cams.is_train) if t}
    for b in plan.blocks:
        assert sum(f in train_ids for f in b.frames) >= cfg.min_frames
        assert max(b.shares) >= cfg.min_share


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_frame_is_assigned_and_recorded_shares_are_the_ray_test(city, city_plans, strategy: str) -> None:  # noqa: ANN001
    cams, _ = city
    plan = city_plans[strategy]
    assigned = {f for b in plan.blocks for f in b.frames}
    assert assigned == set(cams.ids)
    index = {f: i for i, f in enumerate(cams.ids)}
    for b in plan.blocks:
        sub = subset(cams, [index[f] for f in b.frames])
        want = recomputed_shares(b, sub, plan.far_m, plan.config.rays_per_frame)
        np.testing.assert_allclose(b.shares, want, atol=1.5 / plan.config.rays_per_frame)
        assert list(b.frames) == sorted(b.frames, key=index.__getitem__)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_plan_is_deterministic_and_round_trips_through_json(city, city_plans, strategy: str) -> None:  # noqa: ANN001
    cams, _ = city
    plan = city_plans[strategy]
    again = plan_blocks(cams, PartitionConfig(strategy=strategy), workers=2)
    assert again == plan
    text = json.dumps(plan.to_dict())
    back = BlockPlan.from_dict(json.loads(text))
    assert back == plan
    assert json.dumps(back.to_dict()) == text


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ids_neighbours_and_lookups(city_plans, strategy: str) -> None:  # noqa: ANN001
    plan = city_plans[strategy]
    assert list(plan.ids) == sorted(plan.ids)
    for b in plan.blocks:
        assert ID_PATTERN.match(b.id), b.id
        for n in b.neighbors:
            other = plan.block(n)
            assert b.id in other.neighbors
            assert math.dist(b.center[:2], other.center[:2]) < b.radius_m + other.radius_m
        assert plan.frames_of(b.id) == b.frames
        for f, s in list(zip(b.frames, b.shares))[:5]:
            assert b.id in plan.blocks_of_frame(f)
            assert b.share_of(f) == s
    assert plan.blocks_of_frame("no such frame") == ()
    with pytest.raises(KeyError, match="no block"):
        plan.block("b999_999")


@pytest.mark.parametrize("overlap", [0.1, 0.3, 0.5, 0.7])
def test_grid_neighbours_overlap_as_configured(overlap: float) -> None:
    cams, _ = street_grid(4, step_m=10.0)
    plan = plan_blocks(cams, PartitionConfig(overlap=overlap, min_frames=1))
    assert len(plan) >= 9
    overlaps = [plan.nearest_overlap(i) for i in plan.ids]
    assert overlaps == pytest.approx([overlap] * len(plan), abs=1e-9)


@pytest.mark.parametrize(
    ("i", "j", "block_id"), [(3, 5, "b003_005"), (-1, 12, "bm01_012"), (0, -2, "b000_m02"), (1234, -123, "b1234_m123")]
)
def test_lattice_ids(i: int, j: int, block_id: str) -> None:
    assert lattice_id(i, j) == block_id and ID_PATTERN.match(block_id)


def test_grid_centres_sit_on_the_world_lattice(city_plans) -> None:  # noqa: ANN001
    for b in city_plans["grid"].blocks:
        i, j = (round(c / 80.0) for c in b.center[:2])
        assert b.center[:2] == (80.0 * i, 80.0 * j)
        assert b.id == lattice_id(i, j)


def test_trajectory_puts_blocks_at_the_intersections(city_plans) -> None:  # noqa: ANN001
    centres = {tuple(round(c) for c in b.center[:2]) for b in city_plans["trajectory"].blocks}
    assert centres == {(x, y) for x in (-80, 0, 80) for y in (-80, 0, 80)}


@pytest.mark.parametrize("yaw_deg", [0.0, 30.0, 45.0])
def test_trajectory_along_a_line_spaces_blocks_by_the_spacing(yaw_deg: float) -> None:
    line = straight_line(500, step_m=2.0, yaw_deg=yaw_deg)
    plan = plan_blocks(line, PartitionConfig(strategy="trajectory"))
    centres = plan.centers[:, :2]
    along = centres @ np.array([math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))])
    gaps = np.diff(np.sort(along))
    # Greedy on cells of spacing/16 = 5 m: cell points 80 m apart plus at most a cell diagonal;
    # each centre is the camera nearest its cell point, within half a diagonal of it.
    diagonal = 5.0 * math.sqrt(2)
    assert np.all(gaps >= 80.0 - diagonal) and np.all(gaps <= 80.0 + 2 * diagonal)
    overlaps = [plan.nearest_overlap(i) for i in plan.ids]
    # At radius 80 m, 2 diagonals are 9 % of a diameter.
    assert min(overlaps) >= 0.5 - 0.09 and max(overlaps) <= 0.5 + 0.05
    # Empty space gets no blocks: every centre is on the line.
    across = centres @ np.array([-math.sin(math.radians(yaw_deg)), math.cos(math.radians(yaw_deg))])
    assert np.all(np.abs(across) < 1e-6)


def test_clusters_overlap_their_nearest_neighbour_at_least_as_configured() -> None:
    cams = orbit(360, radius_m=200.0, altitude_m=60.0)
    plan = plan_blocks(cams, PartitionConfig(strategy="clusters", spacing_m=100.0, clusters=8, z_range_m=(-5.0, 80.0)))
    assert len(plan) == 8
    assert min(plan.nearest_overlap(i) for i in plan.ids) >= 0.5 - 1e-9
    for b in plan.blocks:  # every camera stands inside its own cluster's disc
        assert b.contains(cams.positions).any()
    assert {f for b in plan.blocks for f in b.frames} == set(cams.ids)


def test_clusters_are_deterministic_per_seed_and_ids_unique() -> None:
    cams = orbit(300, radius_m=180.0, altitude_m=50.0, loops=2)
    cfg = PartitionConfig(strategy="clusters", spacing_m=60.0, z_range_m=(0.0, 70.0))
    a, b = plan_blocks(cams, cfg), plan_blocks(cams, cfg)
    assert a == b
    assert len(set(a.ids)) == len(a.ids)


# Stable ids --------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ids_survive_adding_a_few_frames(city, city_plans, strategy: str) -> None:  # noqa: ANN001
    cams, _ = city
    rng = np.random.default_rng(11)
    pick = rng.choice(len(cams), size=12, replace=False)
    c2w = cams.c2w[pick].copy()
    c2w[:, :2, 3] += rng.uniform(-1.0, 1.0, size=(12, 2))
    extra = cameras_from_poses(c2w, prefix="new")
    plan = city_plans[strategy]
    grown = plan_blocks(concat(cams, extra), PartitionConfig(strategy=strategy))
    assert grown.ids == plan.ids
    for old, new in zip(plan.blocks, grown.blocks):
        assert math.dist(old.center, new.center) < 2.0


def test_grid_ids_survive_extending_the_capture(city) -> None:  # noqa: ANN001
    cams, _ = city
    plan = plan_blocks(cams, PartitionConfig())
    # A new street leaving the city eastwards for 200 m.
    x = np.arange(95.0, 300.0, 5.0)
    pos = np.stack([x, np.zeros_like(x), np.full_like(x, 2.0)], axis=1).repeat(4, axis=0)
    yaw = np.tile(np.arange(4) * math.pi / 2, len(x))
    grown = plan_blocks(concat(cams, cameras_from_poses(heading_poses(pos, yaw), prefix="east")), PartitionConfig())
    assert set(plan.ids) < set(grown.ids)
    for b in plan.blocks:
        assert grown.block(b.id).center == b.center


# Edge cases --------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_frame_gives_one_block(strategy: str) -> None:
    one = straight_line(1)
    plan = plan_blocks(one, PartitionConfig(strategy=strategy))
    assert len(plan) == 1 and plan.blocks[0].frames == one.ids and plan.blocks[0].shares == (1.0,)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_all_frames_at_one_spot_give_one_block(strategy: str) -> None:
    spot = cameras_from_poses(heading_poses(np.tile([[5.0, 5.0, 2.0]], (8, 1)), np.arange(8) * math.pi / 4))
    plan = plan_blocks(spot, PartitionConfig(strategy=strategy))
    assert len(plan) == 1
    assert plan.blocks[0].center[:2] == (5.0, 5.0)
    assert set(plan.blocks[0].frames) == set(spot.ids)


def test_auto_spacing_cannot_size_a_block_from_one_spot() -> None:
    spot = straight_line(1)
    with pytest.raises(ValueError, match="one spot.*spacing_m"):
        plan_blocks(spot, PartitionConfig(spacing_m="auto"))
    plan = plan_blocks(spot, PartitionConfig(spacing_m="auto", far_m=10.0))
    assert plan.blocks[0].radius_m == 10.0


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("spacing", [80.0, "auto", 0.0], ids=["80m", "auto", "zero"])
def test_a_capture_smaller_than_one_block_gives_one_block(strategy: str, spacing) -> None:  # noqa: ANN001
    small = straight_line(30, step_m=2.0, yaw_deg=20.0)  # 58 m long: fits in an 80 m radius
    plan = plan_blocks(small, PartitionConfig(strategy=strategy, spacing_m=spacing))
    assert len(plan) == 1
    block = plan.blocks[0]
    assert set(block.frames) == set(small.ids)
    assert block.contains(small.positions).all()


def test_auto_spacing_holds_an_object_capture_in_one_block() -> None:
    # Cameras on a 4-unit ring looking at an object at the origin (non-metric units).
    cams = orbit(50, radius_m=4.0, altitude_m=1.0, fov_x_deg=50.0)
    plan = plan_blocks(cams, PartitionConfig(spacing_m="auto"))
    (block,) = plan.blocks
    assert block.id == "b000_000"
    assert block.radius_m == pytest.approx(4.2)
    assert block.contains(cams.positions).all() and block.contains(np.zeros((1, 3))).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_straight_line_trajectory(strategy: str) -> None:
    line = straight_line(300, step_m=2.0, yaw_deg=10.0)
    plan = plan_blocks(line, PartitionConfig(strategy=strategy))
    assert len(plan) >= 4
    assert {f for b in plan.blocks for f in b.frames} == set(line.ids)
    for b in plan.blocks:
        assert b.contains(line.positions).any()


def test_no_gps_plans_in_the_capture_frame(city) -> None:  # noqa: ANN001
    cams, _ = city
    plan = plan_blocks(cams, PartitionConfig())
    assert plan.geo_origin is None
    geo = plan_blocks(cams, PartitionConfig(), geo_origin=(37.0, -122.0, 5.0))
    assert geo.geo_origin == (37.0, -122.0, 5.0)
    assert geo.blocks == plan.blocks


def test_invalid_cameras_are_refused() -> None:
    with pytest.raises(ValueError, match="no cameras"):
        plan_blocks(CameraArrays.from_poses(np.zeros((0, 4, 4))), PartitionConfig())
    c2w = heading_poses(np.zeros((3, 3)), np.zeros(3))
    c2w[1, 0, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite.*frame_0000001"):
        plan_blocks(CameraArrays.from_poses(c2w), PartitionConfig())
    far_away = heading_poses(np.array([[4.0e9, 0.0, 0.0], [4.0e9 + 500.0, 0.0, 0.0]]), np.zeros(2))
    with pytest.raises(ValueError, match="too far from the origin"):
        plan_blocks(CameraArrays.from_poses(far_away), PartitionConfig())
    with pytest.raises(ValueError, match="unique"):
        plan_blocks(CameraArrays.from_poses(heading_poses(np.zeros((2, 3)), np.zeros(2)), ids=("a", "a")), PartitionConfig())


# Small blocks ------------------------------------------------------------------------------------
def test_a_block_with_few_frames_is_merged_with_a_reason(city) -> None:  # noqa: ANN001
    cams, _ = city
    # Three cameras 150 m east of the city, looking further east, in a grid cell of their own.
    pos = np.array([[240.0, 0.0, 2.0], [245.0, 0.0, 2.0], [250.0, 0.0, 2.0]])
    stray = cameras_from_poses(heading_poses(pos, np.zeros(3)), prefix="stray")
    plan = plan_blocks(concat(cams, stray), PartitionConfig())
    reasons = dict(plan.dropped)
    assert list(reasons) == ["b003_000"] and "b003_000" not in plan.ids
    # Its frames: the strays and two city frames at the east end looking its way.
    assert reasons["b003_000"] == "merged into b001_000: seen by 5 training frames (min_frames=20)"
    for f in stray.ids:  # they see no other block: the nearest takes them, with share 0
        assert plan.blocks_of_frame(f) == ("b001_000",)
        assert plan.block("b001_000").share_of(f) == 0.0


def three_regions() -> Regions:
    return Regions(
        ids=("b000_000", "b001_000", "b002_000"),
        centers_xy=np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]]),
        radii=np.full(3, 10.0),
        z_min=np.zeros(3),
        z_max=np.full(3, 5.0),
    )


def test_assignment_thresholds_fallbacks_and_merges() -> None:
    # Frames 0-4 stand at x=0, 5 at x=10, 6 at x=19. Hand-made shares (frame, block, share):
    shares = Shares(
        frame=np.array([0, 1, 2, 3, 4, 4, 5, 6]),
        block=np.array([0, 0, 0, 0, 0, 1, 1, 1]),
        share=np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.05, 0.5, 0.08]),
    )
    positions = np.array([[0, 0, 1]] * 5 + [[10, 0, 1], [19, 0, 1]], float)
    regions = three_regions()
    got = assign_frames(shares, regions, positions, np.ones(7, bool), min_share=0.1, min_frames=1)
    # Frame 4's 0.05 in block 1 is below min_share; frame 6 reaches it nowhere and goes to its best
    # block (1, with 0.08); block 2 gets nothing and is dropped.
    assert got.kept.tolist() == [0, 1]
    assert [f.tolist() for f in got.frames] == [[0, 1, 2, 3, 4], [5, 6]]
    assert got.shares[1].tolist() == [0.5, 0.08]
    assert got.dropped == [(2, "no frame sees it")]
    # With min_frames=3 block 1 is merged (seen by frame 5 only; frame 6 was a fallback and does
    # not count): frames 5 and 6 see no other block -> the nearest alive, block 0, with share 0.
    got = assign_frames(shares, regions, positions, np.ones(7, bool), min_share=0.1, min_frames=3)
    assert got.kept.tolist() == [0]
    assert got.frames[0].tolist() == list(range(7))
    assert got.shares[0].tolist() == [1.0] * 5 + [0.0, 0.0]
    assert dict(got.dropped) == {1: "merged into b000_000: seen by 1 training frame (min_frames=3)", 2: "no frame sees it"}


def test_the_block_with_most_frames_is_always_kept() -> None:
    shares = Shares(np.array([0, 1, 2]), np.array([0, 1, 1]), np.array([1.0, 1.0, 1.0]))
    positions = np.array([[0, 0, 1], [10, 0, 1], [12, 0, 1]], float)
    got = assign_frames(shares, three_regions(), positions, np.ones(3, bool), min_share=0.1, min_frames=50)
    assert got.kept.tolist() == [1] and got.frames[0].tolist() == [0, 1, 2]


def test_held_out_frames_are_assigned_but_not_counted(city) -> None:  # noqa: ANN001
    cams, _ = city
    held = CameraArrays(cams.ids, cams.c2w, cams.intrinsics, cams.sizes, np.zeros(len(cams), bool), cams.timestamps)
    plan = plan_blocks(held, PartitionConfig())
    # No block has training frames: all but the fullest are merged into it.
    assert len(plan) == 1 and set(plan.blocks[0].frames) == set(cams.ids)


# Incremental updates -----------------------------------------------------------------------------
def test_affected_blocks_are_the_blocks_the_frames_would_join(city, city_plans) -> None:  # noqa: ANN001
    cams, _ = city
    plan = city_plans["grid"]
    assert not plan.dropped
    for i in (0, 37, 400, 887):
        one = subset(cams, [i])
        assert set(affected_blocks(plan, one)) == set(plan.blocks_of_frame(cams.ids[i]))


def test_affected_blocks_of_a_local_update(city_plans) -> None:  # noqa: ANN001
    plan = city_plans["grid"]
    # New photos at the north-east corner, looking south and west along its two streets.
    pos = np.array([[80.0, 80.0, 2.0]] * 2)
    new = cameras_from_poses(heading_poses(pos, np.array([math.pi, -math.pi / 2])), prefix="update")
    touched = affected_blocks(plan, new)
    assert "b001_001" in touched
    assert "bm01_m01" not in touched  # the far corner is 226 m away
    assert list(touched) == [i for i in plan.ids if i in touched]


def test_extend_plan_keeps_regions_and_adds_frames(city, city_plans) -> None:  # noqa: ANN001
    plan = city_plans["grid"]
    pos = np.array([[0.0, 40.0, 2.0], [40.0, 0.0, 2.0]])
    new = cameras_from_poses(heading_poses(pos, np.array([0.5, 2.0])), prefix="more")
    grown = extend_plan(plan, new)
    assert grown.ids == plan.ids and grown.n_frames == plan.n_frames + 2
    for f in new.ids:
        assert set(grown.blocks_of_frame(f)) == set(affected_blocks(plan, subset(new, [new.ids.index(f)])))
    for a, b in zip(plan.blocks, grown.blocks):
        assert (a.center, a.radius_m) == (b.center, b.radius_m)
        assert b.frames[: len(a.frames)] == a.frames


# Plan serialisation ------------------------------------------------------------------------------
def test_plan_json_schema_is_checked(city_plans) -> None:  # noqa: ANN001
    data = city_plans["grid"].to_dict()
    assert data["schema_version"] == 1 and data["world_transform"][0] == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="newer"):
        BlockPlan.from_dict({**data, "schema_version": 99})
    with pytest.raises(ValueError, match="malformed"):
        BlockPlan.from_dict({k: v for k, v in data.items() if k != "blocks"})
    with pytest.raises(ValueError, match="schema_version"):
        BlockPlan.from_dict({"blocks": []})


def test_summary_rows_are_json_ready(city_plans) -> None:  # noqa: ANN001
    rows = city_plans["grid"].summary()
    json.dumps(rows)
    centre = next(r for r in rows if r["id"] == "b000_000")
    assert centre["center"][:2] == [0.0, 0.0] and centre["radius_m"] == 80.0
    assert centre["overlap"] == pytest.approx(0.5) and len(centre["neighbors"]) == 8


def test_progress_reports_every_chunk(city) -> None:  # noqa: ANN001
    cams, _ = city
    calls: list[tuple[int, int]] = []
    plan_blocks(cams, PartitionConfig(chunk_frames=100), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(cams), len(cams))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) == math.ceil(len(cams) / 100)
