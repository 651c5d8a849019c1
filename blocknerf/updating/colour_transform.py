"""A per-image colour transform between a rendering and a photo, fitted robustly.

A new photo has an appearance the store never saw (exposure, white balance, time of day), so before
a rendering and a photo are compared, the photo's colours are mapped onto the rendering's by an
affine transform ``photo ~ [rgb, 1] @ T`` with ``T`` (4, 3): a 3x3 colour matrix and an offset,
which covers exposure, white balance and a black level. It is fitted by trimmed least squares: fit,
keep the ``keep`` fraction of pixels that fit best, refit, so that a change covering part of the
image does not bend the transform towards itself.
"""

from __future__ import annotations

import numpy as np

IDENTITY = np.vstack([np.eye(3), np.zeros((1, 3))])
"""(4, 3) the transform that changes nothing."""


def fit_colour_transform(
    render: np.ndarray, photo: np.ndarray, *, keep: float = 0.6, iterations: int = 3, ridge: float = 1e-3
) -> np.ndarray:
    """(4, 3) float64 ``T`` with ``photo ~ [render, 1] @ T``, fitted on the best-fitting pixels.

    ``render``, ``photo``: (N, 3) colours in [0, 1] of the same N pixels. ``keep``: fraction of the
    pixels the final fit uses (the others are treated as outliers: changes, occlusions). ``ridge``
    pulls the transform towards the identity, so a nearly uniform image gives a sane transform.
    """
    render = np.asarray(render, dtype=np.float64).reshape(-1, 3)
    photo = np.asarray(photo, dtype=np.float64).reshape(-1, 3)
    if render.shape != photo.shape:
        raise ValueError(f"render and photo differ in shape: {render.shape} vs {photo.shape}")
    if not 0.0 < keep <= 1.0:
        raise ValueError("keep must be in (0, 1]")
    x = np.hstack([render, np.ones((len(render), 1))])
    use = np.ones(len(render), dtype=bool)
    transform = IDENTITY.copy()
    for _ in range(max(1, iterations)):
        if use.sum() < 8:
            break
        xs, ys = x[use], photo[use]
        # Ridge towards the identity: (X'X + l n I) T = X'Y + l n I0.
        reg = ridge * len(xs) * np.eye(4)
        transform = np.linalg.solve(xs.T @ xs + reg, xs.T @ ys + reg @ IDENTITY)
        residual = np.abs(x @ transform - photo).sum(axis=1)
        n_keep = max(8, round(keep * len(residual)))
        use = np.zeros(len(residual), dtype=bool)
        use[np.argpartition(residual, min(n_keep, len(residual)) - 1)[:n_keep]] = True
    return transform


def apply_colour_transform(transform: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """``[rgb, 1] @ transform`` for (..., 3) colours; same shape, float32, not clipped."""
    rgb = np.asarray(rgb, dtype=np.float64)
    flat = rgb.reshape(-1, 3)
    out = np.hstack([flat, np.ones((len(flat), 1))]) @ transform
    return out.reshape(rgb.shape).astype(np.float32)


__all__ = ["IDENTITY", "apply_colour_transform", "fit_colour_transform"]
