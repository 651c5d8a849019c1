"""A vectorised ray caster for the analytic city (numpy, float32).

All rays of a view start at the camera centre. ``cast`` finds, for every ray, the nearest of: the
ground plane z = 0, a box (building or prop), or nothing (sky). Boxes are visited by cluster, front to
back, and each cluster's boxes are tested only against the rays still able to hit something there
(ray/box slab tests on compacted index sets), with per-chunk frustum culling of clusters. The result
is exact: culling never drops a box that a ray could hit first.

``render_city`` renders a view of a city; ``render_view`` (of its compiled scene) casts a centre ray per pixel, supersamples only the pixels at surface boundaries
and shades flat regions once per pixel with analytically filtered textures (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from blocknerf.synth.materials import shade
from blocknerf.synth.scene import Scene, compile_scene

if TYPE_CHECKING:
    from blocknerf.capture.frames import Intrinsics
    from blocknerf.synth.city import City

SURF_SKY, SURF_GROUND, SURF_BOX = 0, 1, 2
_TINY = np.float32(1e-9)
_T_MIN = np.float32(1e-4)
_MISS = np.float32(1e30)
CHUNK_RAYS = 1 << 17
"""Rays cast at once (memory: about 100 bytes a ray)."""


@dataclass(frozen=True, eq=False)
class Hits:
    """Where rays end: the nearest surface along each."""

    t: np.ndarray
    """(N,) float32 distance along the unit ray; +inf for sky."""
    surface: np.ndarray
    """(N,) int8 SURF_SKY, SURF_GROUND or SURF_BOX."""
    box: np.ndarray
    """(N,) int32 index of the box hit, -1 otherwise."""
    face: np.ndarray
    """(N,) int8 face of the box hit: 2 * axis + (1 if its normal points along +axis else 0); -1
    when no box was hit."""

    def take(self, idx: np.ndarray) -> Hits:
        return Hits(self.t[idx], self.surface[idx], self.box[idx], self.face[idx])

    def key(self) -> np.ndarray:
        """(N,) int64 id of the flat surface each ray ends on (sky 0, ground 1, box faces 2...)."""
        return np.where(self.surface == SURF_BOX, 2 + 6 * self.box.astype(np.int64) + self.face, self.surface)


def cast(scene: Scene, origin: np.ndarray, dirs: np.ndarray, *, frustum: np.ndarray | None = None) -> Hits:
    """Cast (N, 3) float32 unit rays from the point ``origin`` (3,).

    ``frustum`` is an optional (P, 3) array of inward plane normals through ``origin`` that bound
    every ray (used to skip clusters entirely outside the bundle).
    """
    o = np.asarray(origin, dtype=np.float32)
    n = len(dirs)
    # Inverse direction per axis, as separate contiguous arrays (reductions over a length-3 axis
    # are slow in numpy); zero components become tiny so that slab distances stay ordered.
    inv = []
    for a in range(3):
        c = np.ascontiguousarray(dirs[:, a], dtype=np.float32)
        c = np.where(np.abs(c) < _TINY, np.where(c < 0, -_TINY, _TINY), c)
        inv.append((np.float32(1.0) / c).astype(np.float32))
    t_best = np.full(n, np.inf, dtype=np.float32)
    surface = np.zeros(n, dtype=np.int8)
    box = np.full(n, -1, dtype=np.int32)

    if o[2] > 0.0:
        down = np.flatnonzero(dirs[:, 2] < -_TINY)
        t_best[down] = -o[2] * inv[2][down]
        surface[down] = SURF_GROUND

    if len(scene.clusters) == 0:
        return Hits(t_best, surface, box, np.full(n, -1, dtype=np.int8))

    # No ray can hit a box beyond where it leaves the bounding box of all boxes (or above them).
    t_near, t_far = _slab(o, inv, scene.bounds_lo, scene.bounds_hi)
    t_cut = np.where((t_near <= t_far) & (t_far > 0.0), np.minimum(t_best, t_far), np.float32(0.0))

    dist = _box_distance(o, scene.cluster_lo, scene.cluster_hi)
    visible = np.ones(len(dist), dtype=bool) if frustum is None else _in_frustum(o, scene, frustum)
    order = np.flatnonzero(visible)
    order = order[np.argsort(dist[order], kind="stable")]

    active = np.flatnonzero(t_cut > 0.0)
    for c in order:
        # (Index arrays + gathers throughout: boolean-mask indexing is several times slower.)
        active = active[np.flatnonzero(t_cut[active] > dist[c])]
        if active.size == 0:
            break
        cluster = scene.clusters[c]
        inv_a = [x[active] for x in inv]
        tn, tf = _slab(o, inv_a, cluster.lo, cluster.hi)
        cand = np.flatnonzero((tn <= tf) & (tf > 0.0) & (tn < t_cut[active]))
        if cand.size == 0:
            continue
        sub = active[cand]
        # (K, M) slab tests of the cluster's K boxes against the M candidate rays: rays along the
        # last axis (numpy is fast over long rows), misses pushed to MISS, argmin as a running min.
        inv_s = [x[cand][None, :] for x in inv_a]
        tn_k, tf_k = _slab(o, inv_s, cluster.box_lo[:, None, :], cluster.box_hi[:, None, :])
        miss = (tn_k > tf_k) | (tn_k <= _T_MIN)
        t_k = tn_k + miss.astype(np.float32) * _MISS
        t_hit = t_k[0].copy()
        k = np.zeros(len(sub), dtype=np.int32)
        for r in range(1, len(t_k)):
            k += (r - k) * (t_k[r] < t_hit)
            np.minimum(t_hit, t_k[r], out=t_hit)
        better = np.flatnonzero((t_hit < t_best[sub]) & (t_hit < _MISS))
        if better.size == 0:
            continue
        winners = sub[better]
        t_win = t_hit[better]
        t_best[winners] = t_win
        t_cut[winners] = np.minimum(t_cut[winners], t_win)
        surface[winners] = SURF_BOX
        box[winners] = cluster.members[k[better]]
    return Hits(t_best, surface, box, _faces(scene, o, dirs, inv, surface, box))


def _faces(
    scene: Scene, o: np.ndarray, dirs: np.ndarray, inv: list[np.ndarray], surface: np.ndarray, box: np.ndarray
) -> np.ndarray:
    """Which face of its box each box-hitting ray entered: the slab it entered last."""
    face = np.full(len(surface), -1, dtype=np.int8)
    hit = np.flatnonzero(surface == SURF_BOX)
    if hit.size:
        b = box[hit]
        near = []
        for a in range(3):
            inv_a = inv[a][hit]
            near.append(np.minimum((scene.box_lo[b, a] - o[a]) * inv_a, (scene.box_hi[b, a] - o[a]) * inv_a))
        axis = np.where(near[0] >= near[1], np.where(near[0] >= near[2], 0, 2), np.where(near[1] >= near[2], 1, 2))
        face[hit] = 2 * axis + (dirs[hit, axis] < 0.0)
    return face


def _slab(o: np.ndarray, inv: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit distances through boxes ``lo``/``hi`` ((3,) for one box, (K, 1, 3) for K) of
    rays with inverse direction components ``inv`` (three arrays, (M,) or (1, M))."""
    t_near = t_far = None
    for a in range(3):
        t0 = (lo[..., a] - o[a]) * inv[a]
        t1 = (hi[..., a] - o[a]) * inv[a]
        near, far = np.minimum(t0, t1), np.maximum(t0, t1)
        t_near = near if t_near is None else np.maximum(t_near, near)
        t_far = far if t_far is None else np.minimum(t_far, far)
    return t_near, t_far


def _box_distance(o: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(C,) Euclidean distance from the point ``o`` to each box (0 inside)."""
    gap = np.maximum(np.maximum(lo - o, o - hi), 0.0)
    return np.sqrt((gap * gap).sum(axis=1)).astype(np.float32)


def _in_frustum(o: np.ndarray, scene: Scene, normals: np.ndarray) -> np.ndarray:
    """(C,) False for clusters whose bounding box lies wholly outside one frustum plane."""
    lo, hi = scene.cluster_lo - o, scene.cluster_hi - o
    # The box corner furthest along each plane normal: if even that is behind the plane, cull.
    far = np.where(normals[None, :, :] > 0.0, hi[:, None, :], lo[:, None, :])
    return ((far * normals[None, :, :]).sum(axis=2) >= -1e-3).all(axis=1)


def pixel_rays(c2w: np.ndarray, intrinsics: Intrinsics, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit world directions (N, 3) float32 through image points (u, v) (pixel units, (0, 0) the
    top-left corner of the image, pixel centres at +0.5), and ``1 / |d_cam|`` per ray: the cosine to
    the optical axis, which turns distance along a ray into depth."""
    k = intrinsics
    x = ((np.asarray(u, dtype=np.float64) - k.cx) / k.fx).astype(np.float32)
    y = (-(np.asarray(v, dtype=np.float64) - k.cy) / k.fy).astype(np.float32)
    r = np.asarray(c2w, dtype=np.float64)[:3, :3].astype(np.float32)
    inv_norm = np.float32(1.0) / np.sqrt(x * x + y * y + np.float32(1.0))
    # d_cam = (x, y, -1): world direction = x * right + y * up - back (no BLAS: exact and threadless).
    world = x[:, None] * r[:, 0] + y[:, None] * r[:, 1] - r[:, 2]
    world *= inv_norm[:, None]
    return world, inv_norm


def centre_rays(c2w: np.ndarray, intrinsics: Intrinsics, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """``pixel_rays`` through the pixel centres of ``rows``, row-major, (R * W, 3)."""
    k = intrinsics
    v = np.repeat(np.arange(rows.start, rows.stop, dtype=np.float64) + 0.5, k.width)
    u = np.tile(np.arange(k.width, dtype=np.float64) + 0.5, rows.stop - rows.start)
    return pixel_rays(c2w, k, u, v)


def frustum_normals(c2w: np.ndarray, intrinsics: Intrinsics, rows: slice) -> np.ndarray:
    """(4, 3) inward normals of the planes through the camera centre that bound the rows' rays."""
    k = intrinsics
    u = np.array([0.0, k.width, k.width, 0.0])
    v = np.array([rows.start, rows.start, rows.stop, rows.stop], dtype=np.float64)
    cam = np.stack([(u - k.cx) / k.fx, -(v - k.cy) / k.fy, -np.ones(4)], axis=1)
    r = np.asarray(c2w, dtype=np.float64)[:3, :3]
    world = cam[:, 0:1] * r[:, 0] + cam[:, 1:2] * r[:, 1] + cam[:, 2:3] * r[:, 2]
    normals = np.cross(world, np.roll(world, -1, axis=0))
    inside = world.mean(axis=0)
    normals *= np.sign((normals * inside).sum(axis=1))[:, None]
    return normals.astype(np.float32)


def edge_pixels(key: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose centre ray ends on another surface than one of its 8 neighbours'.

    Any straight surface boundary that crosses a pixel separates its centre from some neighbour's
    centre, so these are the pixels that need subpixel samples.
    """
    h, w = key.shape
    padded = np.pad(key, 1, mode="edge")
    edge = np.zeros(key.shape, dtype=bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                edge |= padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] != key
    return edge


def render_view(scene: Scene, c2w: np.ndarray, intrinsics: Intrinsics, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Render a pinhole view: (H, W, 3) float32 rgb and (H, W) float32 depth.

    Anti-aliasing: every pixel casts its centre ray. Where it and its 8 neighbours' centre rays all
    end on the same flat face (a box face, the ground or the sky), the pixel's colour is its centre
    sample with textures box-filtered over the whole pixel footprint -- for a flat face that is the
    average that subpixel samples would give, at a fraction of the cost. Every other pixel
    (silhouettes, creases, the horizon) is the mean of ``ss x ss`` stratified subpixel samples, each
    filtered over its own footprint. Depth is that of the centre ray.
    """
    k = intrinsics
    if k.has_distortion:
        raise ValueError("the synthetic city renders undistorted pinhole cameras only")
    if np.asarray(c2w).shape != (4, 4):
        raise ValueError(f"c2w must be 4x4, got shape {np.asarray(c2w).shape}")
    h, w = k.height, k.width
    origin = np.asarray(c2w, dtype=np.float64)[:3, 3]
    o32 = origin.astype(np.float32)
    # Angular size of a pixel at the image centre; off-axis it shrinks roughly as cos^1.5.
    pixel_rad = np.float32(1.0 / np.sqrt(k.fx * k.fy))

    # Pass 1: the centre ray of every pixel.
    dirs = np.empty((h * w, 3), dtype=np.float32)
    cos = np.empty(h * w, dtype=np.float32)
    parts = []
    rows_per_chunk = max(1, CHUNK_RAYS // w)
    for r0 in range(0, h, rows_per_chunk):
        rows = slice(r0, min(h, r0 + rows_per_chunk))
        pix = slice(rows.start * w, rows.stop * w)
        dirs[pix], cos[pix] = centre_rays(c2w, k, rows)
        parts.append(cast(scene, origin, dirs[pix], frustum=frustum_normals(c2w, k, rows)))
    centre = Hits(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("t", "surface", "box", "face")))
    depth = (centre.t * cos).reshape(h, w)

    # Pass 2: shade the pixels inside flat regions from their centre ray.
    rgb = np.empty((h * w, 3), dtype=np.float32)
    edge = edge_pixels(centre.key().reshape(h, w)).reshape(-1) if ss > 1 else np.zeros(h * w, dtype=bool)
    flat = np.flatnonzero(~edge)
    for i in range(0, flat.size, CHUNK_RAYS):
        idx = flat[i : i + CHUNK_RAYS]
        rgb[idx] = shade(scene, o32, dirs[idx], centre.take(idx), pixel_rad * cos[idx] ** 1.5)

    # Pass 3: supersample the pixels at edges.
    edges = np.flatnonzero(edge)
    n = ss * ss
    sub = (np.arange(ss, dtype=np.float64) + 0.5) / ss
    per_chunk = max(1, CHUNK_RAYS // n)
    for i in range(0, edges.size, per_chunk):
        idx = edges[i : i + per_chunk]
        r, c = np.divmod(idx, w)
        v = (r[:, None, None] + sub[None, :, None] + np.zeros((1, 1, ss))).reshape(-1)
        u = (c[:, None, None] + sub[None, None, :] + np.zeros((1, ss, 1))).reshape(-1)
        sdirs, scos = pixel_rays(c2w, k, u, v)
        rows = slice(int(r.min()), int(r.max()) + 1)
        hits = cast(scene, origin, sdirs, frustum=frustum_normals(c2w, k, rows))
        samples = shade(scene, o32, sdirs, hits, (pixel_rad / ss) * scos**1.5)
        rgb[idx] = samples.reshape(idx.size, n, 3).mean(axis=1)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return rgb.reshape(h, w, 3), depth


__all__ = [
    "CHUNK_RAYS", "Hits", "SURF_BOX", "SURF_GROUND", "SURF_SKY", "cast", "centre_rays", "edge_pixels", "pixel_rays",
    "render_view",
]


def render_city(
    city: City, c2w: np.ndarray, intrinsics: Intrinsics, *, supersample: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Render one pinhole view of ``city`` with neutral appearance.

    ``c2w`` is a (4, 4) camera-to-world matrix (OpenGL convention). Returns ``rgb`` (H, W, 3)
    float32 in [0, 1], each pixel the average of the scene over its area (``supersample**2``
    stratified rays at edges, analytic texture filtering elsewhere; default: the config's
    ``supersample``), and ``depth`` (H, W) float32: distance along the optical axis of the
    ray through each pixel centre, +inf where it sees sky. Deterministic: the same inputs give
    bit-identical outputs. The city's compiled scene is cached (``scene.compile_scene``).
    """
    ss = city.config.supersample if supersample is None else int(supersample)
    if ss < 1:
        raise ValueError(f"supersample must be >= 1, got {ss}")
    return render_view(compile_scene(city), np.asarray(c2w, dtype=np.float64), intrinsics, ss)
