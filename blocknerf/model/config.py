"""Settings of the per-block model (torch-free, so configs load without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class HashGridConfig:
    """Multiresolution hash encoding (Instant-NGP) of contracted block coordinates."""

    levels: int = 16
    """Number of resolution levels L."""
    features_per_level: int = 2
    """Features F stored per table entry."""
    log2_table_size: int = 18
    """log2 of the entries T per level; coarse levels with fewer vertices are indexed densely."""
    base_resolution: int = 16
    """Grid resolution of the coarsest level over the whole contracted cube."""
    max_resolution: int = 2048
    """Grid resolution of the finest level over the whole contracted cube."""
    init_scale: float = 1e-4
    """Table entries start uniform in [-init_scale, init_scale]."""
    backend: Literal["auto", "fast", "reference"] = "auto"
    """``fast``: fused native kernel (CPU); ``reference``: plain torch; ``auto``: fast on CPU when it
    builds, reference otherwise (and on CUDA)."""

    def validate(self) -> None:
        if not 1 <= self.levels <= 32:
            raise ValueError("levels must be in 1..32")
        if self.features_per_level not in (1, 2, 4, 8):
            raise ValueError("features_per_level must be 1, 2, 4 or 8")
        if not 10 <= self.log2_table_size <= 24:
            raise ValueError("log2_table_size must be in 10..24")
        if not 2 <= self.base_resolution <= self.max_resolution:
            raise ValueError("need 2 <= base_resolution <= max_resolution")

    @property
    def output_dim(self) -> int:
        return self.levels * self.features_per_level


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The whole per-block model."""

    hashgrid: HashGridConfig = field(default_factory=HashGridConfig)
