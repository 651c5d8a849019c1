"""Independent random streams of the synthetic city, one per purpose."""

from __future__ import annotations

import numpy as np

__all__ = ["SEED_APPEARANCE", "SEED_CHANGE", "SEED_GPS_NOISE", "SEED_LAYOUT", "rng_for"]

SEED_LAYOUT = 1
SEED_CHANGE = 2
SEED_APPEARANCE = 3
SEED_GPS_NOISE = 4


def rng_for(seed: int, purpose: int) -> np.random.Generator:
    """An independent random stream per purpose, so that e.g. drawing the change never shifts the
    layout and vice versa."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, purpose]))
