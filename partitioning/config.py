"""Settings of the block partition: where blocks go, how large they are, which frames they get."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

Strategy = Literal["grid", "trajectory", "clusters"]
STRATEGIES: tuple[str, ...] = ("grid", "trajectory", "clusters")


@dataclass(frozen=True, slots=True)
class PartitionConfig:
    """How a capture is split into overlapping blocks.

    A block's region is a vertical cylinder: a ground-plane disc of radius ``radius_m`` about its
    centre, between heights ``z_min`` and ``z_max``. Neighbouring blocks overlap: along the line
    between two centres a distance ``spacing_m`` apart, their discs share ``overlap`` of a diameter,
    so ``radius_m = spacing_m / (2 * (1 - overlap))`` (at the default 50 %, each disc reaches its
    neighbours' centres, as in Block-NeRF).
    """

    strategy: Strategy = "grid"
    """``grid``: centres on a square lattice of pitch ``spacing_m`` anchored at the world origin,
    one for each lattice cell (the square of side ``spacing_m`` about a point) a camera stands in. ``trajectory``: centres on the camera
    path, about ``spacing_m`` apart, intersections first (Block-NeRF). ``clusters``: k-means
    centroids of the camera positions (Mega-NeRF), for irregular captures such as drone flights."""
    spacing_m: float | Literal["auto"] = 80.0
    """Distance between neighbouring block centres, in world units (metres for a geo-registered
    capture). The default suits a street-level city: about one city block (60 m) plus a street
    (20 m). ``"auto"`` or a value <= 0 gives one block that holds the whole capture, which is what a
    small or non-metric capture (one object, one room) wants; pass a spacing in the capture's own
    units to split those."""
    overlap: float = 0.5
    """Fraction of a diameter that two neighbouring discs share along the line between their
    centres, in [0, 0.9]. Below about 0.3 the discs of a grid no longer cover the corners of its
    cells (frames there are still assigned, by their rays)."""
    clusters: int | None = None
    """Number of blocks for ``clusters``; None: one per ``spacing_m`` grid cell that holds a camera."""
    z_range_m: tuple[float, float] | None = None
    """Fixed height range ``(z_min, z_max)`` of every block's region; None: from the heights of
    the cameras near each block, widened by ``height_below`` and ``height_above``. Set it for
    drone flights, whose cameras fly far above what they film."""
    height_below: float = 0.25
    """How far a region reaches below its lowest camera, in block radii (20 m at the defaults)."""
    height_above: float = 0.5
    """How far a region reaches above its highest camera, in block radii (40 m at the defaults)."""
    far_m: float | None = None
    """How far each sampled ray is followed when testing which blocks a frame sees; None: the
    median block radius."""
    rays_per_frame: int = 64
    """Rays sampled per frame (a fixed low-discrepancy pattern over the image, the first through the
    principal point) for the ray/region test; shares are multiples of 1 / rays_per_frame."""
    min_share: float = 0.1
    """A frame belongs to a block when at least this share of its sampled rays cross the block's
    region within ``far_m``. A frame that reaches this share nowhere goes to the block it sees best."""
    min_frames: int = 20
    """Blocks seen by fewer training frames (share >= ``min_share``) are removed and their frames
    merged into the remaining blocks that see them best (the reason is recorded in
    ``BlockPlan.dropped``); the block seen by the most is always kept, so a tiny capture gives one."""
    seed: int = 0
    """Seed of the k-means initialisation of ``clusters`` (plans are deterministic for a seed)."""
    chunk_frames: int = 8192
    """Frames processed at once by the ray test; bounds the memory it uses (about 50 kB a frame)."""

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if isinstance(self.spacing_m, str):
            if self.spacing_m != "auto":
                raise ValueError(f"spacing_m must be a number or 'auto', got {self.spacing_m!r}")
        elif not math.isfinite(self.spacing_m):
            raise ValueError("spacing_m must be finite")
        if not 0.0 <= self.overlap <= 0.9:
            raise ValueError(f"overlap must be in [0, 0.9], got {self.overlap}")
        if self.clusters is not None and self.clusters < 1:
            raise ValueError(f"clusters must be at least 1, got {self.clusters}")
        if self.z_range_m is not None:
            lo, hi = self.z_range_m
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"z_range_m must be (low, high) with low < high, got {self.z_range_m}")
        if not (self.height_below >= 0.0 and self.height_above >= 0.0):
            raise ValueError("height_below and height_above must be >= 0")
        if self.z_range_m is None and self.height_below + self.height_above <= 0.0:
            raise ValueError("height_below + height_above must be > 0 (or set z_range_m)")
        if self.far_m is not None and not (self.far_m > 0.0 and math.isfinite(self.far_m)):
            raise ValueError(f"far_m must be positive, got {self.far_m}")
        if not 1 <= self.rays_per_frame <= 4096:
            raise ValueError(f"rays_per_frame must be in 1..4096, got {self.rays_per_frame}")
        if not 0.0 < self.min_share <= 1.0:
            raise ValueError(f"min_share must be in (0, 1], got {self.min_share}")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be at least 1, got {self.min_frames}")
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {self.chunk_frames}")

    @property
    def auto_spacing(self) -> bool:
        """True when the whole capture becomes one block (``spacing_m`` is ``"auto"`` or <= 0)."""
        return isinstance(self.spacing_m, str) or self.spacing_m <= 0.0

    @property
    def radius_m(self) -> float:
        """Disc radius of a block for this spacing and overlap (not defined for ``auto``)."""
        if self.auto_spacing:
            raise ValueError("spacing_m is 'auto': block radii follow the capture")
        return float(self.spacing_m) / (2.0 * (1.0 - self.overlap))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (tuples become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionConfig:
        """The inverse of ``to_dict``; missing keys take defaults, unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown partition setting(s): {', '.join(unknown)}")
        values = dict(data)
        if values.get("z_range_m") is not None:
            values["z_range_m"] = tuple(float(v) for v in values["z_range_m"])
        cfg = cls(**values)
        cfg.validate()
        return cfg


__all__ = ["PartitionConfig", "Strategy", "STRATEGIES"]
