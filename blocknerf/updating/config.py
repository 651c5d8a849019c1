"""Settings of incremental updates (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class UpdateConfig:
    """How new frames are merged into a store's capture record."""

    supersede_distance_m: float | None = None
    """A newer frame supersedes an older one of the same place: camera centres at most this far
    apart (world units) ... None: 2% of the plan's median block radius."""
    supersede_angle_deg: float = 15.0
    """... and viewing directions at most this many degrees apart."""

    def validate(self) -> None:
        if self.supersede_distance_m is not None and not self.supersede_distance_m >= 0.0:
            raise ValueError("supersede_distance_m must be >= 0 (or null: 2% of the median block radius)")
        if not 0.0 <= self.supersede_angle_deg <= 180.0:
            raise ValueError("supersede_angle_deg must be in [0, 180]")

    def distance_for(self, radii: np.ndarray) -> float:
        """The supersede distance for blocks of these radii (B,)."""
        if self.supersede_distance_m is not None:
            return self.supersede_distance_m
        return 0.02 * float(np.median(radii)) if len(radii) else 0.0


__all__ = ["UpdateConfig"]
