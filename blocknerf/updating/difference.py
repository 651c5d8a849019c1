"""The difference between a new photo and the store's rendering of it: which pixels changed.

The store renders a new frame (any renderer: one block, the streamed composite, a baked model; it
is passed in as a callable, ``FrameRenderer``); the photo's colours are fitted to the rendering
(``colour_transform``), and a pixel is changed when the robust difference left exceeds both an
absolute threshold and a multiple of the frame's own spread of differences. A pixel the store
renders with low opacity looks into space the store never saw, and counts as changed too.

When the frame replaces a recorded frame of the same place (it supersedes it), the recorded photo
against its own rendering tells how well the store reproduces that view at all; only the excess
of the new difference over that one counts, so a place the store renders poorly is not mistaken
for a change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from blocknerf.capture.frames import Frame, Intrinsics
from blocknerf.updating.colour_transform import (
    apply_colour_transform,
    fit_colour_transform,
)
from blocknerf.updating.config import ChangeConfig


@dataclass(frozen=True)
class FrameRender:
    """A rendering of one camera: what a ``FrameRenderer`` returns."""

    rgb: np.ndarray
    """(H, W, 3) float32 colour in [0, 1]."""
    depth: np.ndarray
    """(H, W) float32 depth along the optical axis of the rendered surface (inf: none)."""
    opacity: np.ndarray
    """(H, W) float32 accumulated opacity in [0, 1] (low: space the store has not seen)."""


FrameRenderer = Callable[[Frame, Intrinsics], Sequence[FrameRender]]
"""Renders a frame's camera at the given intrinsics: one rendering, or several candidates (e.g.
the blocks around the camera); a pixel is changed only when it differs from every candidate."""


@dataclass(frozen=True)
class FrameChange:
    """What changed in one new frame, at the detection resolution."""

    frame_id: str
    c2w: np.ndarray
    """(4, 4) camera-to-world."""
    intrinsics: Intrinsics
    """The camera at the detection resolution."""
    changed: np.ndarray
    """(H, W) bool: changed pixels (a colour difference, or unseen space)."""
    unseen: np.ndarray
    """(H, W) bool: pixels the store renders with low opacity (a subset of ``changed``)."""
    depth: np.ndarray
    """(H, W) float32 depth along the optical axis of the store's surface (inf where unseen)."""
    difference: np.ndarray
    """(H, W) float32 the difference that was thresholded."""
    threshold: float
    """The frame's threshold on ``difference``."""

    @property
    def n_changed(self) -> int:
        return int(self.changed.sum())


def detection_intrinsics(k: Intrinsics, width_px: int) -> Intrinsics:
    """``k`` scaled down by an integer factor to at most ``width_px`` wide (unchanged if narrower)."""
    factor = max(1, -(-k.width // width_px))
    return k.scaled(k.width // factor, k.height // factor) if factor > 1 else k


def downsample(image: np.ndarray, k: Intrinsics) -> np.ndarray:
    """(H, W, C) image box-averaged to ``k``'s size (an integer factor of its own); float32."""
    image = np.asarray(image, dtype=np.float32)
    fy, fx = image.shape[0] // k.height, image.shape[1] // k.width
    if fy < 1 or fx < 1:
        raise ValueError(f"cannot downsample a {image.shape[1]}x{image.shape[0]} image to {k.width}x{k.height}")
    crop = image[: k.height * fy, : k.width * fx]
    return crop.reshape(k.height, fy, k.width, fx, -1).mean(axis=(1, 3))


def colour_difference(photo: np.ndarray, render: FrameRender, cfg: ChangeConfig) -> np.ndarray:
    """(H, W) float32 difference of ``photo`` (H, W, 3) from ``render`` after fitting the colour
    transform on the pixels the store has seen: mean absolute over RGB, 3x3 box-filtered."""
    seen = render.opacity >= cfg.min_opacity
    fit_on = seen if seen.sum() >= 16 else np.ones_like(seen)
    transform = fit_colour_transform(render.rgb[fit_on], photo[fit_on], keep=cfg.keep)
    predicted = np.clip(apply_colour_transform(transform, render.rgb), 0.0, 1.0)
    diff = np.abs(photo - predicted).mean(axis=-1)
    return ndimage.uniform_filter(diff, size=3, mode="nearest").astype(np.float32)


def frame_change(
    frame: Frame,
    photo: np.ndarray,
    renders: Sequence[FrameRender],
    cfg: ChangeConfig,
    *,
    reference: np.ndarray | None = None,
) -> FrameChange:
    """The changed pixels of ``frame`` (see the module docstring).

    ``photo``: (H, W, 3) float in [0, 1] at the renders' size; ``renders``: the store's candidate
    renderings of the frame; ``reference``: (H, W) the difference of the recorded frame this one
    supersedes from its own rendering, or None.
    """
    if not renders:
        raise ValueError(f"frame {frame.id}: no rendering to compare with")
    diffs = np.stack([colour_difference(photo, r, cfg) for r in renders])
    best = np.argmin(diffs, axis=0)
    diff = np.take_along_axis(diffs, best[None], axis=0)[0]
    depth = np.take_along_axis(np.stack([r.depth for r in renders]), best[None], axis=0)[0].astype(np.float32)
    opacity = np.max(np.stack([r.opacity for r in renders]), axis=0)
    if reference is not None:
        diff = np.maximum(diff - reference, 0.0).astype(np.float32)
    unseen = opacity < cfg.min_opacity
    seen_diff = diff[~unseen]
    if seen_diff.size:
        median = float(np.median(seen_diff))
        sigma = 1.4826 * float(np.median(np.abs(seen_diff - median)))
        threshold = max(cfg.threshold, median + cfg.sigmas * sigma)
    else:
        threshold = cfg.threshold
    changed = (diff > threshold) & ~unseen
    # A lone pixel is noise: a change worth a retrain covers at least a 2x2 patch.
    changed = ndimage.binary_opening(changed, structure=np.ones((2, 2), dtype=bool)) | unseen
    depth = np.where(unseen | ~np.isfinite(depth), np.inf, depth).astype(np.float32)
    h, w = changed.shape
    return FrameChange(
        frame_id=frame.id,
        c2w=np.asarray(frame.c2w, dtype=np.float64),
        intrinsics=_sized(frame.intrinsics, w, h),
        changed=changed,
        unseen=unseen,
        depth=depth,
        difference=diff.astype(np.float32),
        threshold=float(threshold),
    )


def _sized(k: Intrinsics, width: int, height: int) -> Intrinsics:
    return k if (k.width, k.height) == (width, height) else k.scaled(width, height)


__all__ = [
    "FrameChange",
    "FrameRender",
    "FrameRenderer",
    "colour_difference",
    "detection_intrinsics",
    "downsample",
    "frame_change",
]
