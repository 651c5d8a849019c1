"""Synthetic camera layouts (poses only) for tests, benchmarks and demos of the planner."""

from __future__ import annotations

import math

import numpy as np

from partitioning.cameras import CameraArrays


def heading_poses(positions: np.ndarray, yaw: np.ndarray, pitch: np.ndarray | float = 0.0) -> np.ndarray:
    """``(N, 4, 4)`` OpenGL camera-to-world matrices at ``positions`` ``(N, 3)``.

    The camera looks along ``yaw`` (radians from +x towards +y) tilted up by ``pitch`` (radians;
    negative looks down), with its x axis level.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n = len(positions)
    yaw = np.broadcast_to(np.asarray(yaw, dtype=np.float64), (n,))
    pitch = np.broadcast_to(np.asarray(pitch, dtype=np.float64), (n,))
    forward = np.stack([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)], axis=1)
    right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros(n)], axis=1)
    up = np.cross(right, forward)
    c2w = np.zeros((n, 4, 4))
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = up
    c2w[:, :3, 2] = -forward
    c2w[:, :3, 3] = positions
    c2w[:, 3, 3] = 1.0
    return c2w


def cameras_from_poses(
    c2w: np.ndarray,
    *,
    fov_x_deg: float = 85.0,
    width: int = 160,
    height: int = 120,
    is_train: np.ndarray | None = None,
    prefix: str = "frame",
) -> CameraArrays:
    """Cameras with one centred pinhole model of horizontal field of view ``fov_x_deg``."""
    fx = 0.5 * width / math.tan(0.5 * math.radians(fov_x_deg))
    n = len(c2w)
    cams = CameraArrays.from_poses(c2w, fx=fx, width=width, height=height, ids=tuple(f"{prefix}_{i:07d}" for i in range(n)))
    if is_train is not None:
        cams = CameraArrays(cams.ids, cams.c2w, cams.intrinsics, cams.sizes, np.asarray(is_train, bool), cams.timestamps)
    return cams


def street_grid_positions(
    n_blocks: int = 2, *, block_m: float = 60.0, street_m: float = 20.0, step_m: float = 5.0, height_m: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Camera stops along the centre lines of an ``n_blocks`` x ``n_blocks`` street grid.

    Streets run along x and y at multiples of ``block_m + street_m``, centred on the origin, and
    reach half a street past the outer ones. Returns ``(N, 3)`` positions and ``(N,)`` street
    indices (0..n_blocks for streets along x, then along y). Intersections appear once per street.
    """
    pitch = block_m + street_m
    half = 0.5 * n_blocks * pitch
    lines = np.arange(n_blocks + 1) * pitch - half
    along = np.arange(-half - 0.5 * street_m, half + 0.5 * street_m + 1e-9, step_m)
    pos, street = [], []
    for k, c in enumerate(lines):
        pos.append(np.stack([along, np.full_like(along, c), np.full_like(along, height_m)], axis=1))
        street.append(np.full(len(along), k))
    for k, c in enumerate(lines):
        pos.append(np.stack([np.full_like(along, c), along, np.full_like(along, height_m)], axis=1))
        street.append(np.full(len(along), n_blocks + 1 + k))
    return np.concatenate(pos), np.concatenate(street)


def street_grid(
    n_blocks: int = 2,
    *,
    block_m: float = 60.0,
    street_m: float = 20.0,
    step_m: float = 5.0,
    height_m: float = 2.0,
    headings: int = 4,
    fov_x_deg: float = 85.0,
    width: int = 160,
    height: int = 120,
    holdout_every: int = 0,
    max_frames: int | None = None,
) -> tuple[CameraArrays, np.ndarray]:
    """A street-level capture of a square city: at every stop, ``headings`` level views.

    Returns the cameras and each frame's street index. Every ``holdout_every``-th frame is held out
    (0: none); ``max_frames`` truncates the capture.
    """
    pos, street = street_grid_positions(n_blocks, block_m=block_m, street_m=street_m, step_m=step_m, height_m=height_m)
    yaw = np.arange(headings) * (2.0 * math.pi / headings)
    pos = np.repeat(pos, headings, axis=0)
    street = np.repeat(street, headings)
    yaws = np.tile(yaw, len(pos) // headings)
    if max_frames is not None:
        pos, street, yaws = pos[:max_frames], street[:max_frames], yaws[:max_frames]
    is_train = np.ones(len(pos), bool)
    if holdout_every > 0:
        is_train[holdout_every - 1 :: holdout_every] = False
    cams = cameras_from_poses(heading_poses(pos, yaws), fov_x_deg=fov_x_deg, width=width, height=height, is_train=is_train)
    return cams, street


def straight_line(
    n: int = 100, *, step_m: float = 2.0, yaw_deg: float = 0.0, height_m: float = 2.0, fov_x_deg: float = 85.0
) -> CameraArrays:
    """``n`` cameras along a straight line through the origin, looking along it."""
    yaw = math.radians(yaw_deg)
    t = (np.arange(n) - 0.5 * (n - 1)) * step_m
    pos = np.stack([t * math.cos(yaw), t * math.sin(yaw), np.full(n, height_m)], axis=1)
    return cameras_from_poses(heading_poses(pos, np.full(n, yaw)), fov_x_deg=fov_x_deg)


def orbit(
    n: int = 120, *, radius_m: float = 150.0, altitude_m: float = 80.0, loops: int = 1, fov_x_deg: float = 70.0
) -> CameraArrays:
    """A drone circling the origin at ``altitude_m``, looking at the ground at the centre."""
    phi = np.linspace(0.0, 2.0 * math.pi * loops, n, endpoint=False)
    pos = np.stack([radius_m * np.cos(phi), radius_m * np.sin(phi), np.full(n, altitude_m)], axis=1)
    yaw = phi + math.pi
    pitch = np.full(n, -math.atan2(altitude_m, radius_m))
    return cameras_from_poses(heading_poses(pos, yaw, pitch), fov_x_deg=fov_x_deg)


__all__ = ["heading_poses", "cameras_from_poses", "street_grid_positions", "street_grid", "straight_line", "orbit"]
