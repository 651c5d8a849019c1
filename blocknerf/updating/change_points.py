"""Changed pixels lifted to world points that several new frames agree on.

A changed pixel says that something along its ray is different, not where. Where the store saw a
surface, the change is at that surface or in front of it (something new stands before it); where
the store saw nothing, anywhere up to the far limit. So every changed pixel's ray is sampled from
``near`` to just past the old surface (or ``far``), and each sample is projected into every other
new frame nearby. A frame *observes* a sample when it falls inside its image and not behind the
surface the store renders there; it *agrees* when the pixel it falls on is changed too. Samples
that enough frames agree on (``min_views``, including the frame they come from), and that most
frames observing them agree on (``min_agreement``), are the change: a visual hull of the changed
pixels, carved by the frames that look through it and see nothing new. A street capture's cameras
stand along a line, so that hull reaches far along their viewing directions; of each ray's
samples in it only those the most frames agree on are kept (the ray's depth by multi-view
agreement), which puts the points on the changed surface rather than anywhere in front of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blocknerf.updating.config import ChangeConfig
from blocknerf.updating.difference import FrameChange

DEPTH_TOLERANCE = (0.05, 0.5)
"""A sample is in front of a frame's old surface when its depth is at most ``depth * (1 + a) + b``;
rays are sampled to the same distance past the surface, so a change on it is found."""


@dataclass(frozen=True)
class ChangePoints:
    """World points where the new frames agree that something changed."""

    points: np.ndarray
    """(N, 3) float64 world positions."""
    votes: np.ndarray
    """(N,) int32 frames that see the point in a changed pixel."""
    observers: np.ndarray
    """(N,) int32 frames that observe the point at all."""
    frame: np.ndarray
    """(N,) int32 index (into the changes lifted) of the frame whose pixel the point came from."""
    pixel: np.ndarray
    """(N,) int64 flat pixel index, in that frame, the point came from."""

    def __len__(self) -> int:
        return len(self.points)

    @classmethod
    def empty(cls) -> ChangePoints:
        z = np.zeros(0, dtype=np.int32)
        return cls(np.zeros((0, 3)), z, z, z, np.zeros(0, dtype=np.int64))


def pixel_rays(change: FrameChange) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera centre (3,), unit world directions (H*W, 3) and ray-distance-per-depth (H*W,) of a
    frame's pixels at the detection resolution (pinhole; distortion is negligible at that size)."""
    k = change.intrinsics
    v, u = np.meshgrid(np.arange(k.height, dtype=np.float64), np.arange(k.width, dtype=np.float64), indexing="ij")
    cam = np.stack([(u + 0.5 - k.cx) / k.fx, -(v + 0.5 - k.cy) / k.fy, -np.ones_like(u)], axis=-1).reshape(-1, 3)
    norm = np.linalg.norm(cam, axis=1)
    dirs = (cam / norm[:, None]) @ change.c2w[:3, :3].T
    return change.c2w[:3, 3].copy(), dirs, norm


def project(change: FrameChange, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project (N, 3) world points into a frame: (N,) flat pixel index, depth along the optical
    axis, and whether the point lies in front of the camera inside the image."""
    k = change.intrinsics
    cam = (points - change.c2w[:3, 3]) @ change.c2w[:3, :3]
    z = -cam[:, 2]
    ahead = z > 1e-6
    safe = np.where(ahead, z, 1.0)
    u = np.floor(k.cx + k.fx * cam[:, 0] / safe)
    v = np.floor(k.cy - k.fy * cam[:, 1] / safe)
    inside = ahead & (u >= 0) & (u < k.width) & (v >= 0) & (v < k.height)
    index = np.where(inside, v * k.width + u, 0).astype(np.int64)
    return index, z, inside


def lift_changes(changes: Sequence[FrameChange], cfg: ChangeConfig, *, near_m: float, far_m: float) -> ChangePoints:
    """The world points the frames' changed pixels agree on (see the module docstring).

    ``near_m``, ``far_m``: the stretch of each ray searched (world units from the camera)."""
    if not changes or not any(c.n_changed for c in changes):
        return ChangePoints.empty()
    centres = np.array([c.c2w[:3, 3] for c in changes])
    flat_changed = [c.changed.reshape(-1) for c in changes]
    flat_depth = [c.depth.reshape(-1) for c in changes]
    a, b = DEPTH_TOLERANCE
    out: list[tuple[np.ndarray, ...]] = []
    for i, change in enumerate(changes):
        pixels = np.flatnonzero(flat_changed[i])
        if len(pixels) == 0:
            continue
        if len(pixels) > cfg.rays_per_frame:
            pixels = pixels[np.linspace(0, len(pixels) - 1, cfg.rays_per_frame).round().astype(np.int64)]
        origin, dirs, per_depth = pixel_rays(change)
        depth = flat_depth[i][pixels]
        t_end = np.where(np.isfinite(depth), (depth * (1.0 + a) + b) * per_depth[pixels], far_m)
        t_end = np.clip(t_end, near_m + 1e-6, far_m)
        steps = np.linspace(0.0, 1.0, cfg.samples_per_ray)
        t = near_m + (t_end - near_m)[:, None] * steps[None, :]  # (R, S)
        points = origin + dirs[pixels][:, None, :] * t[..., None]
        points = points.reshape(-1, 3)
        votes = np.ones(len(points), dtype=np.int32)  # the frame itself
        observers = np.ones(len(points), dtype=np.int32)
        # Frames farther than the search range from this camera cannot see its samples.
        nearby = np.flatnonzero(np.linalg.norm(centres - origin, axis=1) <= 2.0 * far_m)
        for j in nearby:
            if j == i:
                continue
            index, z, inside = project(changes[j], points)
            in_front = inside & (z <= flat_depth[j][index] * (1.0 + a) + b)
            observers += in_front
            votes += in_front & flat_changed[j][index]
        keep = (votes >= cfg.min_views) & (votes >= cfg.min_agreement * observers)
        ray_votes = np.where(keep, votes, 0).reshape(len(pixels), cfg.samples_per_ray)
        keep &= (ray_votes >= ray_votes.max(axis=1, keepdims=True)).reshape(-1)  # the best-agreed depth(s) of each ray
        if keep.any():
            pix = np.repeat(pixels, cfg.samples_per_ray)
            out.append((points[keep], votes[keep], observers[keep], np.full(int(keep.sum()), i, dtype=np.int32), pix[keep]))
    if not out:
        return ChangePoints.empty()
    cols = list(zip(*out))
    return ChangePoints(
        points=np.concatenate(cols[0]),
        votes=np.concatenate(cols[1]).astype(np.int32),
        observers=np.concatenate(cols[2]).astype(np.int32),
        frame=np.concatenate(cols[3]).astype(np.int32),
        pixel=np.concatenate(cols[4]).astype(np.int64),
    )


__all__ = ["ChangePoints", "lift_changes", "pixel_rays", "project"]
