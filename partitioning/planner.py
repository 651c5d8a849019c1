"""``plan_blocks``: place blocks, assign frames by their rays, merge small blocks, link neighbours."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree

from partitioning.assignment import assign_frames, ray_shares
from partitioning.cameras import CameraArrays
from partitioning.config import PartitionConfig
from partitioning.placement import Regions, place_blocks
from partitioning.plan import IDENTITY, BlockPlan, BlockSpec


def plan_blocks(
    cameras: CameraArrays,
    cfg: PartitionConfig | None = None,
    *,
    geo_origin: tuple[float, float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> BlockPlan:
    """Split a capture's cameras into overlapping blocks (see ``PartitionConfig``).

    ``geo_origin`` (lat, lon, alt) is recorded so that blocks can be placed on a map; ``progress``
    is called as ``progress(frames_done, frames_total)`` during the ray test; ``workers`` threads
    share that test (the plan does not depend on it). Raises ValueError for an empty capture,
    non-finite poses or intrinsics, or a configuration that cannot size a block.
    """
    cfg = PartitionConfig() if cfg is None else cfg
    cfg.validate()
    check_cameras(cameras)
    positions = cameras.positions
    regions = place_blocks(positions, cfg, cameras.forward)
    far = float(cfg.far_m) if cfg.far_m is not None else float(np.median(regions.radii))
    shares = ray_shares(
        cameras, regions, far=far, rays_per_frame=cfg.rays_per_frame,
        chunk_frames=cfg.chunk_frames, workers=workers, progress=progress,
    )
    result = assign_frames(
        shares, regions, positions, cameras.is_train, min_share=cfg.min_share, min_frames=cfg.min_frames
    )
    kept = regions.subset(result.kept)
    neighbors = neighbor_ids(kept)
    frame_ids = np.array(cameras.ids, dtype=object)
    blocks = tuple(
        BlockSpec(
            id=kept.ids[i],
            center=(
                float(kept.centers_xy[i, 0]),
                float(kept.centers_xy[i, 1]),
                float(0.5 * (kept.z_min[i] + kept.z_max[i])),
            ),
            radius_m=float(kept.radii[i]),
            z_min=float(kept.z_min[i]),
            z_max=float(kept.z_max[i]),
            neighbors=neighbors[i],
            frames=tuple(frame_ids[result.frames[i]].tolist()),
            shares=tuple(result.shares[i].tolist()),
        )
        for i in range(len(kept))
    )
    return BlockPlan(
        blocks=blocks,
        strategy=cfg.strategy,
        config=cfg,
        far_m=far,
        geo_origin=None if geo_origin is None else tuple(float(v) for v in geo_origin),  # type: ignore[arg-type]
        world_transform=IDENTITY,
        dropped=tuple((regions.ids[j], reason) for j, reason in sorted(result.dropped, key=lambda d: regions.ids[d[0]])),
        n_frames=len(cameras),
        bounds=(
            tuple(float(v) for v in positions.min(axis=0)),  # type: ignore[arg-type]
            tuple(float(v) for v in positions.max(axis=0)),
        ),
    )


def neighbor_ids(regions: Regions) -> list[tuple[str, ...]]:
    """Per region, the sorted ids of the regions whose discs overlap it (touching is not enough)."""
    out: list[list[str]] = [[] for _ in range(len(regions))]
    if len(regions) > 1:
        pairs = cKDTree(regions.centers_xy).query_pairs(2.0 * float(regions.radii.max()), output_type="ndarray")
        d = np.linalg.norm(regions.centers_xy[pairs[:, 0]] - regions.centers_xy[pairs[:, 1]], axis=1)
        reach = regions.radii[pairs[:, 0]] + regions.radii[pairs[:, 1]]
        for i, j in pairs[d < reach * (1.0 - 1e-9)].tolist():
            out[i].append(regions.ids[j])
            out[j].append(regions.ids[i])
    return [tuple(sorted(ids)) for ids in out]


def check_cameras(cameras: CameraArrays) -> None:
    """Raise ValueError when the cameras cannot be planned (none, or non-finite values)."""
    if len(cameras) == 0:
        raise ValueError("no cameras to plan: the capture has no frames")
    bad = ~np.all(np.isfinite(cameras.c2w.reshape(len(cameras), -1)), axis=1)
    bad |= ~np.all(np.isfinite(cameras.intrinsics), axis=1) | np.any(cameras.intrinsics[:, :2] <= 0.0, axis=1)
    bad |= np.any(cameras.sizes <= 0, axis=1)
    if bad.any():
        first = cameras.ids[int(np.flatnonzero(bad)[0])]
        raise ValueError(f"{int(bad.sum())} frame(s) have non-finite poses or invalid intrinsics, e.g. {first!r}")
    if len(set(cameras.ids)) != len(cameras.ids):
        raise ValueError("frame ids are not unique")


__all__ = ["plan_blocks", "neighbor_ids", "check_cameras"]
