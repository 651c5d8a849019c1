"""Incremental updates: which blocks new frames touch, and adding those frames to a plan."""

from __future__ import annotations

import dataclasses

import numpy as np

from partitioning.assignment import best_blocks, ray_shares
from partitioning.cameras import CameraArrays
from partitioning.placement import Regions
from partitioning.plan import BlockPlan
from partitioning.planner import check_cameras

_EPS_SHARE = 1e-9


def plan_regions(plan: BlockPlan) -> Regions:
    """The plan's blocks as region arrays (in plan order)."""
    return Regions(
        ids=plan.ids,
        centers_xy=plan.centers[:, :2].copy(),
        radii=plan.radii,
        z_min=np.array([b.z_min for b in plan.blocks], dtype=np.float64),
        z_max=np.array([b.z_max for b in plan.blocks], dtype=np.float64),
    )


def frame_blocks(plan: BlockPlan, cameras: CameraArrays, *, workers: int = 1) -> list[list[tuple[str, float]]]:
    """Per camera: ``(block id, share)`` of the blocks it would be assigned to under ``plan``.

    The same ray test and thresholds that made the plan (``far_m``, ``rays_per_frame``,
    ``min_share``), and the same fallback: a frame that reaches ``min_share`` nowhere goes to the
    block it sees best, or the nearest block when it sees none.
    """
    if len(plan.blocks) == 0:
        raise ValueError("the plan has no blocks")
    check_cameras(cameras)
    regions = plan_regions(plan)
    cfg = plan.config
    shares = ray_shares(
        cameras, regions, far=plan.far_m, rays_per_frame=cfg.rays_per_frame,
        chunk_frames=cfg.chunk_frames, workers=workers,
    )
    member = shares.share >= cfg.min_share - _EPS_SHARE
    out: list[list[tuple[str, float]]] = [[] for _ in range(len(cameras))]
    for f, b, s in zip(shares.frame[member].tolist(), shares.block[member].tolist(), shares.share[member].tolist()):
        out[f].append((regions.ids[b], s))
    orphans = np.array([i for i, blocks in enumerate(out) if not blocks], dtype=np.int64)
    for f, b, s in zip(*(a.tolist() for a in best_blocks(orphans, shares, regions, cameras.positions))):
        out[f].append((regions.ids[b], s))
    return out


def affected_blocks(plan: BlockPlan, cameras: CameraArrays, *, workers: int = 1) -> tuple[str, ...]:
    """Ids (in plan order) of the blocks whose regions the given cameras observe.

    A block is affected when one of the cameras would be assigned to it (``frame_blocks``): those
    are the blocks to retrain when the cameras' frames are added to the capture.
    """
    touched = {block_id for blocks in frame_blocks(plan, cameras, workers=workers) for block_id, _ in blocks}
    return tuple(i for i in plan.ids if i in touched)


def extend_plan(plan: BlockPlan, cameras: CameraArrays, *, workers: int = 1) -> BlockPlan:
    """The plan with the given frames (re)assigned to its blocks; regions and ids stay as they are.

    Frames already in the plan under the same id are moved to where they belong now; ``n_frames``
    and ``bounds`` grow accordingly. Blocks are not added, removed or merged: replan for that.
    """
    assigned = frame_blocks(plan, cameras, workers=workers)
    new_ids = set(cameras.ids)
    additions: dict[str, list[tuple[str, float]]] = {}
    for frame_id, blocks in zip(cameras.ids, assigned):
        for block_id, share in blocks:
            additions.setdefault(block_id, []).append((frame_id, share))
    known: set[str] = set()
    blocks_out = []
    for b in plan.blocks:
        known.update(b.frames)
        kept = [(f, s) for f, s in zip(b.frames, b.shares) if f not in new_ids]
        rows = kept + additions.get(b.id, [])
        blocks_out.append(
            dataclasses.replace(b, frames=tuple(f for f, _ in rows), shares=tuple(s for _, s in rows))
        )
    pos = cameras.positions
    lo = np.minimum(np.array(plan.bounds[0]), pos.min(axis=0)) if plan.n_frames else pos.min(axis=0)
    hi = np.maximum(np.array(plan.bounds[1]), pos.max(axis=0)) if plan.n_frames else pos.max(axis=0)
    return dataclasses.replace(
        plan,
        blocks=tuple(blocks_out),
        n_frames=plan.n_frames + len(new_ids - known),
        bounds=(tuple(float(v) for v in lo), tuple(float(v) for v in hi)),  # type: ignore[arg-type]
    )


__all__ = ["affected_blocks", "extend_plan", "frame_blocks", "plan_regions"]
