"""Where a placed object or an erased region sits in the scene: pose records and their frames.

A source (a block trained from its own capture) lives in its own frame, in its own units. A
``Placement`` maps it into the scene's world frame (east-north-up metres for a geo-registered
store)::

    x_world = position + scale * R (x_source - anchor)

``anchor`` is the source point that lands on ``position`` (by default the centre of the crop);
``R`` turns the source by ``heading`` (degrees clockwise from north, about the up axis), then
``pitch`` (about east, nose up) and ``roll`` (about north); ``scale`` is metres per source unit.
The source frame is taken as z-up, like the scene's.

Rays go the other way: a world ray ``o + t d`` is the source ray ``o' + t' d'`` with
``o' = anchor + R^T (o - position) / scale``, ``d' = R^T d`` (still unit length) and
``t = scale * t'``. Integrating the source's density over ``t'`` is integrating ``sigma / scale``
over world distance ``t``: the density scales with ``1 / scale`` through this change of variable,
so any renderer of the source renders the placed object unchanged.

The ``Crop`` (in source units) says which part of the source is the object, so the rest of its
capture stays out; an ``EraseBox`` is an oriented box in world coordinates whose matter is removed
at render time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PLACEMENT_SCHEMA", "Crop", "EraseBox", "Placement", "rotation"]

PLACEMENT_SCHEMA = 1


def rotation(heading_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """(3, 3) float64 rotation: roll about north (y), then pitch about east (x), then heading
    clockwise about up (z) -- compass heading, so heading 90 turns the source's north to east."""
    h, p, r = (math.radians(v) for v in (heading_deg, pitch_deg, roll_deg))
    ch, sh, cp, sp, cr, sr = math.cos(h), math.sin(h), math.cos(p), math.sin(p), math.cos(r), math.sin(r)
    rz = np.array([[ch, sh, 0.0], [-sh, ch, 0.0], [0.0, 0.0, 1.0]])  # clockwise seen from above
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    ry = np.array([[cr, 0.0, sr], [0.0, 1.0, 0.0], [-sr, 0.0, cr]])
    return rz @ rx @ ry


def _vec3(values: Sequence[float], what: str) -> tuple[float, float, float]:
    v = tuple(float(x) for x in values)
    if len(v) != 3 or not all(math.isfinite(x) for x in v):
        raise ValueError(f"{what} must be three finite numbers, got {list(values)}")
    return v  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Crop:
    """The part of a source that is the object, in source units: a sphere (``radius``) or an
    axis-aligned box (``half_size``) around ``center``."""

    kind: str
    center: tuple[float, float, float]
    radius: float = 0.0
    half_size: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.kind not in ("sphere", "box"):
            raise ValueError(f"crop must be 'sphere' or 'box', got {self.kind!r}")
        object.__setattr__(self, "center", _vec3(self.center, "crop centre"))
        object.__setattr__(self, "half_size", _vec3(self.half_size, "crop half size"))
        if self.kind == "sphere" and not self.radius > 0:
            raise ValueError(f"crop sphere radius must be positive, got {self.radius}")
        if self.kind == "box" and not min(self.half_size) > 0:
            raise ValueError(f"crop box size must be positive, got {[2 * h for h in self.half_size]}")

    @property
    def extent(self) -> float:
        """Radius of a sphere around ``center`` that holds the crop (source units)."""
        return self.radius if self.kind == "sphere" else float(np.linalg.norm(self.half_size))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) source points -> (N,) bool: inside the crop."""
        d = np.asarray(points, dtype=np.float64) - np.asarray(self.center)
        if self.kind == "sphere":
            return (d * d).sum(axis=-1) <= self.radius**2
        return (np.abs(d) <= np.asarray(self.half_size)).all(axis=-1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "center": list(self.center), "radius": self.radius, "half_size": list(self.half_size)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Crop:
        return cls(str(d["kind"]), tuple(d["center"]), float(d.get("radius", 0.0)), tuple(d.get("half_size", (0, 0, 0))))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Placement:
    """The pose record of a placed object (see the module docstring)."""

    position: tuple[float, float, float]
    """World (ENU metres) point where ``anchor`` lands."""
    crop: Crop
    anchor: tuple[float, float, float]
    """Source point placed at ``position`` (source units)."""
    heading_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    scale: float = 1.0
    """Metres per source unit."""
    source: str = ""
    """Where the arrays were copied from: ``store.zarr:block`` (provenance only)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", _vec3(self.position, "position"))
        object.__setattr__(self, "anchor", _vec3(self.anchor, "anchor"))
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be a positive number (metres per source unit), got {self.scale}")
        for name in ("heading_deg", "pitch_deg", "roll_deg"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) source -> world rotation."""
        return rotation(self.heading_deg, self.pitch_deg, self.roll_deg)

    @property
    def radius_m(self) -> float:
        """Radius of a world sphere around ``world_center`` that holds the object."""
        return self.scale * (self.crop.extent + float(np.linalg.norm(np.subtract(self.crop.center, self.anchor))))

    @property
    def world_center(self) -> np.ndarray:
        """(3,) world position of the crop's centre."""
        return self.to_world(np.asarray(self.crop.center)[None])[0]

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) source points -> (N, 3) world points."""
        p = np.asarray(points, dtype=np.float64) - np.asarray(self.anchor)
        return np.asarray(self.position) + self.scale * p @ self.rotation.T

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) source points."""
        p = (np.asarray(points, dtype=np.float64) - np.asarray(self.position)) / self.scale
        return np.asarray(self.anchor) + p @ self.rotation

    def moved(self, **changes: Any) -> Placement:
        """This placement with some fields replaced (``position``, ``heading_deg``, ``scale``...)."""
        d = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        d.update({k: v for k, v in changes.items() if v is not None})
        return Placement(**d)

    def footprint(self, segments: int = 32) -> np.ndarray:
        """(K, 2) world (x, y) outline of the crop seen from above, counter-clockwise, not closed."""
        if self.crop.kind == "box":
            hx, hy, hz = self.crop.half_size
            corners = np.array([[sx * hx, sy * hy, sz * hz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
            pts = self.to_world(corners + np.asarray(self.crop.center))[:, :2]
        else:
            theta = 2.0 * math.pi * np.arange(segments) / segments
            c = self.world_center
            r = self.scale * self.crop.radius
            return np.stack([c[0] + r * np.cos(theta), c[1] + r * np.sin(theta)], axis=1)
        return _convex_hull(pts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": PLACEMENT_SCHEMA,
            "position": list(self.position),
            "crop": self.crop.to_dict(),
            "anchor": list(self.anchor),
            "heading_deg": self.heading_deg,
            "pitch_deg": self.pitch_deg,
            "roll_deg": self.roll_deg,
            "scale": self.scale,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Placement:
        if int(d.get("schema_version", 1)) > PLACEMENT_SCHEMA:
            raise ValueError(f"placement schema {d['schema_version']} is newer than this blocknerf ({PLACEMENT_SCHEMA})")
        return cls(
            tuple(d["position"]), Crop.from_dict(d["crop"]), tuple(d["anchor"]),  # type: ignore[arg-type]
            float(d.get("heading_deg", 0.0)), float(d.get("pitch_deg", 0.0)), float(d.get("roll_deg", 0.0)),
            float(d.get("scale", 1.0)), str(d.get("source", "")),
        )


@dataclass(frozen=True, slots=True)
class EraseBox:
    """An oriented box in world coordinates whose matter is removed at render time."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    """Full extent along the box's own east, north and up axes (metres)."""
    heading_deg: float = 0.0
    """Turn of the box, clockwise from north."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _vec3(self.center, "box centre"))
        object.__setattr__(self, "size", _vec3(self.size, "box size"))
        if not min(self.size) > 0:
            raise ValueError(f"box size must be positive, got {list(self.size)}")
        if not math.isfinite(self.heading_deg):
            raise ValueError("box heading must be finite")

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N,) bool: inside the box."""
        local = (np.asarray(points, dtype=np.float64) - np.asarray(self.center)) @ rotation(self.heading_deg)
        return (np.abs(local) <= 0.5 * np.asarray(self.size)).all(axis=-1)

    def footprint(self) -> np.ndarray:
        """(4, 2) world (x, y) corners, counter-clockwise."""
        hx, hy = 0.5 * self.size[0], 0.5 * self.size[1]
        local = np.array([[-hx, -hy, 0.0], [hx, -hy, 0.0], [hx, hy, 0.0], [-hx, hy, 0.0]])
        return (np.asarray(self.center) + local @ rotation(self.heading_deg).T)[:, :2]

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": PLACEMENT_SCHEMA, "center": list(self.center), "size": list(self.size), "heading_deg": self.heading_deg}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EraseBox:
        return cls(tuple(d["center"]), tuple(d["size"]), float(d.get("heading_deg", 0.0)))  # type: ignore[arg-type]


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """(N, 2) points -> their convex hull, counter-clockwise (monotone chain)."""
    pts = sorted(map(tuple, np.round(np.asarray(points, dtype=np.float64), 9)))
    if len(pts) < 3:
        return np.asarray(pts)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0]) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.asarray(lower[:-1] + upper[:-1])
