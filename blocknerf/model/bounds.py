"""A block's region and the scene contraction that maps all of space into the unit cube.

World points are first normalised by the block's region: ``u = (x - center) / scale`` with
``scale = (radius, radius, half height)``, so the region is the cube ``|u|_inf <= 1``. Outside it,
the mip-NeRF 360 contraction (with the L-infinity norm, which fills the cube) maps everything
beyond into a shell: ``c(u) = (2 - 1/m) u / m`` for ``m = |u|_inf > 1``. ``x01 = (c + 2) / 4``
puts the result in ``[0, 1]^3``, where the hash grid and the occupancy grid live. Far buildings and
the sky thus stay representable by every block, at a resolution that falls off with distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, slots=True)
class BlockBounds:
    """The region a block models in full detail: a box ``center +- (radius, radius, half_height)``."""

    center: tuple[float, float, float]
    radius: float
    half_height: float

    def __post_init__(self) -> None:
        if not (self.radius > 0 and self.half_height > 0):
            raise ValueError(f"block radius {self.radius} and half height {self.half_height} must be positive")

    @classmethod
    def from_spec(cls, center: tuple[float, float, float], radius_m: float, z_min: float, z_max: float) -> BlockBounds:
        """Bounds of a partitioning BlockSpec (disc radius and height range)."""
        return cls((float(center[0]), float(center[1]), 0.5 * (z_min + z_max)), float(radius_m), 0.5 * (z_max - z_min))

    @property
    def scale(self) -> np.ndarray:
        """(3,) float64 normalisation scale (radius, radius, half height)."""
        return np.array([self.radius, self.radius, self.half_height], dtype=np.float64)

    def normalize_rays(self, origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World rays -> rays in normalised block coordinates, keeping the world ray parameter t.

        origins, directions: (R, 3); returns (R, 3) float32 each. ``o + t d`` in world maps to
        ``o_n + t d_n`` in normalised coordinates for the same t.
        """
        c = torch.as_tensor(self.center, dtype=origins.dtype, device=origins.device)
        s = torch.as_tensor(self.scale, dtype=origins.dtype, device=origins.device)
        return ((origins - c) / s).float().contiguous(), (directions / s).float().contiguous()

    def to_dict(self) -> dict[str, object]:
        return {"center": list(self.center), "radius": self.radius, "half_height": self.half_height}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> BlockBounds:
        c = d["center"]
        return cls((float(c[0]), float(c[1]), float(c[2])), float(d["radius"]), float(d["half_height"]))  # type: ignore[index]


def contract(u: torch.Tensor) -> torch.Tensor:
    """Normalised coordinates (..., 3) -> contracted coordinates in [0, 1]^3."""
    m = u.abs().amax(dim=-1, keepdim=True)
    outside = m > 1.0
    safe = torch.where(outside, m, torch.ones_like(m))
    c = torch.where(outside, (2.0 - 1.0 / safe) * u / safe, u)
    return ((c + 2.0) * 0.25).clamp(0.0, 1.0)


def uncontract(x01: torch.Tensor) -> torch.Tensor:
    """Inverse of ``contract``: points in [0, 1]^3 -> normalised coordinates (the shell edge maps far)."""
    c = x01 * 4.0 - 2.0
    m = c.abs().amax(dim=-1, keepdim=True)
    outside = m > 1.0
    # c = (2 - 1/m_u) u / m_u with |c|_inf = 2 - 1/m_u  ->  m_u = 1 / (2 - m_c)
    m_u = 1.0 / (2.0 - m.clamp(max=2.0 - 1e-6))
    return torch.where(outside, c / m * m_u, c)
