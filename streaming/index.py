"""The block index: block centres and radii in a KD-tree, and the candidate blocks for a camera.

Blocks are vertical cylinders (``partitioning``), so distances are measured in the ground plane:
a camera is within a block's range when its horizontal distance to the block's centre is at most
``range_factor`` x the block's radius. The nearest block is always a candidate, so that a camera
outside every block still sees the closest one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True, slots=True)
class Candidate:
    """A block near a camera."""

    block_id: str
    distance_m: float
    """Horizontal distance from the camera to the block's centre."""
    radius_m: float
    """The block's radius."""
    in_range: bool
    """Whether the camera lies within the range (range_factor x radius) of the block."""


class BlockIndex:
    """Block centres (B, 3) and radii (B,) in a KD-tree over their ground-plane positions."""

    def __init__(self, block_ids: Sequence[str], centers: np.ndarray, radii: np.ndarray) -> None:
        centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
        radii = np.asarray(radii, dtype=np.float64).reshape(-1)
        if not (len(block_ids) == len(centers) == len(radii)):
            raise ValueError(f"{len(block_ids)} ids, {len(centers)} centres and {len(radii)} radii do not match")
        if len(set(block_ids)) != len(block_ids):
            raise ValueError("block ids are not unique")
        if np.any(~np.isfinite(centers)) or np.any(~(radii > 0)):
            raise ValueError("block centres must be finite and radii positive")
        self.block_ids: tuple[str, ...] = tuple(block_ids)
        self.centers = centers
        self.radii = radii
        self._tree = cKDTree(centers[:, :2]) if len(centers) else None
        self._max_radius = float(radii.max()) if len(radii) else 0.0
        self._position = {b: i for i, b in enumerate(self.block_ids)}

    @classmethod
    def from_plan(cls, plan: object, block_ids: Sequence[str] | None = None) -> BlockIndex:
        """The blocks of a ``partitioning.BlockPlan`` (only ``block_ids`` when given, e.g. the
        published ones)."""
        specs = [b for b in plan.blocks if block_ids is None or b.id in set(block_ids)]  # type: ignore[attr-defined]
        return cls(
            [b.id for b in specs],
            np.array([b.center for b in specs], dtype=np.float64).reshape(-1, 3),
            np.array([b.radius_m for b in specs], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.block_ids)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._position

    def center_of(self, block_id: str) -> np.ndarray:
        """(3,) float64 centre of a block."""
        return self.centers[self._position[block_id]]

    def radius_of(self, block_id: str) -> float:
        return float(self.radii[self._position[block_id]])

    def query(self, position: np.ndarray, *, range_factor: float = 1.0) -> list[Candidate]:
        """Candidate blocks for a camera at ``position`` (3,): every block within range, nearest
        first; the nearest block even when it is out of range. Empty only for an empty index."""
        if self._tree is None:
            return []
        xy = np.asarray(position, dtype=np.float64).reshape(-1)[:2]
        # Query the largest reach, then keep each block within its own reach.
        near = self._tree.query_ball_point(xy, r=range_factor * self._max_radius)
        out = []
        for i in near:
            d = float(np.hypot(*(self.centers[i, :2] - xy)))
            if d <= range_factor * self.radii[i]:
                out.append(Candidate(self.block_ids[i], d, float(self.radii[i]), True))
        if not out:
            d, i = self._tree.query(xy, k=1)
            out.append(Candidate(self.block_ids[int(i)], float(d), float(self.radii[int(i)]), False))
        out.sort(key=lambda c: (c.distance_m, c.block_id))
        return out

    def nearest(self, position: np.ndarray, k: int = 1) -> list[Candidate]:
        """The ``k`` blocks whose centres are nearest ``position`` (3,) in the ground plane
        (``in_range``: within one radius)."""
        if self._tree is None:
            return []
        xy = np.asarray(position, dtype=np.float64).reshape(-1)[:2]
        k = min(k, len(self))
        d, idx = self._tree.query(xy, k=k)
        d, idx = np.atleast_1d(d), np.atleast_1d(idx)
        return [
            Candidate(self.block_ids[int(i)], float(di), float(self.radii[int(i)]), bool(di <= self.radii[int(i)]))
            for di, i in zip(d, idx)
        ]


__all__ = ["BlockIndex", "Candidate"]
