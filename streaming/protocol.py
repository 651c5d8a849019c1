"""What streaming needs from a block and from a view, as small types (no torch at import time).

A block is anything with an id, a version, a region, a size and a way to render rays: the trained
``blocknerf.block.BlockModel`` satisfies ``RenderableBlock``, and tests use tiny fake blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

    from blocknerf.capture.frames import Intrinsics
    from blocknerf.model.renderer import Rays, RenderResult

BlockKey = tuple[str, int]
"""(block id, version): one published block. A new published version is a different block."""
LevelKey = tuple[str, int, int]
"""(block id, version, level of detail): what the cache holds; level 0 is the coarsest (a block
without levels has only level 0)."""


class BlockRegion(Protocol):
    """A block's region as the compositor sees it."""

    @property
    def center(self) -> tuple[float, float, float]: ...

    @property
    def radius(self) -> float: ...


@runtime_checkable
class RenderableBlock(Protocol):
    """A loaded block that can render world rays (``BlockModel`` is one)."""

    block_id: str
    version: int | None

    @property
    def bounds(self) -> BlockRegion: ...

    @property
    def nbytes(self) -> int:
        """Bytes the loaded block holds in memory."""
        ...

    def render_rays(self, rays: Rays) -> RenderResult:
        """(R,) rays -> per-ray rgb (R, 3), depth, opacity and visibility (R,)."""
        ...

    def appearance_code(self, frame_id: str | None = None) -> torch.Tensor | None:
        """(A,) code of a training image, the zero code otherwise; None without appearance codes."""
        ...


@dataclass(frozen=True, eq=False)
class CameraView:
    """One camera to render: pose, intrinsics and, optionally, the exposure and time it stands for."""

    c2w: np.ndarray
    """(4, 4) float64 camera-to-world, OpenGL convention (x right, y up, looking down -z)."""
    intrinsics: Intrinsics
    exposure: float | None = None
    """Relative exposure (linear gain) of the image to reproduce; None: the reference exposure."""
    time_s: float = 0.0
    """Time of this view along its path, in seconds."""
    frame_id: str | None = None
    """Id of the capture frame this view reproduces, if any (held-out evaluation)."""

    def __post_init__(self) -> None:
        c2w = np.array(self.c2w, dtype=np.float64)
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
        if c2w.shape != (4, 4):
            raise ValueError(f"camera pose must be 4x4, got shape {c2w.shape}")
        c2w.setflags(write=False)
        object.__setattr__(self, "c2w", c2w)

    @property
    def position(self) -> np.ndarray:
        """(3,) float64 camera centre."""
        return self.c2w[:3, 3]

    def to_dict(self) -> dict[str, Any]:
        k = self.intrinsics
        return {
            "c2w": self.c2w.tolist(),
            "intrinsics": {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height},
            "exposure": self.exposure,
            "time_s": self.time_s,
            "frame_id": self.frame_id,
        }


__all__ = ["BlockKey", "BlockRegion", "CameraView", "LevelKey", "RenderableBlock"]
