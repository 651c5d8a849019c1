"""The block plan: blocks (regions with ids, neighbours and frames) and how they serialise to JSON."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from partitioning.config import PartitionConfig
from partitioning.rays import crosses_cylinder, region_terms

SCHEMA_VERSION = 1
"""Version of the JSON layout written by ``BlockPlan.to_dict``; readers refuse newer versions."""

BLOCK_ID_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
"""What a block id may look like: a lowercase letter, then up to 39 lowercase letters, digits or
underscores (``b003_005``, ``bm02_013``, ``b001_002a``). Ids become store keys and file names, so
nothing that could climb out of a directory (``.``, ``/``, ``\\``) or differ only in case is allowed."""


def block_id_problem(block_id: object) -> str | None:
    """Why ``block_id`` is not a valid block id, or None when it is."""
    if not isinstance(block_id, str) or BLOCK_ID_PATTERN.fullmatch(block_id) is None:
        return f"invalid block id {str(block_id)[:60]!r} (expected {BLOCK_ID_PATTERN.pattern}, e.g. b003_005)"
    return None


IDENTITY = ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0))


@dataclass(frozen=True)
class BlockSpec:
    """One block: a vertical cylinder in world coordinates and the frames that see it.

    The region is the disc of radius ``radius_m`` about ``center[:2]`` between heights ``z_min`` and
    ``z_max``; ``center[2]`` is the middle of that range.
    """

    id: str
    """Stable id from the block's place on a lattice anchored at the world origin, e.g. ``b003_m02``."""
    center: tuple[float, float, float]
    """Centre in world units (metres in ENU for a geo-registered capture)."""
    radius_m: float
    """Ground-plane radius of the region."""
    z_min: float
    """Bottom of the region."""
    z_max: float
    """Top of the region."""
    neighbors: tuple[str, ...] = ()
    """Ids of the blocks whose regions overlap this one, sorted."""
    frames: tuple[str, ...] = ()
    """Ids of the frames assigned to the block, in capture order (held-out frames included)."""
    shares: tuple[float, ...] = ()
    """Per frame (aligned with ``frames``): the share of its sampled rays that cross the region."""

    def __post_init__(self) -> None:
        problem = block_id_problem(self.id)
        if problem:
            raise ValueError(problem)
        if len(self.frames) != len(self.shares):
            raise ValueError(f"block {self.id}: {len(self.frames)} frames but {len(self.shares)} shares")
        if not (self.radius_m > 0.0 and self.z_min < self.z_max):
            raise ValueError(f"block {self.id}: empty region (radius {self.radius_m}, z {self.z_min}..{self.z_max})")

    @property
    def center_xy(self) -> np.ndarray:
        """(2,) float64 ground-plane centre."""
        return np.array(self.center[:2], dtype=np.float64)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which of the points ``(N, 3)`` lie in the region (boundary included, with
        the ``REGION_SLACK`` that the ray test uses)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        c, lo, hi = region_terms(
            p[:, 0] - self.center[0], p[:, 1] - self.center[1], self.radius_m, self.z_min - p[:, 2], self.z_max - p[:, 2]
        )
        return (c <= 0.0) & (lo <= 0.0) & (hi >= 0.0)

    def ray_crossing(self, origins: np.ndarray, dirs: np.ndarray, far: float | np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which rays meet the region within ``far`` of their origin.

        ``origins``, ``dirs``: ``(N, 3)``; dirs need not be unit length (``far`` is a distance).
        This is the test that assigned frames to the block, so a trainer can use it to pick the
        pixels whose rays matter to the block.
        """
        o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
        d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        return crosses_cylinder(o, d, far, self.center_xy, self.radius_m, self.z_min, self.z_max)

    def overlap_with(self, other: BlockSpec) -> float:
        """Share of the smaller diameter that the two discs have in common along their centre line.

        For equal radii ``r`` at distance ``s`` this is ``(2r - s) / 2r``, the definition of
        ``PartitionConfig.overlap``; 0 when the discs are apart, 1 when one holds the other's centre
        line entirely.
        """
        d = math.dist(self.center[:2], other.center[:2])
        shared = self.radius_m + other.radius_m - d
        return float(min(max(shared / (2.0 * min(self.radius_m, other.radius_m)), 0.0), 1.0))

    def share_of(self, frame_id: str) -> float:
        """The recorded ray share of one of the block's frames (KeyError when it is not assigned)."""
        try:
            return self.shares[self.frames.index(frame_id)]
        except ValueError:
            raise KeyError(frame_id) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; ``from_dict`` restores an equal block."""
        return {
            "id": self.id,
            "center": list(self.center),
            "radius_m": self.radius_m,
            "z_min": self.z_min,
            "z_max": self.z_max,
            "neighbors": list(self.neighbors),
            "frames": list(self.frames),
            "shares": list(self.shares),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockSpec:
        cx, cy, cz = (float(v) for v in data["center"])
        return cls(
            id=str(data["id"]),
            center=(cx, cy, cz),
            radius_m=float(data["radius_m"]),
            z_min=float(data["z_min"]),
            z_max=float(data["z_max"]),
            neighbors=tuple(str(v) for v in data.get("neighbors", ())),
            frames=tuple(str(v) for v in data.get("frames", ())),
            shares=tuple(float(v) for v in data.get("shares", ())),
        )


@dataclass(frozen=True)
class BlockPlan:
    """A capture split into overlapping blocks, with everything needed to reproduce and check it.

    Plan coordinates relate to the capture's world coordinates by ``world_transform`` (identity:
    the planner does not move or rescale poses); the world frame is ENU metres at ``geo_origin``
    when there is one.
    """

    blocks: tuple[BlockSpec, ...]
    """The blocks, sorted by id."""
    strategy: str
    """The placement strategy used (``config.strategy``)."""
    config: PartitionConfig
    """The settings the plan was made with."""
    far_m: float
    """How far rays were followed in the ray test (``config.far_m`` or the median radius)."""
    geo_origin: tuple[float, float, float] | None = None
    """WGS84 (lat deg, lon deg, alt m) of the world origin, or None for a capture without GPS."""
    world_transform: tuple[tuple[float, ...], ...] = IDENTITY
    """4x4 map from the capture's world coordinates to plan coordinates (row-major)."""
    dropped: tuple[tuple[str, str], ...] = ()
    """``(id, reason)`` of each candidate block that was removed (no frames, or merged)."""
    n_frames: int = 0
    """Number of frames planned (training and held-out)."""
    bounds: tuple[tuple[float, float, float], tuple[float, float, float]] = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    """Lowest and highest corner of the box around the camera centres."""
    schema_version: int = SCHEMA_VERSION
    """Version of the serialised layout."""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {b.id: i for i, b in enumerate(self.blocks)}
        if len(index) != len(self.blocks):
            raise ValueError("block ids are not unique")
        if len(self.world_transform) != 4 or any(len(row) != 4 for row in self.world_transform):
            raise ValueError("world_transform must be 4x4")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(b.id for b in self.blocks)

    def block(self, block_id: str) -> BlockSpec:
        """The block with this id (KeyError naming the known ids when there is none)."""
        try:
            return self.blocks[self._index[block_id]]
        except KeyError:
            known = ", ".join(self.ids[:10]) + (" ..." if len(self.blocks) > 10 else "")
            raise KeyError(f"no block {block_id!r} in the plan (blocks: {known})") from None

    def frames_of(self, block_id: str) -> tuple[str, ...]:
        return self.block(block_id).frames

    @cached_property
    def _blocks_by_frame(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for b in self.blocks:
            for f in b.frames:
                out.setdefault(f, []).append(b.id)
        return {f: tuple(ids) for f, ids in out.items()}

    def blocks_of_frame(self, frame_id: str) -> tuple[str, ...]:
        """Ids of the blocks a frame is assigned to (empty when the frame is not in the plan)."""
        return self._blocks_by_frame.get(frame_id, ())

    @property
    def world_transform_array(self) -> np.ndarray:
        """(4, 4) float64 copy of ``world_transform``."""
        return np.array(self.world_transform, dtype=np.float64)

    @property
    def centers(self) -> np.ndarray:
        """(B, 3) float64 block centres in plan order."""
        return np.array([b.center for b in self.blocks], dtype=np.float64).reshape(-1, 3)

    @property
    def radii(self) -> np.ndarray:
        """(B,) float64 block radii in plan order."""
        return np.array([b.radius_m for b in self.blocks], dtype=np.float64)

    def nearest_overlap(self, block_id: str) -> float | None:
        """Overlap (``BlockSpec.overlap_with``) with the nearest neighbour, None without neighbours."""
        b = self.block(block_id)
        if not b.neighbors:
            return None
        nearest = min((self.block(n) for n in b.neighbors), key=lambda o: (math.dist(b.center[:2], o.center[:2]), o.id))
        return b.overlap_with(nearest)

    def summary(self) -> list[dict[str, Any]]:
        """One JSON-safe row per block for tables: id, center, radius_m, z range, frame counts,
        neighbours and the overlap with the nearest neighbour."""
        return [
            {
                "id": b.id,
                "center": list(b.center),
                "radius_m": b.radius_m,
                "z_min": b.z_min,
                "z_max": b.z_max,
                "frames": len(b.frames),
                "neighbors": list(b.neighbors),
                "overlap": self.nearest_overlap(b.id),
            }
            for b in self.blocks
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; ``from_dict(json.loads(json.dumps(d)))`` gives an equal plan."""
        return {
            "schema_version": self.schema_version,
            "strategy": self.strategy,
            "config": self.config.to_dict(),
            "far_m": self.far_m,
            "geo_origin": None if self.geo_origin is None else list(self.geo_origin),
            "world_transform": [list(row) for row in self.world_transform],
            "n_frames": self.n_frames,
            "bounds": [list(corner) for corner in self.bounds],
            "dropped": [list(item) for item in self.dropped],
            "blocks": [b.to_dict() for b in self.blocks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockPlan:
        """Read a plan written by ``to_dict``; ValueError for a newer or malformed layout."""
        if not isinstance(data, dict):
            raise ValueError(f"a block plan must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise ValueError("block plan has no integer schema_version")
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"block plan schema_version {version} is newer than this version of partitioning reads "
                f"({SCHEMA_VERSION}); upgrade blocknerf"
            )
        try:
            geo = data.get("geo_origin")
            lo, hi = data["bounds"]
            return cls(
                blocks=tuple(BlockSpec.from_dict(b) for b in data["blocks"]),
                strategy=str(data["strategy"]),
                config=PartitionConfig.from_dict(data["config"]),
                far_m=float(data["far_m"]),
                geo_origin=None if geo is None else (float(geo[0]), float(geo[1]), float(geo[2])),
                world_transform=tuple(tuple(float(v) for v in row) for row in data["world_transform"]),
                dropped=tuple((str(i), str(r)) for i, r in data.get("dropped", ())),
                n_frames=int(data["n_frames"]),
                bounds=(tuple(float(v) for v in lo), tuple(float(v) for v in hi)),  # type: ignore[arg-type]
                schema_version=version,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed block plan: {exc!r}") from None


__all__ = ["BLOCK_ID_PATTERN", "BlockSpec", "BlockPlan", "SCHEMA_VERSION", "block_id_problem"]
