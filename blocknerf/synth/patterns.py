"""Box-filtered procedural patterns: the anti-aliasing half of the synthetic city's texturing.

Every texture of the city is built from steps and rows of pulses in a surface coordinate. Instead of
point-sampling them (which aliases as soon as a pattern is finer than a subpixel), each is averaged
exactly over a box of width ``w`` around the sample -- the subpixel's footprint on the surface --
through the pattern's antiderivative (Apodaca and Gritz, "Advanced RenderMan", ch. 11). Together with
the per-pixel supersampling this makes a pixel the average of the scene over its area, which is what
a NeRF is trained to reproduce. All functions broadcast over numpy arrays.
"""

from __future__ import annotations

import numpy as np

MIN_FILTER_M = 1e-3
"""Smallest filter width: below it a box filter equals point sampling to float precision."""


def _pulse_antiderivative(s: np.ndarray, width: np.ndarray | float, period: np.ndarray | float) -> np.ndarray:
    """Antiderivative of the indicator of ``[k * period, k * period + width)`` for all integers k."""
    k = np.floor(s / period)
    return k * width + np.minimum(s - k * period, width)


def pulses(
    x: np.ndarray,
    w: np.ndarray,
    *,
    start: np.ndarray | float,
    width: np.ndarray | float,
    period: np.ndarray | float,
    count: np.ndarray | float = np.inf,
) -> np.ndarray:
    """Box-filtered row of ``count`` pulses ``[start + k * period, start + k * period + width)``.

    ``w`` is the filter width at each sample; ``count=inf`` continues the row without end in both
    directions (finite rows start at k = 0). Returns coverage in [0, 1].
    """
    w = np.maximum(w, MIN_FILTER_M)
    lo = x - 0.5 * w - start
    hi = x + 0.5 * w - start
    if not np.all(np.isinf(count)):
        end = (np.asarray(count) - 1.0) * period + width
        lo = np.clip(lo, 0.0, end)
        hi = np.clip(hi, 0.0, end)
    cover = (_pulse_antiderivative(hi, width, period) - _pulse_antiderivative(lo, width, period)) / w
    return np.clip(cover, 0.0, 1.0)


def band(x: np.ndarray, w: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
    """Box-filtered indicator of the interval ``[lo, hi)``."""
    w = np.maximum(w, MIN_FILTER_M)
    a = np.clip(x - 0.5 * w, lo, hi)
    b = np.clip(x + 0.5 * w, lo, hi)
    return (b - a) / w


def step(x: np.ndarray, w: np.ndarray, edge: np.ndarray | float) -> np.ndarray:
    """Box-filtered indicator of ``x >= edge``."""
    w = np.maximum(w, MIN_FILTER_M)
    return np.clip((x - edge) / w + 0.5, 0.0, 1.0)


def checker(
    x: np.ndarray, wx: np.ndarray, y: np.ndarray, wy: np.ndarray, size: float
) -> np.ndarray:
    """Box-filtered checkerboard of ``size`` squares: 1 on the 'white' squares, 0 on the others.

    The filter is separable, so the filtered checker is built from two filtered square waves.
    """
    sx = 2.0 * pulses(x, wx, start=0.0, width=size, period=2.0 * size) - 1.0
    sy = 2.0 * pulses(y, wy, start=0.0, width=size, period=2.0 * size) - 1.0
    return 0.5 + 0.5 * sx * sy


def smooth_variation(x: np.ndarray, y: np.ndarray, salt: float = 0.0) -> np.ndarray:
    """A smooth, band-limited field in about [-1, 1] with features of 4-25 m (no aliasing at any
    distance a street camera sees): weathering of asphalt, grass and paving."""
    v = (
        np.sin(0.27 * x + 0.11 * y + 1.3 + salt)
        + 0.7 * np.sin(-0.13 * x + 0.41 * y + 0.4 + 2.0 * salt)
        + 0.5 * np.sin(0.53 * x - 0.29 * y + 2.1 + 3.0 * salt)
        + 0.35 * np.sin(0.19 * x + 0.83 * y + 5.2 + 5.0 * salt)
    )
    return v * (1.0 / 2.55)


def hash01(*keys: np.ndarray) -> np.ndarray:
    """Deterministic integer hash of integer arrays to floats in [0, 1) (per-window variation)."""
    h = np.uint64(0x9E3779B97F4A7C15)
    primes = (0x85EBCA77C2B2AE63, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5)
    acc = np.zeros(np.broadcast(*keys).shape, dtype=np.uint64) + h
    for i, k in enumerate(keys):
        acc = acc ^ (np.asarray(k).astype(np.int64).astype(np.uint64) * np.uint64(primes[i % 4]))
        acc = acc ^ (acc >> np.uint64(29))
        acc = acc * np.uint64(0xBF58476D1CE4E5B9)
        acc = acc ^ (acc >> np.uint64(32))
    return (acc >> np.uint64(40)).astype(np.float64) / float(1 << 24)


__all__ = ["MIN_FILTER_M", "band", "checker", "hash01", "pulses", "smooth_variation", "step"]
