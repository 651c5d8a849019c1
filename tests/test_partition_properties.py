"""Property tests of the planner on random street-like and scattered captures."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partitioning import BlockPlan, CameraArrays, PartitionConfig, frame_blocks, frame_rays, plan_blocks
from partitioning.layouts import cameras_from_poses, heading_poses

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def captures(draw) -> CameraArrays:  # noqa: ANN001
    """A drive along a few straight streets (random turns), or a scatter of cameras (a drone grid)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        n_segments = draw(st.integers(1, 5))
        step = draw(st.floats(3.0, 9.0))
        point, heading = np.zeros(2), draw(st.sampled_from([0.0, math.pi / 2, 0.3, 1.1]))
        stops = [point.copy()]
        for _ in range(n_segments):
            heading += draw(st.sampled_from([0.0, math.pi / 2, -math.pi / 2, 0.4]))
            length = draw(st.floats(20.0, 220.0))
            for _ in range(int(length // step)):
                point = point + step * np.array([math.cos(heading), math.sin(heading)])
                stops.append(point.copy())
        xy = np.array(stops)
        xy += rng.normal(scale=0.5, size=xy.shape)
    else:
        n = draw(st.integers(1, 300))
        extent = draw(st.floats(1.0, 400.0))
        xy = rng.uniform(-extent, extent, size=(n, 2))
    headings = draw(st.integers(1, 4))
    pos = np.column_stack([xy, rng.uniform(1.5, 3.0, size=len(xy))]).repeat(headings, axis=0)
    yaw = np.tile(np.arange(headings) * 2 * math.pi / headings, len(xy)) + rng.uniform(-0.2, 0.2, len(pos))
    pitch = rng.uniform(-0.3, 0.2, len(pos))
    is_train = rng.uniform(size=len(pos)) > 0.1
    return cameras_from_poses(heading_poses(pos, yaw, pitch), fov_x_deg=draw(st.floats(50.0, 100.0)), is_train=is_train)


configs = st.builds(
    PartitionConfig,
    strategy=st.sampled_from(["grid", "trajectory", "clusters"]),
    spacing_m=st.floats(30.0, 120.0),
    overlap=st.floats(0.2, 0.7),
    rays_per_frame=st.sampled_from([8, 16, 32]),
    min_share=st.sampled_from([0.05, 0.1, 0.3]),
    min_frames=st.integers(1, 40),
)


@SETTINGS
@given(cams=captures(), cfg=configs)
def test_plan_invariants(cams: CameraArrays, cfg: PartitionConfig) -> None:
    plan = plan_blocks(cams, cfg)

    # Every frame, training or held out, is in at least one block.
    assert {f for b in plan.blocks for f in b.frames} == set(cams.ids)
    index = {f: i for i, f in enumerate(cams.ids)}
    for b in plan.blocks:
        # Its region is seen: by at least min_frames training frames, unless it is the only block.
        members = [f for f, s in zip(b.frames, b.shares) if s >= cfg.min_share - 1e-9]
        if len(plan) > 1:
            assert sum(cams.is_train[index[f]] for f in members) >= cfg.min_frames
        # Trajectory centres are cameras, clusters hold their members, and a grid disc reaches its
        # cell's corners once overlap >= 1 - 1/sqrt(2): then a camera stands in the region.
        if cfg.strategy != "grid" or cfg.overlap >= 1 - 1 / math.sqrt(2):
            assert b.contains(cams.positions).any()
        # Recorded shares are the ray test (float64 reference vs the float32 fast path).
        idx = np.array([index[f] for f in b.frames])
        dirs = frame_rays(cams, cfg.rays_per_frame)[idx]
        origins = np.repeat(cams.positions[idx], cfg.rays_per_frame, axis=0)
        want = b.ray_crossing(origins, dirs.reshape(-1, 3), plan.far_m).reshape(len(idx), -1).mean(axis=1)
        got = np.array(b.shares)
        merged_in = got < cfg.min_share - 1e-9  # fallback members carry their (small) share
        assert np.all(np.abs(got - want) <= 1.0 / cfg.rays_per_frame + 1e-9)
        assert np.all((got >= cfg.min_share - 1e-9) | merged_in)
        for n in b.neighbors:
            assert b.id in plan.block(n).neighbors
    assert len(set(plan.ids)) == len(plan.ids)

    # Deterministic, and lossless through JSON.
    assert plan_blocks(cams, cfg) == plan
    assert BlockPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


@SETTINGS
@given(cams=captures(), cfg=configs)
def test_update_assignment_agrees_with_the_plan(cams: CameraArrays, cfg: PartitionConfig) -> None:
    """``frame_blocks`` (behind ``affected_blocks``) puts each frame where the plan put it."""
    plan = plan_blocks(cams, cfg)
    for frame_id, blocks in zip(cams.ids, frame_blocks(plan, cams)):
        assert {b for b, _ in blocks} == set(plan.blocks_of_frame(frame_id))
        for block_id, share in blocks:
            assert plan.block(block_id).share_of(frame_id) == share


@SETTINGS
@given(cams=captures(), cfg=configs, n_new=st.integers(1, 5), seed=st.integers(0, 1000))
def test_grid_and_trajectory_ids_survive_a_few_more_frames(
    cams: CameraArrays, cfg: PartitionConfig, n_new: int, seed: int
) -> None:
    """Frames added on top of existing ones (same cells) keep every block id (grid, trajectory)."""
    cfg = PartitionConfig(**{**cfg.to_dict(), "strategy": "grid" if seed % 2 else "trajectory"})
    plan = plan_blocks(cams, cfg)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(cams), size=n_new)
    extra = cameras_from_poses(cams.c2w[pick], prefix="extra")
    both = CameraArrays(
        cams.ids + extra.ids, np.concatenate([cams.c2w, extra.c2w]),
        np.concatenate([cams.intrinsics, extra.intrinsics]), np.concatenate([cams.sizes, extra.sizes]),
        np.concatenate([cams.is_train, extra.is_train]), np.concatenate([cams.timestamps, extra.timestamps]),
    )
    grown = plan_blocks(both, cfg)
    # Blocks can only gain frames, so every block that met min_frames is kept with its id and centre
    # (one kept below min_frames, as the fullest of a tiny capture, may yield to another).
    train = {f for f, t in zip(cams.ids, cams.is_train) if t}
    for b in plan.blocks:
        seen_by = sum(f in train and s >= cfg.min_share - 1e-9 for f, s in zip(b.frames, b.shares))
        if seen_by >= cfg.min_frames:
            assert grown.block(b.id).center == b.center
    assert set(plan.ids) <= set(grown.ids) | {i for i, _ in grown.dropped}
