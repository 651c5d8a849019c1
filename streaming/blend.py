"""Blend weights of the blocks that render a view: inverse distance, range taper, visibility.

For candidate blocks at horizontal distances ``d_i`` from the camera, with ranges
``reach_i = range_factor * radius_i``:

1. inverse-distance weights ``u_i = d_i^-p`` (Block-NeRF), computed as ``(d_min / d_i)^p`` so a
   camera at a block's centre gives that block weight 1 and the others 0 without overflow;
2. times a range taper ``s(d_i / reach_i)``: 1 inside ``1 - range_taper`` of the range, falling
   smoothly (smoothstep) to 0 at its edge, so a block entering or leaving the range starts or ends
   at weight 0;
3. at most ``max_blocks`` blocks: when there are more, the ``(k+1)``-th largest weight is
   subtracted from the ``k`` largest (and the rest dropped), so a block leaving the top ``k`` does
   so at weight 0;
4. times a visibility factor: 0 below the threshold, rising linearly to 1 over ``visibility_ramp``
   above it (a hard cut when the ramp is 0);
5. normalised to sum to 1. When nothing is left, one block is kept: among blocks with a
   geometric weight the most visible, otherwise the nearest.

Each step is continuous in the camera position (given continuous visibility), so the blend
changes smoothly as the camera moves and a switch between blocks makes no visible pop.
"""

from __future__ import annotations

import numpy as np

_EPS_M = 1e-6


def range_taper(x: np.ndarray, taper: float) -> np.ndarray:
    """(B,) distance as a share of range ``x = d / reach`` -> (B,) factor in [0, 1]: 1 for
    ``x <= 1 - taper``, 0 for ``x >= 1``, a smoothstep in between (a step at 1 for ``taper = 0``)."""
    x = np.asarray(x, dtype=np.float64)
    if taper <= 1e-9:  # a taper this thin is a step (and dividing by it would overflow)
        return (x <= 1.0).astype(np.float64)
    t = np.clip((1.0 - x) / taper, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def inverse_distance(distances_m: np.ndarray, power: float) -> np.ndarray:
    """(B,) distances -> (B,) weights proportional to ``d^-power``, scaled so the nearest is 1."""
    d = np.maximum(np.asarray(distances_m, dtype=np.float64), _EPS_M)
    if d.size == 0:
        return d
    return (d.min() / d) ** power


def keep_top(weights: np.ndarray, k: int) -> np.ndarray:
    """(B,) weights -> the ``k`` largest minus the ``(k+1)``-th largest (others 0), so that
    membership of the top ``k`` changes only where the weight is 0."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size <= k:
        return w.copy()
    threshold = np.sort(w)[::-1][k]
    return np.maximum(w - threshold, 0.0)


def geometric_weights(
    distances_m: np.ndarray,
    radii_m: np.ndarray,
    *,
    power: float,
    range_factor: float,
    taper: float,
    max_blocks: int,
) -> np.ndarray:
    """(B,) unnormalised, non-negative weights of candidate blocks from position alone (steps 1-3)."""
    d = np.asarray(distances_m, dtype=np.float64)
    reach = range_factor * np.asarray(radii_m, dtype=np.float64)
    raw = inverse_distance(d, power) * range_taper(d / reach, taper)
    return keep_top(raw, max_blocks)


def visibility_factors(visibility: np.ndarray, *, threshold: float, ramp: float) -> np.ndarray:
    """(B,) mean predicted visibility -> (B,) factor in [0, 1] (step 4)."""
    v = np.asarray(visibility, dtype=np.float64)
    if threshold <= 0.0:
        return np.ones_like(v)
    if ramp <= 0.0:
        return (v >= threshold).astype(np.float64)
    return np.clip((v - threshold) / ramp, 0.0, 1.0)


def normalise(
    geometric: np.ndarray, factors: np.ndarray | None = None, visibility: np.ndarray | None = None,
    distances_m: np.ndarray | None = None,
) -> np.ndarray:
    """Combine (B,) geometric weights with (B,) visibility factors and normalise to sum to 1,
    keeping one block when nothing is left (step 5)."""
    g = np.asarray(geometric, dtype=np.float64)
    if g.size == 0:
        return g
    w = g * (1.0 if factors is None else np.asarray(factors, dtype=np.float64))
    total = w.sum()
    if total > 0.0 and np.isfinite(total):
        return w / total
    out = np.zeros_like(g)
    if g.sum() > 0.0:
        # Every block with a geometric weight failed the visibility test: keep the most visible.
        vis = np.zeros_like(g) if visibility is None else np.asarray(visibility, dtype=np.float64)
        score = np.where(g > 0.0, vis + 1e-9 * g / g.max(), -np.inf)
        out[int(np.argmax(score))] = 1.0
    else:
        d = np.arange(g.size, dtype=np.float64) if distances_m is None else np.asarray(distances_m, dtype=np.float64)
        out[int(np.argmin(d))] = 1.0
    return out


def blend_weights(
    distances_m: np.ndarray,
    radii_m: np.ndarray,
    *,
    power: float = 4.0,
    range_factor: float = 1.0,
    taper: float = 0.3,
    max_blocks: int = 3,
    visibility: np.ndarray | None = None,
    threshold: float = 0.1,
    ramp: float = 0.1,
) -> np.ndarray:
    """(B,) blend weights (non-negative, summing to 1) of candidate blocks at ``distances_m`` with
    ``radii_m``; ``visibility`` (B,) their mean predicted visibility, or None to skip the test."""
    g = geometric_weights(distances_m, radii_m, power=power, range_factor=range_factor, taper=taper, max_blocks=max_blocks)
    factors = None if visibility is None else visibility_factors(visibility, threshold=threshold, ramp=ramp)
    return normalise(g, factors, visibility, distances_m)


__all__ = [
    "blend_weights",
    "geometric_weights",
    "inverse_distance",
    "keep_top",
    "normalise",
    "range_taper",
    "visibility_factors",
]
