"""Cameras as plain arrays: what partitioning needs from a capture, without images or torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class CameraArrays:
    """N posed pinhole cameras.

    ``c2w`` uses the OpenGL convention (x right, y up, looking down -z), world z up.
    """

    ids: tuple[str, ...]
    """(N,) stable frame ids."""
    c2w: np.ndarray
    """(N, 4, 4) float64 camera-to-world matrices."""
    intrinsics: np.ndarray
    """(N, 4) float64 [fx, fy, cx, cy] in pixels."""
    sizes: np.ndarray
    """(N, 2) int64 [width, height] in pixels."""
    is_train: np.ndarray
    """(N,) bool: False for held-out frames, which are assigned to blocks but never trained on."""
    timestamps: np.ndarray
    """(N,) float64 capture times, NaN when unknown."""

    def __post_init__(self) -> None:
        n = len(self.ids)
        shapes = {
            "c2w": (self.c2w.shape, (n, 4, 4)),
            "intrinsics": (self.intrinsics.shape, (n, 4)),
            "sizes": (self.sizes.shape, (n, 2)),
            "is_train": (self.is_train.shape, (n,)),
            "timestamps": (self.timestamps.shape, (n,)),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"CameraArrays.{name} has shape {got}, expected {want}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def positions(self) -> np.ndarray:
        """(N, 3) camera centres."""
        return self.c2w[:, :3, 3]

    @property
    def forward(self) -> np.ndarray:
        """(N, 3) unit viewing directions (the camera's -z axis in world coordinates)."""
        return -self.c2w[:, :3, 2]

    @classmethod
    def from_poses(
        cls,
        c2w: np.ndarray,
        *,
        fx: float = 100.0,
        width: int = 160,
        height: int = 120,
        ids: tuple[str, ...] | None = None,
    ) -> CameraArrays:
        """Cameras sharing one centred pinhole model, e.g. for planning from poses alone."""
        c2w = np.asarray(c2w, dtype=np.float64)
        n = len(c2w)
        k = np.tile([fx, fx, width / 2.0, height / 2.0], (n, 1))
        return cls(
            ids=ids if ids is not None else tuple(f"frame_{i:07d}" for i in range(n)),
            c2w=c2w,
            intrinsics=k,
            sizes=np.tile([width, height], (n, 1)).astype(np.int64),
            is_train=np.ones(n, dtype=bool),
            timestamps=np.full(n, np.nan),
        )
