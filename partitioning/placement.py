"""Where blocks go: candidate block regions from camera positions (grid, trajectory, clusters).

Every strategy names its blocks by a lattice anchored at the world origin (never at the capture's
extent), so a block keeps its id when a few frames are added to a capture:

- ``grid``: ``b{i}_{j}`` for the centre ``(i, j) * spacing_m``, one per lattice cell that a camera
  stands in;
- ``trajectory`` and ``clusters``: ``b{i}_{j}`` for the point of the finer lattice of pitch
  ``spacing_m / 4`` nearest to the block's lattice cell (trajectory) or centroid (clusters).

Negative indices are written with ``m`` (minus): ``b003_m02``. The camera positions are first
binned into *cells* of pitch ``spacing_m / 16``; the strategies work on the cells (a street city of a
million frames has a few ten thousand), which also makes them independent of frame order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from partitioning.config import PartitionConfig

CELLS_PER_SPACING = 16
"""Cells per ``spacing_m``: the resolution at which trajectory and clusters see the capture."""
ID_CELLS_PER_SPACING = 4
"""Id lattice points per ``spacing_m`` for trajectory and clusters."""
_JUNCTION_SPREAD = 0.3
_MAX_KMEANS_CELLS = 200_000
_KMEANS_ITERATIONS = 100


@dataclass(frozen=True)
class Regions:
    """Candidate block regions as arrays (``B`` blocks): vertical cylinders with ids."""

    ids: tuple[str, ...]
    centers_xy: np.ndarray
    """(B, 2) float64."""
    radii: np.ndarray
    """(B,) float64."""
    z_min: np.ndarray
    """(B,) float64."""
    z_max: np.ndarray
    """(B,) float64."""

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> Regions:
        """The regions at the given integer positions, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return Regions(
            tuple(self.ids[i] for i in index),
            self.centers_xy[index],
            self.radii[index],
            self.z_min[index],
            self.z_max[index],
        )


@dataclass(frozen=True)
class Cells:
    """Camera positions binned on a square lattice of pitch ``pitch`` anchored at the origin."""

    pitch: float
    ij: np.ndarray
    """(M, 2) int64 lattice indices of the occupied cells, sorted."""
    rep: np.ndarray
    """(M,) int64: per cell, the frame nearest its lattice point (lowest index on ties)."""
    first: np.ndarray
    """(M,) int64: per cell, its lowest frame index (capture order)."""
    count: np.ndarray
    """(M,) int64 frames per cell."""
    z_lo: np.ndarray
    """(M,) float64 lowest camera height in the cell."""
    z_hi: np.ndarray
    """(M,) float64 highest camera height in the cell."""

    @property
    def points(self) -> np.ndarray:
        """(M, 2) float64 lattice points of the cells."""
        return self.ij * self.pitch


def lattice_id(i: int, j: int) -> str:
    """``b003_005`` for (3, 5); negative indices get an ``m``: ``bm01_012`` for (-1, 12)."""

    def part(k: int) -> str:
        return f"{k:03d}" if k >= 0 else f"m{-k:02d}"

    return f"b{part(int(i))}_{part(int(j))}"


def bin_cameras(positions: np.ndarray, pitch: float) -> Cells:
    """Bin ``(N, 3)`` camera positions into lattice cells of ``pitch`` (round to nearest point)."""
    xy = positions[:, :2] / pitch
    if np.abs(xy).max() >= 2.0**29:
        raise ValueError(
            f"camera positions up to {np.abs(positions[:, :2]).max():.3g} are too far from the origin for a "
            f"spacing of {pitch * CELLS_PER_SPACING:g}: plan in a local frame (e.g. ENU), not ECEF"
        )
    ij = np.floor(xy + 0.5).astype(np.int64)
    offset = np.int64(1 << 30)  # keys stay below 2**63 for |index| < 2**30
    key = ((ij[:, 0] + offset) << 32) | (ij[:, 1] + offset)
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    dist2 = np.sum((xy - ij) ** 2, axis=1)
    index = np.arange(len(positions))
    order = np.lexsort((index, dist2, inverse))
    starts = np.flatnonzero(np.r_[True, inverse[order][1:] != inverse[order][:-1]])
    z = positions[order, 2]
    return Cells(
        pitch=pitch,
        ij=np.stack([(uniq >> 32) - offset, (uniq & 0xFFFFFFFF) - offset], axis=1),
        rep=order[starts],
        first=np.minimum.reduceat(order, starts),
        count=np.diff(np.r_[starts, len(order)]),
        z_lo=np.minimum.reduceat(z, starts),
        z_hi=np.maximum.reduceat(z, starts),
    )


# Strategies --------------------------------------------------------------------------------------
def grid_centers(positions: np.ndarray, spacing: float) -> tuple[list[str], np.ndarray]:
    """Lattice points of pitch ``spacing`` whose square cell a camera stands in: ids, ``(B, 2)`` centres."""
    coarse = np.unique(np.floor(positions[:, :2] / spacing + 0.5).astype(np.int64), axis=0)
    return [lattice_id(i, j) for i, j in coarse], coarse * spacing


def path_density(cells: Cells, radius: float) -> np.ndarray:
    """(M,) int64: occupied cells within ``radius`` of each cell (itself included).

    Along paths one cell wide this peaks where paths meet: at a radius of ``n`` cells a straight
    street scores ``1 + 2n``, the corner of an L ``1 + 2n`` plus its diagonal cells, a T junction
    ``1 + 3n`` and a crossing ``1 + 4n``, each highest at its centre.
    """
    pairs = cKDTree(cells.points).query_pairs(radius * (1.0 + 1e-9), output_type="ndarray")
    return 1 + np.bincount(pairs.reshape(-1), minlength=len(cells.ij))


def path_spread(cells: Cells, radius: float) -> np.ndarray:
    """(M,) in [0, 1]: how two-dimensional the occupied cells within ``radius`` of each cell are.

    The ratio of the smaller to the larger eigenvalue of their covariance: near 0 along a street
    (straight or stepped across the lattice), 0.5 or more at a corner, a junction or in an open area.
    """
    p = cells.points
    m = len(p)
    pairs = cKDTree(p).query_pairs(radius * (1.0 + 1e-9), output_type="ndarray")
    a = np.r_[pairs[:, 0], pairs[:, 1], np.arange(m)]
    b = np.r_[pairs[:, 1], pairs[:, 0], np.arange(m)]
    d = p[b] - p[a]
    n = np.bincount(a, minlength=m).astype(np.float64)
    mx, my = (np.bincount(a, d[:, k], minlength=m) / n for k in (0, 1))
    sxx = np.bincount(a, d[:, 0] ** 2, minlength=m) / n - mx**2
    syy = np.bincount(a, d[:, 1] ** 2, minlength=m) / n - my**2
    sxy = np.bincount(a, d[:, 0] * d[:, 1], minlength=m) / n - mx * my
    half_trace = 0.5 * (sxx + syy)
    root = np.sqrt(np.maximum(0.25 * (sxx - syy) ** 2 + sxy**2, 0.0))
    big, small = half_trace + root, np.maximum(half_trace - root, 0.0)
    return np.where(big > 0.0, small / np.where(big > 0.0, big, 1.0), 0.0)


def trajectory_centers(positions: np.ndarray, cells: Cells, spacing: float) -> tuple[list[str], np.ndarray]:
    """Centres on the camera path, greedily at least ``spacing`` apart, junctions first.

    Junction cells come first (``path_spread`` of at least 0.3 at a quarter spacing), densest first
    (``path_density``: the centre of a junction before its arms), then all other cells in capture
    order; a cell becomes a centre unless a chosen centre lies closer than ``spacing``. Along
    a path visited in order this puts consecutive centres ``spacing`` apart (to within a cell), and
    every camera lies within about ``spacing`` of a centre. The centre is the cell's camera nearest
    its lattice point, so it lies on the trajectory.
    """
    junction = path_spread(cells, spacing / 4.0) >= _JUNCTION_SPREAD
    density = np.where(junction, path_density(cells, spacing / 4.0), 0)
    order = np.lexsort((cells.ij[:, 1], cells.ij[:, 0], cells.first, -density))
    points = cells.points
    limit2 = (spacing * (1.0 - 1e-9)) ** 2
    buckets: dict[tuple[int, int], list[int]] = {}
    chosen: list[int] = []
    for c in order:
        x, y = points[c]
        bx, by = int(math.floor(x / spacing)), int(math.floor(y / spacing))
        near = False
        for kx in (bx - 1, bx, bx + 1):
            for ky in (by - 1, by, by + 1):
                for other in buckets.get((kx, ky), ()):
                    ox, oy = points[other]
                    if (ox - x) ** 2 + (oy - y) ** 2 < limit2:
                        near = True
                        break
                if near:
                    break
            if near:
                break
        if not near:
            chosen.append(int(c))
            buckets.setdefault((bx, by), []).append(int(c))
    chosen_arr = np.array(sorted(chosen), dtype=np.int64)
    per_id = CELLS_PER_SPACING // ID_CELLS_PER_SPACING
    id_ij = np.floor(cells.ij[chosen_arr] / per_id + 0.5).astype(np.int64)
    return [lattice_id(i, j) for i, j in id_ij], positions[cells.rep[chosen_arr], :2]


def cluster_centers(
    positions: np.ndarray, cells: Cells, spacing: float, k: int | None, seed: int
) -> tuple[list[str], np.ndarray]:
    """k-means centroids of the camera positions (cells weighted by their frame counts).

    With ``k`` None there is one cluster per ``spacing`` grid cell that holds cameras, started at
    the mean camera position of each such cell: no randomness, so a few added frames move the
    centroids only slightly and ids stay. An explicit ``k`` starts from seeded k-means++ over the
    same grid-cell means (over the finer cells when ``k`` exceeds their number). Lloyd iterations
    follow; an empty cluster restarts at the cell that is worst served.
    """
    pts = positions[cells.rep, :2]
    w = cells.count.astype(np.float64)
    while len(pts) > _MAX_KMEANS_CELLS:  # coarsen pathological, widely scattered captures
        pts, w = _pool(pts, w, np.floor(pts / (4.0 * cells.pitch)).astype(np.int64))
    grid_pts, grid_w = _pool(pts, w, np.floor(pts / spacing + 0.5).astype(np.int64))
    if k is None:
        centroids = grid_pts
    else:
        start_pts, start_w = (grid_pts, grid_w) if k <= len(grid_pts) else (pts, w)
        centroids = _kmeans_pp(start_pts, start_w, min(k, len(start_pts)), np.random.default_rng(seed))
    k = len(centroids)
    tol2 = (1e-4 * spacing) ** 2
    for _ in range(_KMEANS_ITERATIONS):
        dist, label = cKDTree(centroids).query(pts, k=1)
        tot = np.bincount(label, w, minlength=k)
        new = np.stack([np.bincount(label, w * pts[:, d], minlength=k) for d in (0, 1)], axis=1)
        empty = tot <= 0.0
        new[~empty] /= tot[~empty, None]
        for c in np.flatnonzero(empty):
            worst = int(np.argmax(w * dist**2))
            new[c] = pts[worst]
            dist[worst] = 0.0
        moved = np.max(np.sum((new - centroids) ** 2, axis=1))
        centroids = new
        if moved <= tol2:
            break
    centroids = np.unique(centroids, axis=0)  # restarts can land two clusters on one cell
    pitch = spacing / ID_CELLS_PER_SPACING
    id_ij = np.floor(centroids / pitch + 0.5).astype(np.int64)
    order = np.lexsort((centroids[:, 1], centroids[:, 0], id_ij[:, 1], id_ij[:, 0]))
    ids: list[str] = []
    seen: dict[str, int] = {}
    for i in order:  # k-means may put two centroids in one id cell: suffix a, b, ...
        base = lattice_id(*id_ij[i])
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.append(base if n == 0 else f"{base}{chr(ord('a') + n - 1) if n <= 26 else n}")
    return ids, centroids[order]


def _pool(pts: np.ndarray, w: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted means and total weights of the points grouped by integer ``key`` rows (sorted)."""
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    tot = np.bincount(inv, w)
    return np.stack([np.bincount(inv, w * pts[:, d]) / tot for d in (0, 1)], axis=1), tot


def _kmeans_pp(pts: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability ~ weight * squared distance."""
    centroids = np.empty((k, 2))
    centroids[0] = pts[_weighted_pick(w, rng)]
    d2 = np.sum((pts - centroids[0]) ** 2, axis=1)
    for c in range(1, k):
        centroids[c] = pts[_weighted_pick(w * d2, rng)]
        d2 = np.minimum(d2, np.sum((pts - centroids[c]) ** 2, axis=1))
    return centroids


def _weighted_pick(weights: np.ndarray, rng: np.random.Generator) -> int:
    cdf = np.cumsum(weights)
    if cdf[-1] <= 0.0:
        return 0
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(weights) - 1))


# Radii and heights -------------------------------------------------------------------------------
def cluster_radii(positions: np.ndarray, centers: np.ndarray, overlap: float) -> np.ndarray:
    """Per centroid: big enough for its own cameras, and overlapping its nearest neighbour by ``overlap``."""
    _, label = cKDTree(centers).query(positions[:, :2], k=1)
    dist = np.linalg.norm(positions[:, :2] - centers[label], axis=1)
    cover = np.zeros(len(centers))
    np.maximum.at(cover, label, dist)
    radii = cover.copy()
    if len(centers) > 1:
        nn, _ = cKDTree(centers).query(centers, k=2)
        radii = np.maximum(radii, nn[:, 1] / (2.0 * (1.0 - overlap)))
    return radii


def height_ranges(
    cells: Cells, centers: np.ndarray, radii: np.ndarray, cfg: PartitionConfig, fallback: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per block ``(z_min, z_max)``: the heights of the cameras in cells within reach of the disc,
    widened by ``height_below`` / ``height_above`` radii (or ``cfg.z_range_m`` when set)."""
    b = len(centers)
    if cfg.z_range_m is not None:
        return np.full(b, cfg.z_range_m[0]), np.full(b, cfg.z_range_m[1])
    slack = cells.pitch * math.sqrt(0.5)
    near = cKDTree(cells.points).query_ball_point(centers, radii + slack)
    lo = np.array([cells.z_lo[n].min() if n else fallback[0] for n in near], dtype=np.float64)
    hi = np.array([cells.z_hi[n].max() if n else fallback[1] for n in near], dtype=np.float64)
    return lo - cfg.height_below * radii, hi + cfg.height_above * radii


# Placement ---------------------------------------------------------------------------------------
def convergence_point(positions: np.ndarray, forward: np.ndarray, *, min_in_front: float = 0.9) -> np.ndarray | None:
    """The point nearest to all optical axes when the cameras look at a common subject, else None.

    positions, forward: (N, 3) camera centres and unit viewing directions. Inward-facing captures
    (an object, a statue, a room scanned from around it) converge; a driving rig or a drone survey
    does not (the axes are near parallel, or the point lies behind many cameras).
    """
    if len(positions) < 3:
        return None
    eye = np.eye(3)
    proj = eye[None] - forward[:, :, None] * forward[:, None, :]  # (N, 3, 3) projectors off each axis
    a = proj.sum(axis=0)
    if np.linalg.cond(a) > 1e6:
        return None
    point = np.linalg.solve(a, np.einsum("nij,nj->i", proj, positions))
    ahead = np.einsum("ni,ni->n", point - positions, forward)
    if np.mean(ahead > 0) < min_in_front:
        return None
    spread = float(np.max(np.linalg.norm(positions - positions.mean(axis=0), axis=1)))
    return point if np.linalg.norm(point - positions.mean(axis=0)) <= 3.0 * max(spread, 1e-9) else None


def place_blocks(positions: np.ndarray, cfg: PartitionConfig, forward: np.ndarray | None = None) -> Regions:
    """Candidate block regions for camera centres ``(N, 3)`` by ``cfg.strategy``.

    A capture that fits in one block (every camera within one radius of the centre of their
    bounding box) gives that one block, as does ``spacing_m: auto`` (then sized to the capture;
    when the viewing directions ``forward`` (N, 3) converge on a subject, centred on it).
    """
    subject = convergence_point(positions, forward) if (cfg.auto_spacing and forward is not None) else None
    if subject is not None:
        # Centre an inward-facing capture's block on its subject, reaching out to the cameras.
        radius = 1.05 * float(np.max(np.linalg.norm(positions[:, :2] - subject[:2], axis=1)))
        z = (min(float(positions[:, 2].min()), float(subject[2])), max(float(positions[:, 2].max()), float(subject[2])))
        return _one_block("b000_000", subject[:2], radius, z, cfg)
    xy = positions[:, :2]
    center = 0.5 * (xy.min(axis=0) + xy.max(axis=0))
    extent = float(np.max(np.linalg.norm(xy - center, axis=1)))
    z_all = (float(positions[:, 2].min()), float(positions[:, 2].max()))

    if cfg.auto_spacing:
        if extent > 0.0:
            radius = 1.05 * extent
        elif cfg.far_m is not None:
            radius = cfg.far_m
        else:
            raise ValueError(
                f"cannot size a block automatically: all {len(positions)} cameras stand at one spot; "
                "set spacing_m (or far_m) in the capture's units"
            )
        return _one_block("b000_000", center, radius, z_all, cfg)

    spacing = float(cfg.spacing_m)
    radius = cfg.radius_m
    explicit_k = cfg.strategy == "clusters" and cfg.clusters is not None and cfg.clusters > 1
    if extent <= radius and not explicit_k:
        pitch = spacing if cfg.strategy == "grid" else spacing / ID_CELLS_PER_SPACING
        i, j = np.floor(center / pitch + 0.5).astype(np.int64)
        return _one_block(lattice_id(i, j), center, radius, z_all, cfg)

    cells = bin_cameras(positions, spacing / CELLS_PER_SPACING)
    if cfg.strategy == "grid":
        ids, centers = grid_centers(positions, spacing)
        radii = np.full(len(ids), radius)
    elif cfg.strategy == "trajectory":
        ids, centers = trajectory_centers(positions, cells, spacing)
        radii = np.full(len(ids), radius)
    else:
        ids, centers = cluster_centers(positions, cells, spacing, cfg.clusters, cfg.seed)
        radii = cluster_radii(positions, centers, cfg.overlap)
    z_min, z_max = height_ranges(cells, centers, radii, cfg, z_all)
    order = np.argsort(np.array(ids), kind="stable")
    return Regions(tuple(ids[i] for i in order), centers[order], radii[order], z_min[order], z_max[order])


def _one_block(block_id: str, center: np.ndarray, radius: float, z: tuple[float, float], cfg: PartitionConfig) -> Regions:
    if cfg.z_range_m is not None:
        lo, hi = cfg.z_range_m
    else:
        lo, hi = z[0] - cfg.height_below * radius, z[1] + cfg.height_above * radius
    return Regions((block_id,), center.reshape(1, 2), np.array([radius]), np.array([lo]), np.array([hi]))


__all__ = [
    "convergence_point",
    "place_blocks",
    "Regions",
    "Cells",
    "lattice_id",
    "bin_cameras",
    "grid_centers",
    "trajectory_centers",
    "cluster_centers",
    "cluster_radii",
    "height_ranges",
    "path_density",
    "path_spread",
]
