"""Sampled camera rays and the ray/region test that assigns frames to blocks.

A block's region is a vertical cylinder (a ground-plane disc between two heights). A ray from a
camera *crosses* a region when the segment from the camera centre to ``far`` along the ray meets the
cylinder (touching counts). Rays that start inside the region always cross it.

Regions are tested grown by ``REGION_SLACK`` (relative: 0.08 mm on an 80 m disc), so that a camera
exactly on a boundary, which is common (a cluster's neighbour centroid, a street corner at exactly
one radius), counts as inside in every code path instead of flipping with rounding.
"""

from __future__ import annotations

import numpy as np

from partitioning.cameras import CameraArrays

# Roberts' R2 sequence: the plastic number gives a 2-D low-discrepancy pattern for any ray count.
_PLASTIC = 1.324717957244746
_R2_STEP = np.array([1.0 / _PLASTIC, 1.0 / _PLASTIC**2])
# Rays with less horizontal extent than this are treated as pointing along +x by a hair, which keeps
# the disc test exact for vertical rays without a special case (see ``crosses_cylinder``).
_MIN_HORIZONTAL = 1e-6
_MIN_VERTICAL = 1e-12
REGION_SLACK = 1e-6
"""Relative growth of every region in the inside and crossing tests."""


def ray_pattern(n: int) -> np.ndarray:
    """``(n, 2)`` float64 image positions in [0, 1)^2, the first at the image centre.

    >>> ray_pattern(2).round(4).tolist()
    [[0.5, 0.5], [0.2549, 0.0698]]
    """
    k = np.arange(n, dtype=np.float64)[:, None]
    return (0.5 + k * _R2_STEP) % 1.0


def ray_directions(
    c2w: np.ndarray, intrinsics: np.ndarray, sizes: np.ndarray, pattern: np.ndarray
) -> np.ndarray:
    """Unit world directions ``(N, K, 3)`` float64 of the rays through ``pattern`` ``(K, 2)``.

    ``c2w`` ``(N, 4, 4)`` is OpenGL-style (x right, y up, looking down -z); pixel rows grow downwards,
    so image ``v`` maps to camera ``-y``.
    """
    w = sizes[:, 0:1].astype(np.float64)
    h = sizes[:, 1:2].astype(np.float64)
    fx, fy, cx, cy = (intrinsics[:, i : i + 1] for i in range(4))
    x = (pattern[None, :, 0] * w - cx) / fx
    y = -(pattern[None, :, 1] * h - cy) / fy
    inv_len = 1.0 / np.sqrt(x * x + y * y + 1.0)
    rot = c2w[:, None, :3, :3]
    # R @ (x, y, -1) / |.|, written out: much faster than einsum for many 3x3 rotations.
    return (rot[..., 0] * (x * inv_len)[..., None] + rot[..., 1] * (y * inv_len)[..., None]) - rot[..., 2] * inv_len[..., None]


def frame_rays(cameras: CameraArrays, rays_per_frame: int) -> np.ndarray:
    """Unit world directions ``(N, rays_per_frame, 3)`` of each frame's sampled rays."""
    return ray_directions(cameras.c2w, cameras.intrinsics, cameras.sizes, ray_pattern(rays_per_frame))


def crosses_cylinder(
    origins: np.ndarray,
    dirs: np.ndarray,
    far: float | np.ndarray,
    center_xy: np.ndarray,
    radius: float | np.ndarray,
    z_min: float | np.ndarray,
    z_max: float | np.ndarray,
) -> np.ndarray:
    """Whether each segment ``origin + t * dir``, ``0 <= t <= far``, meets the cylinder.

    All arguments broadcast: ``origins``/``dirs`` ``(..., 3)`` (dirs of unit length), ``center_xy``
    ``(..., 2)``, the rest ``(...)``. Returns ``(...)`` bool.
    """
    o = np.asarray(origins, dtype=np.float64)
    d = np.asarray(dirs, dtype=np.float64)
    c = np.asarray(center_xy, dtype=np.float64)
    dx, dy, dz = stable_directions(d[..., 0], d[..., 1], d[..., 2])
    px = o[..., 0] - c[..., 0]
    py = o[..., 1] - c[..., 1]
    c_term, lo_z, hi_z = region_terms(px, py, radius, np.asarray(z_min) - o[..., 2], np.asarray(z_max) - o[..., 2])
    return crosses_prepared(px, py, c_term, lo_z, hi_z, dx, dy, dx * dx + dy * dy, 1.0 / dz, np.asarray(far, dtype=np.float64))


def region_terms(
    px: np.ndarray, py: np.ndarray, radius: np.ndarray | float, lo_z: np.ndarray, hi_z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(px^2 + py^2 - r^2, lo_z, hi_z)`` for a point relative to a region, grown by ``REGION_SLACK``.

    ``px, py``: the point minus the disc centre; ``lo_z, hi_z``: the region's heights minus the
    point's. The point is inside when the first term is <= 0 and ``lo_z <= 0 <= hi_z``.
    """
    r = np.asarray(radius, dtype=np.float64) * (1.0 + REGION_SLACK)
    grow = REGION_SLACK * (np.asarray(hi_z) - np.asarray(lo_z))
    return px * px + py * py - r * r, lo_z - grow, hi_z + grow


def stable_directions(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, ...]:
    """Directions nudged so that the disc and slab formulas need no special cases.

    A vertical ray gets a horizontal component of 1e-6 along +x: its infinite line then meets the
    disc exactly when the origin is inside it, and ``t`` at the crossings is ~1e6 times the
    geometry, far beyond any ``far``. A horizontal ray gets ``dz`` = 1e-12 so that ``1 / dz`` is
    finite and the slab interval is all of ``t`` (origin inside the height range) or none of it.
    """
    vertical = dx * dx + dy * dy < _MIN_HORIZONTAL**2
    dx = np.where(vertical, _MIN_HORIZONTAL, dx)
    dy = np.where(vertical, 0.0, dy)
    dz = np.where(np.abs(dz) < _MIN_VERTICAL, _MIN_VERTICAL, dz)
    return dx, dy, dz


def crosses_prepared(
    px: np.ndarray,
    py: np.ndarray,
    c: np.ndarray,
    lo_z: np.ndarray,
    hi_z: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    a: np.ndarray,
    inv_dz: np.ndarray,
    far: np.ndarray | float,
) -> np.ndarray:
    """The segment/cylinder test on prepared, broadcastable terms (any float dtype).

    ``px, py``: origin minus disc centre; ``c = px^2 + py^2 - r^2``; ``lo_z, hi_z``: the region's
    heights minus the origin's; ``dx, dy``: horizontal direction; ``a = dx^2 + dy^2`` (> 0);
    ``inv_dz = 1 / dz``. The disc gives ``t`` in ``[(-b - sqrt(D)) / a, (-b + sqrt(D)) / a]`` with
    ``b = p . d`` and ``D = b^2 - a c``; the heights give ``t`` between ``lo_z / dz`` and
    ``hi_z / dz``; the segment gives ``[0, far]``. The ray crosses when the three intervals meet.
    """
    b = px * dx + py * dy
    disc = b * b - a * c
    hit = disc >= 0.0
    root = np.sqrt(np.maximum(disc, 0.0))
    inv_a = 1.0 / a
    t_in = -(b + root) * inv_a
    t_out = (root - b) * inv_a
    s0 = lo_z * inv_dz
    s1 = hi_z * inv_dz
    lo = np.maximum(np.maximum(t_in, np.minimum(s0, s1)), 0.0)
    hi = np.minimum(np.minimum(t_out, np.maximum(s0, s1)), far)
    return hit & (lo <= hi)


__all__ = [
    "ray_pattern",
    "ray_directions",
    "frame_rays",
    "crosses_cylinder",
    "crosses_prepared",
    "stable_directions",
    "region_terms",
    "REGION_SLACK",
]
