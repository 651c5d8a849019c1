"""Camera rig paths through the synthetic city.

A car drives every street in both directions (right-hand traffic, ``drive_offset_m`` right of the
centre line) and stops every ``spacing_m``; at each stop the rig's cameras (``headings_deg`` relative
to the driving direction, pitched up by ``pitch_deg``) take one frame each. The reverse pass is
staggered by half a spacing, so the two passes interleave. Every ``test_every``-th frame of this
drive is held out. A second, separate pass drives ``test_offset_m`` further right (towards the kerb),
every ``test_offset_every`` stops; all of its frames are held out, so they measure novel views away
from the training poses.

Timestamps: ``start_time_s`` at the first stop, then ``spacing_m / speed_mps`` between stops, 10 ms
between the rig's cameras, 20 s to turn into the next street; the offset pass starts a minute after
the drive. The change capture repeats the same plan around the changed regions only, shifted to
start ``change_delay_s`` after the original capture's last frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from blocknerf.synth.city import ChangeRegion, City, Street

CAMERA_INTERVAL_S = 0.01
TURN_S = 20.0
OFFSET_PASS_GAP_S = 60.0


@dataclass(frozen=True, eq=False)
class RigView:
    """One frame the rig takes."""

    name: str
    """Image stem, e.g. ``ns1f_p012_h090`` (street ns1, forward pass, stop 12, heading 90)."""
    c2w: np.ndarray
    """(4, 4) float64 camera-to-world, OpenGL convention."""
    timestamp: float
    split: Literal["train", "test"]
    trajectory: Literal["drive", "offset"]
    street: str
    direction: int
    """+1 when driving towards increasing coordinate along the street, -1 the other way."""
    stop: int
    heading_deg: float

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3]


def look(position: Sequence[float], yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """(4, 4) camera-to-world (OpenGL: x right, y up, looking down -z) of a camera at ``position``
    looking towards ``yaw_deg`` (counter-clockwise from +x, i.e. from east) and pitched up by
    ``pitch_deg``, with no roll."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, position
    return c2w


def drive_plan(city: City, *, regions: Sequence[ChangeRegion] = (), margin_m: float = 0.0) -> list[RigView]:
    """Every frame of the capture, in time order: the drive, then the offset pass.

    With ``regions``, keep only stops within ``radius_m + margin_m`` of a region's centre (the change
    capture); its held-out every-Nth frames are then counted among the kept frames, and its offset
    pass uses ``change_offset_every``.
    """
    cfg = city.config
    keep = _area_filter(regions, margin_m)
    views: list[RigView] = []
    clock = cfg.start_time_s
    n_drive = 0
    for street in _captured_streets(city):
        for direction in (1, -1):
            for stop, s in enumerate(_stops(street, direction, cfg.spacing_m, 0.0 if direction > 0 else 0.5)):
                xy = _point(street, direction, s, cfg.drive_offset_m)
                if keep(xy):
                    for cam, heading in enumerate(cfg.headings_deg):
                        split = "test" if n_drive % cfg.test_every == cfg.test_every - 1 else "train"
                        views.append(_view(city, street, direction, stop, heading, xy, clock + cam * CAMERA_INTERVAL_S,
                                           split, "drive"))
                        n_drive += 1
                clock += cfg.spacing_m / cfg.speed_mps
            clock += TURN_S
    clock += OFFSET_PASS_GAP_S
    every = cfg.change_offset_every if regions else cfg.test_offset_every
    step = every * cfg.spacing_m
    for street in _captured_streets(city):
        for direction in (1, -1):
            for stop, s in enumerate(_stops(street, direction, step, 0.5)):
                xy = _point(street, direction, s, cfg.drive_offset_m + cfg.test_offset_m)
                if keep(xy):
                    for cam, heading in enumerate(cfg.headings_deg):
                        views.append(_view(city, street, direction, stop, heading, xy, clock + cam * CAMERA_INTERVAL_S,
                                           "test", "offset"))
                clock += step / cfg.speed_mps
            clock += TURN_S
    return views


def _captured_streets(city: City) -> list[Street]:
    """The streets the capture drives: ``streets`` of the config, or all."""
    wanted = city.config.streets
    return [s for s in city.streets if not wanted or s.name in wanted]


def _stops(street: Street, direction: int, step: float, phase: float) -> list[float]:
    """Positions along the street, ``step`` apart, starting ``phase * step`` from the entry end."""
    length = street.end_m - street.start_m
    count = int(math.floor((length - phase * step) / step + 1e-9)) + 1
    offsets = [(phase + k) * step for k in range(max(count, 0))]
    if direction > 0:
        return [street.start_m + o for o in offsets]
    return [street.end_m - o for o in offsets]


def _point(street: Street, direction: int, s: float, lateral_m: float) -> tuple[float, float]:
    """(x, y) at ``s`` along the street, ``lateral_m`` to the right of the driving direction."""
    if street.axis == "ns":  # driving north (+1): right is east
        return (street.offset_m + direction * lateral_m, s)
    return (s, street.offset_m - direction * lateral_m)  # driving east (+1): right is south


def _travel_yaw(street: Street, direction: int) -> float:
    if street.axis == "ns":
        return 90.0 if direction > 0 else 270.0
    return 0.0 if direction > 0 else 180.0


def _view(
    city: City, street: Street, direction: int, stop: int, heading: float, xy: tuple[float, float],
    timestamp: float, split: Literal["train", "test"], trajectory: Literal["drive", "offset"],
) -> RigView:
    cfg = city.config
    tag = "p" if trajectory == "drive" else "o"
    h = int(round(heading)) % 360
    name = f"{street.name}{'f' if direction > 0 else 'b'}_{tag}{stop:03d}_h{h:03d}"
    c2w = look((xy[0], xy[1], cfg.camera_height_m), _travel_yaw(street, direction) + heading, cfg.pitch_deg)
    return RigView(name, c2w, round(timestamp, 6), split, trajectory, street.name, direction, stop, float(heading))


def _area_filter(regions: Sequence[ChangeRegion], margin_m: float):  # noqa: ANN202
    if not regions:
        return lambda xy: True
    centres = np.array([r.centre_xy for r in regions], dtype=np.float64)
    reach = np.array([r.radius_m + margin_m for r in regions], dtype=np.float64)
    return lambda xy: bool((np.hypot(centres[:, 0] - xy[0], centres[:, 1] - xy[1]) <= reach).any())


__all__ = ["RigView", "drive_plan", "look"]
