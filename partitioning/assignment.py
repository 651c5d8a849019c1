"""Which frames belong to which block: by the share of each frame's rays that cross the block.

Mega-NeRF assigns pixels to cells by where their rays go, not by where the camera stands; we do the
same per frame: ``rays_per_frame`` rays are sampled through a fixed pattern of image positions and
followed to ``far``; a frame's *share* for a block is the fraction of those rays that meet the
block's region. A frame belongs to every block where its share is at least ``min_share``; a frame
that reaches that nowhere goes to the block it sees best (the nearest one if it sees none), so
every frame is in some block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from partitioning.cameras import CameraArrays
from partitioning.placement import Regions
from partitioning.rays import crosses_prepared, frame_rays, region_terms, stable_directions

Progress = Callable[[int, int], None]
# Rays are tested in blocks of about this many (pair, ray) elements, ~4 MB per float32 temporary.
_ELEMENTS_PER_STEP = 1 << 20
_EPS_SHARE = 1e-9


@dataclass(frozen=True)
class Shares:
    """Sparse (frame, block) -> share for every pair with a share above zero, sorted by frame, block."""

    frame: np.ndarray
    """(P,) int64 frame index."""
    block: np.ndarray
    """(P,) int64 block index (into the ``Regions`` the shares were computed for)."""
    share: np.ndarray
    """(P,) float64 in (0, 1], a multiple of 1 / rays_per_frame."""


def ray_shares(
    cameras: CameraArrays,
    regions: Regions,
    *,
    far: float,
    rays_per_frame: int,
    chunk_frames: int = 8192,
    workers: int = 1,
    progress: Progress | None = None,
) -> Shares:
    """The share of each frame's sampled rays that cross each region (pairs with share > 0 only).

    Candidates per frame come from a KD-tree of block centres (within ``far`` plus the radius);
    frames standing inside a region score 1 without tracing; the rest go through a conservative
    view-cone test and then the exact ray/cylinder test, in float32, ``chunk_frames`` at a time.
    """
    n = len(cameras)
    starts = list(range(0, n, chunk_frames))
    tree = cKDTree(regions.centers_xy) if len(regions) else None

    def work(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stop = min(start + chunk_frames, n)
        return _chunk_shares(cameras, regions, tree, start, stop, far, rays_per_frame)

    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    results: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 and len(starts) > 1 else None
    try:
        results = pool.map(work, starts) if pool is not None else map(work, starts)
        for start, part in zip(starts, results):
            parts.append(part)
            if progress is not None:
                progress(min(start + chunk_frames, n), n)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Shares(empty, empty.copy(), np.zeros(0))
    frame, block, share = (np.concatenate(p) for p in zip(*parts))
    return Shares(frame, block, share)


def _chunk_shares(
    cameras: CameraArrays,
    regions: Regions,
    tree: cKDTree | None,
    start: int,
    stop: int,
    far: float,
    k_rays: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if tree is None or stop <= start:
        return empty
    c2w = cameras.c2w[start:stop]
    origin = c2w[:, :3, 3]
    n_regions = len(regions)
    reach = far + float(regions.radii.max())

    # Candidate pairs: regions whose disc comes within `far` of the camera.
    k = min(16, n_regions)
    while True:
        dist, idx = tree.query(origin[:, :2], k=k, distance_upper_bound=reach)
        dist, idx = dist.reshape(len(origin), -1), idx.reshape(len(origin), -1)
        if k >= n_regions or not np.isfinite(dist[:, -1]).any():
            break
        k = min(2 * k, n_regions)
    fi, slot = np.nonzero(np.isfinite(dist))
    bj = idx[fi, slot]
    keep = dist[fi, slot] <= far + regions.radii[bj]
    fi, bj = fi[keep], bj[keep]
    if len(fi) == 0:
        return empty

    o = origin[fi]
    px = o[:, 0] - regions.centers_xy[bj, 0]
    py = o[:, 1] - regions.centers_xy[bj, 1]
    r = regions.radii[bj]
    c_term, lo_z, hi_z = region_terms(px, py, r, regions.z_min[bj] - o[:, 2], regions.z_max[bj] - o[:, 2])
    inside = (c_term <= 0.0) & (lo_z <= 0.0) & (hi_z >= 0.0)

    dirs = frame_rays(_slice(cameras, start, stop), k_rays)  # (n, K, 3) unit
    forward = -c2w[:, :3, 2]
    # Half-angle of the cone around `forward` that holds the sampled rays (rotations are rigid).
    cos_half = np.clip(np.min(np.sum(dirs * forward[:, None, :], axis=2), axis=1), -1.0, 1.0)
    # View cone vs the region's bounding sphere: drop pairs that no sampled ray can reach.
    half_h = 0.5 * (regions.z_max[bj] - regions.z_min[bj])
    sphere_r = np.sqrt(r * r + half_h * half_h)
    v = np.stack([-px, -py, 0.5 * (lo_z + hi_z)], axis=1)
    v_len = np.linalg.norm(v, axis=1)
    reachable = v_len - sphere_r <= far
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = np.arccos(np.clip(np.einsum("pj,pj->p", v, forward[fi]) / v_len, -1.0, 1.0))
        spread = np.arccos(cos_half[fi]) + np.arcsin(np.clip(sphere_r / v_len, 0.0, 1.0))
    maybe = ~inside & reachable & ((v_len <= sphere_r) | (angle <= spread))

    count = np.zeros(len(fi), dtype=np.int64)
    count[inside] = k_rays
    todo = np.flatnonzero(maybe)
    if len(todo):
        dx, dy, dz = stable_directions(dirs[..., 0], dirs[..., 1], dirs[..., 2])
        ray_dx = dx.astype(np.float32)
        ray_dy = dy.astype(np.float32)
        ray_a = ray_dx * ray_dx + ray_dy * ray_dy
        ray_inv_dz = (1.0 / dz).astype(np.float32)
        step = max(1, _ELEMENTS_PER_STEP // k_rays)
        for s in range(0, len(todo), step):
            p = todo[s : s + step]
            f = fi[p]
            ppx = px[p].astype(np.float32)[:, None]
            ppy = py[p].astype(np.float32)[:, None]
            c = c_term[p].astype(np.float32)[:, None]
            hit = crosses_prepared(
                ppx, ppy, c,
                lo_z[p].astype(np.float32)[:, None], hi_z[p].astype(np.float32)[:, None],
                ray_dx[f], ray_dy[f], ray_a[f], ray_inv_dz[f], np.float32(far),
            )
            count[p] = np.count_nonzero(hit, axis=1)
    hit_any = count > 0
    return (fi[hit_any] + start).astype(np.int64), bj[hit_any].astype(np.int64), count[hit_any] / k_rays


def _slice(cameras: CameraArrays, start: int, stop: int) -> CameraArrays:
    return CameraArrays(
        ids=cameras.ids[start:stop],
        c2w=cameras.c2w[start:stop],
        intrinsics=cameras.intrinsics[start:stop],
        sizes=cameras.sizes[start:stop],
        is_train=cameras.is_train[start:stop],
        timestamps=cameras.timestamps[start:stop],
    )


@dataclass(frozen=True)
class Assignment:
    """Frames per block after thresholds, fallbacks and merges."""

    kept: np.ndarray
    """(B',) int64 indices of the regions that remain, ascending."""
    frames: list[np.ndarray]
    """Per kept region: (F,) int64 frame indices, ascending."""
    shares: list[np.ndarray]
    """Per kept region: (F,) float64 shares aligned with ``frames``."""
    dropped: list[tuple[int, str]]
    """(region index, reason) for each removed region."""


def assign_frames(
    shares: Shares,
    regions: Regions,
    positions: np.ndarray,
    is_train: np.ndarray,
    *,
    min_share: float,
    min_frames: int,
) -> Assignment:
    """Threshold the shares, give every frame a block, and merge blocks with too few frames.

    Blocks seen by fewer than ``min_frames`` training frames (share >= ``min_share``) are removed,
    fewest first; frames left in no block go to the remaining block with their highest share (the
    nearest if they see none). The block seen by the most training frames is never removed.
    """
    n, b = len(positions), len(regions)
    member = shares.share >= min_share - _EPS_SHARE
    frame, block, share = shares.frame[member], shares.block[member], shares.share[member]

    # CSR views of all positive shares per frame (for fallbacks).
    f_start = np.searchsorted(shares.frame, np.arange(n + 1))

    def best_block(f: int, allowed: np.ndarray) -> tuple[int, float]:
        lo, hi = f_start[f], f_start[f + 1]
        cand_b, cand_s = shares.block[lo:hi], shares.share[lo:hi]
        ok = allowed[cand_b]
        if ok.any():
            cand_b, cand_s = cand_b[ok], cand_s[ok]
            d = np.sum((regions.centers_xy[cand_b] - positions[f, :2]) ** 2, axis=1)
            best = np.lexsort((cand_b, d, -cand_s))[0]
            return int(cand_b[best]), float(cand_s[best])
        alive = np.flatnonzero(allowed)
        d = np.sum((regions.centers_xy[alive] - positions[f, :2]) ** 2, axis=1)
        return int(alive[np.lexsort((alive, d))[0]]), 0.0

    # Frames that meet min_share nowhere: their best block (vectorised, it can be many).
    has_block = np.zeros(n, dtype=bool)
    has_block[frame] = True
    orphans = np.flatnonzero(~has_block)
    extra_f, extra_b, extra_s = best_blocks(orphans, shares, regions, positions)
    frame = np.concatenate([frame, extra_f])
    block = np.concatenate([block, extra_b])
    share = np.concatenate([share, extra_s])

    # Per-block membership: sorted slices of (frame, share), plus frames merged in later.
    order = np.lexsort((frame, block))
    frame, block, share = frame[order], block[order], share[order]
    b_start = np.searchsorted(block, np.arange(b + 1))
    # Only frames that see a block (share >= min_share) count towards min_frames; frames merged in
    # as a fallback do not, so a block nobody sees cannot survive on them.
    seen = is_train[frame] & (share >= min_share - _EPS_SHARE)
    train_count = np.bincount(block, weights=seen, minlength=b).astype(np.int64)
    all_count = np.diff(b_start)
    n_blocks_of = np.bincount(frame, minlength=n)
    added: dict[int, list[tuple[int, float]]] = {}

    alive = np.ones(b, dtype=bool)
    keeper = int(np.lexsort((np.arange(b), -all_count, -train_count))[0])
    small = [j for j in range(b) if train_count[j] < min_frames and j != keeper]
    dropped: list[tuple[int, str]] = []
    for j in sorted(small, key=lambda j: (train_count[j], regions.ids[j])):
        alive[j] = False
        mine = frame[b_start[j] : b_start[j + 1]].tolist() + [f for f, _ in added.pop(j, [])]
        if not mine:
            dropped.append((j, "no frame sees it"))
            continue
        targets: set[int] = set()
        for f in mine:
            n_blocks_of[f] -= 1
            if n_blocks_of[f] == 0:
                t, s = best_block(f, alive)
                added.setdefault(t, []).append((f, s))
                n_blocks_of[f] = 1
                targets.add(t)
        count = int(train_count[j])
        what = f"seen by {count} training frame{'' if count == 1 else 's'} (min_frames={min_frames})"
        if targets:
            dropped.append((j, f"merged into {', '.join(sorted(regions.ids[t] for t in targets))}: {what}"))
        else:
            dropped.append((j, f"merged: {what}; all its frames belong to other blocks"))

    kept = np.flatnonzero(alive)
    frames_out, shares_out = [], []
    for j in kept.tolist():
        fs, ss = frame[b_start[j] : b_start[j + 1]], share[b_start[j] : b_start[j + 1]]
        if j in added:
            extra = np.array(added[j], dtype=np.float64).reshape(-1, 2)
            fs = np.concatenate([fs, extra[:, 0].astype(np.int64)])
            ss = np.concatenate([ss, extra[:, 1]])
            o = np.argsort(fs, kind="stable")
            fs, ss = fs[o], ss[o]
        frames_out.append(fs)
        shares_out.append(ss)
    return Assignment(kept, frames_out, shares_out, dropped)


def best_blocks(
    frames: np.ndarray, shares: Shares, regions: Regions, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each frame: the block with its highest share (ties: nearest centre, then lowest index),
    or the nearest block with share 0 when it sees none."""
    if len(frames) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    sel = np.isin(shares.frame, frames)
    f, bj, s = shares.frame[sel], shares.block[sel], shares.share[sel]
    d = np.sum((regions.centers_xy[bj] - positions[f, :2]) ** 2, axis=1)
    order = np.lexsort((bj, d, -s, f))
    f, bj, s = f[order], bj[order], s[order]
    first = np.r_[True, f[1:] != f[:-1]] if len(f) else np.zeros(0, bool)
    best = dict(zip(f[first].tolist(), zip(bj[first].tolist(), s[first].tolist())))
    blind = np.array([x for x in frames.tolist() if x not in best], dtype=np.int64)
    out_b = np.empty(len(frames), dtype=np.int64)
    out_s = np.zeros(len(frames))
    if len(blind):
        _, nearest = cKDTree(regions.centers_xy).query(positions[blind, :2], k=1)
        best.update({int(x): (int(j), 0.0) for x, j in zip(blind, nearest)})
    for i, x in enumerate(frames.tolist()):
        out_b[i], out_s[i] = best[x]
    return frames.astype(np.int64), out_b, out_s


__all__ = ["Shares", "Assignment", "ray_shares", "assign_frames", "best_blocks"]
