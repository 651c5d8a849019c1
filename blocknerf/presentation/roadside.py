"""Where the demo places an object beside the road, and the camera path that drives up to it.

Everything comes from the synthetic city's own layout (its ``city.json``) and the object's
capture (its ``object.json``), so nothing here is a coordinate picked by hand:

* the **spot** is the middle of a pavement halfway along a driven street (an intersection is
  ``street.start_m``/``end_m``, so halfway is as far from both as a street gets), on the ground
  (``z = 0`` is the road surface), outside the disc of every change the city went through, and of
  the pavements that qualify the one nearest to the flythrough's cameras;
* the object is **turned** so that its front (the side its synthetic capture faces south: the
  kiosk's serving hatch) faces the road;
* the **path** drives the lane beside that pavement (right-hand traffic: the capture's
  ``drive_offset_m`` right of the centre line) at the rig's height and pitch, looking ahead, and
  stops where the object is seen ``LAST_BEARING_DEG`` off the view axis: it comes closer frame by
  frame on the right, and stays whole in the picture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blocknerf.composition.placement import rotation
from blocknerf.synth.city import ChangeRegion, City, Street
from blocknerf.synth.trajectory import look

__all__ = ["FIRST_BEARING_DEG", "LAST_BEARING_DEG", "ObjectExtent", "RoadsideSpot", "pass_by_path", "projected_box", "roadside_spot"]

OBJECT_FRONT_BEARING_DEG = 180.0
"""Compass bearing the front of a synthetic object faces in its own frame (south: the kiosk's hatch)."""
FIRST_BEARING_DEG = 12.0
"""The pass-by starts where the object is seen this far off the view axis (far ahead, small)..."""
LAST_BEARING_DEG = 30.0
"""... and stops where it is seen this far off: well inside the rig's 42.5 degree half field of
view, so that the whole object (about a metre either side of its middle) stays in the picture."""


@dataclass(frozen=True, slots=True)
class ObjectExtent:
    """What a placement needs of a synthetic object (its ``object.json``): bounds in its own frame."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    @classmethod
    def from_object_json(cls, doc: Mapping[str, Any]) -> ObjectExtent:
        return cls(tuple(float(v) for v in doc["bounds_lo"]), tuple(float(v) for v in doc["bounds_hi"]))  # type: ignore[arg-type]

    @property
    def centre(self) -> tuple[float, float, float]:
        return tuple(0.5 * (a + b) for a, b in zip(self.lo, self.hi))  # type: ignore[return-value]

    @property
    def half_diagonal_m(self) -> float:
        return 0.5 * math.dist(self.lo, self.hi)

    @property
    def base(self) -> tuple[float, float, float]:
        """The middle of its underside: the point that stands on the ground."""
        c = self.centre
        return (c[0], c[1], self.lo[2])

    def corners(self) -> np.ndarray:
        """(8, 3) float64 corners of its bounding box."""
        return np.array([[x, y, z] for x in (self.lo[0], self.hi[0]) for y in (self.lo[1], self.hi[1]) for z in (self.lo[2], self.hi[2])])


@dataclass(frozen=True, slots=True)
class RoadsideSpot:
    """A place on a pavement for an object, and the lane that passes it."""

    street: str
    position: tuple[float, float, float]
    """Where the object's base goes (ENU metres)."""
    heading_deg: float
    """Placement heading (clockwise from north) that turns the object's front to the road."""
    travel: tuple[float, float]
    """Unit (east, north) direction of the lane that has the spot on its right."""
    lane: tuple[float, float]
    """(east, north) of the lane's point level with the spot."""

    @property
    def lateral_m(self) -> float:
        """Distance from the lane to the spot."""
        return math.dist(self.lane, self.position[:2])

    def to_world(self, extent: ObjectExtent, points: np.ndarray) -> np.ndarray:
        """(N, 3) points of the object's frame -> world, as ``compose add`` places them (anchor: its base)."""
        return np.asarray(self.position) + (np.asarray(points, dtype=np.float64) - np.asarray(extent.base)) @ rotation(self.heading_deg).T


def roadside_spot(
    city: City, cameras: np.ndarray, *, avoid: Sequence[ChangeRegion] = (), clearance_m: float = 0.0
) -> RoadsideSpot:
    """The pavement spot of the module docstring: ``cameras`` (N, 3) are the flythrough's camera
    positions; a spot within ``clearance_m`` (the object's half size) of a change disc in ``avoid``
    is not taken. ValueError when every pavement is taken."""
    candidates = [_spot(city, street, side) for street in city.streets for side in (1.0, -1.0)]
    free = [s for s in candidates if all(math.dist(s.position[:2], r.centre_xy) > r.radius_m + clearance_m for r in avoid)]
    if not free:
        raise ValueError("every pavement halfway along a street is inside a change")
    cams = np.asarray(cameras, dtype=np.float64).reshape(-1, 3)[:, :2]
    return min(free, key=lambda s: float(np.min(np.linalg.norm(cams - np.asarray(s.lane), axis=1))))


def _spot(city: City, street: Street, side: float) -> RoadsideSpot:
    """The spot halfway along ``street`` on the pavement on ``side`` (+1: east of a north-south
    street, north of an east-west one; -1: the other)."""
    cfg = city.config
    along = 0.5 * (street.start_m + street.end_m)
    normal = np.array([side, 0.0]) if street.axis == "ns" else np.array([0.0, side])
    axis_point = np.array([street.offset_m, along]) if street.axis == "ns" else np.array([along, street.offset_m])
    pavement_middle = 0.5 * cfg.street_width_m - 0.5 * cfg.pavement_width_m
    spot = axis_point + pavement_middle * normal
    # Right-hand traffic: the lane on this side travels with the pavement on its right, i.e. along
    # the normal turned a quarter counter-clockwise.
    travel = np.array([-normal[1], normal[0]])
    lane = axis_point + cfg.drive_offset_m * normal
    to_road = -normal
    bearing = math.degrees(math.atan2(to_road[0], to_road[1]))
    heading = (bearing - OBJECT_FRONT_BEARING_DEG) % 360.0
    return RoadsideSpot(
        street.name, (float(spot[0]), float(spot[1]), 0.0), heading, (float(travel[0]), float(travel[1])),
        (float(lane[0]), float(lane[1])),
    )


def pass_by_path(city: City, spot: RoadsideSpot, *, frames: int, size: tuple[int, int], fov_y_deg: float, fps: float = 2.0) -> dict[str, Any]:
    """The drive up to ``spot`` as a nerfstudio ``camera_path.json`` document: ``frames`` poses in
    its lane at the rig's height and pitch, looking along the lane, from where the object is seen
    ``FIRST_BEARING_DEG`` off the view axis to where it is seen ``LAST_BEARING_DEG`` off."""
    if frames < 1:
        raise ValueError(f"a pass-by needs at least one frame, got {frames}")
    cfg = city.config
    bearings = np.radians(np.linspace(FIRST_BEARING_DEG, LAST_BEARING_DEG, frames))
    ahead_m = spot.lateral_m / np.tan(bearings)
    yaw = math.degrees(math.atan2(spot.travel[1], spot.travel[0]))
    w, h = size
    poses = []
    for d in ahead_m:
        xy = np.asarray(spot.lane) - d * np.asarray(spot.travel)
        c2w = look((float(xy[0]), float(xy[1]), cfg.camera_height_m), yaw, cfg.pitch_deg)
        poses.append({"camera_to_world": c2w.reshape(-1).tolist(), "fov": float(fov_y_deg), "aspect": w / h})
    return {
        "camera_type": "perspective", "render_width": int(w), "render_height": int(h), "fps": fps,
        "seconds": frames / fps, "camera_path": poses, "keyframes": [],
    }


def projected_box(path: Mapping[str, Any], index: int, points: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel box (col0, row0, col1, row1; ends exclusive, clipped to the image) of world
    ``points`` (N, 3) in frame ``index`` of a nerfstudio camera path; None when any point is behind
    the camera or the box misses the image."""
    w, h = int(path["render_width"]), int(path["render_height"])
    pose = path["camera_path"][index]
    c2w = np.asarray(pose["camera_to_world"], dtype=np.float64).reshape(4, 4)
    f = 0.5 * h / math.tan(0.5 * math.radians(float(pose["fov"])))  # the pinhole `render` uses for a path pose
    cam = (np.asarray(points, dtype=np.float64) - c2w[:3, 3]) @ c2w[:3, :3]
    depth = -cam[:, 2]  # OpenGL: the camera looks down -z
    if not (depth > 0).all():
        return None
    # Rounded so that a point on a pixel edge stays on it whatever the last bit of the arithmetic.
    cols = np.round(0.5 * w + f * cam[:, 0] / depth, 6)
    rows = np.round(0.5 * h - f * cam[:, 1] / depth, 6)
    box = (max(0, math.floor(cols.min())), max(0, math.floor(rows.min())), min(w, math.ceil(cols.max())), min(h, math.ceil(rows.max())))
    return box if box[0] < box[2] and box[1] < box[3] else None
