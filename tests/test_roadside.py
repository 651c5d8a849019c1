"""Where the demo places its object (a pavement beside the drive) and the drive up to it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blocknerf.composition.placement import rotation
from blocknerf.presentation.roadside import LAST_BEARING_DEG, ObjectExtent, pass_by_path, projected_box, roadside_spot
from blocknerf.synth import ChangeRegion, SynthConfig, build_city
from blocknerf.synth.objects import build_object

CONFIG = SynthConfig(grid=(1, 1))
KIOSK = ObjectExtent.from_object_json(build_object("kiosk").to_dict())


@pytest.fixture(scope="module")
def city():  # noqa: ANN201
    return build_city(CONFIG)


def test_the_spot_is_the_middle_of_the_pavement_halfway_along_the_street_nearest_the_cameras(city) -> None:  # noqa: ANN001
    east = next(s for s in city.streets if s.axis == "ns" and s.offset_m > 0)
    halfway = 0.5 * (east.start_m + east.end_m)
    # Cameras driving north in the east street's lane: its east pavement is the nearest.
    cameras = np.array([[east.offset_m + CONFIG.drive_offset_m, y, 2.0] for y in np.linspace(east.start_m, east.end_m, 9)])
    spot = roadside_spot(city, cameras)
    # 10 m from the centre line to the building line, of which 4 m pavement: its middle is 8 m out.
    assert spot.street == east.name and spot.position == pytest.approx((east.offset_m + 8.0, halfway, 0.0))
    assert spot.lane == pytest.approx((east.offset_m + CONFIG.drive_offset_m, halfway)) and spot.travel == pytest.approx((0.0, 1.0))
    assert spot.lateral_m == pytest.approx(6.5)
    # The object's front (south, -y, in its own frame) turned by the heading faces the road (west).
    assert spot.heading_deg == pytest.approx(90.0)
    assert rotation(spot.heading_deg) @ np.array([0.0, -1.0, 0.0]) == pytest.approx([-1.0, 0.0, 0.0])


def test_a_pavement_inside_a_change_is_not_taken(city) -> None:  # noqa: ANN001
    east = next(s for s in city.streets if s.axis == "ns" and s.offset_m > 0)
    cameras = np.array([[east.offset_m + CONFIG.drive_offset_m, 0.0, 2.0]])
    taken = roadside_spot(city, cameras)
    works = ChangeRegion(taken.position[:2], 5.0, "construction")
    other = roadside_spot(city, cameras, avoid=[works], clearance_m=KIOSK.half_diagonal_m)
    assert math.dist(other.position[:2], works.centre_xy) > 5.0 + KIOSK.half_diagonal_m
    everywhere = ChangeRegion((0.0, 0.0), 1000.0, "construction")
    with pytest.raises(ValueError, match="inside a change"):
        roadside_spot(city, cameras, avoid=[everywhere])


def test_the_drive_up_to_the_object_keeps_it_whole_on_the_right_and_brings_it_closer(city) -> None:  # noqa: ANN001
    spot = roadside_spot(city, np.zeros((1, 3)))
    size = (96, 72)
    path = pass_by_path(city, spot, frames=4, size=size, fov_y_deg=69.0)
    assert (path["render_width"], path["render_height"], len(path["camera_path"])) == (96, 72, 4)
    corners = spot.to_world(KIOSK, KIOSK.corners())
    # The kiosk's base is on the ground at the spot, its top 2.8 m up.
    assert corners[:, 2].min() == pytest.approx(0.0, abs=1e-6) and corners[:, 2].max() == pytest.approx(2.8, abs=1e-6)
    boxes = [projected_box(path, i, corners) for i in range(4)]
    widths = [b[2] - b[0] for b in boxes]
    assert widths == sorted(widths) and widths[-1] > widths[0]
    for c0, r0, c1, r1 in boxes:
        # Right of the middle, and inside the picture with a margin (not clipped by it).
        assert size[0] / 2 < c0 and c1 < size[0] and 0 < r0 and r1 < size[1]
    # The last frame sees the object's middle LAST_BEARING_DEG off the view axis.
    c2w = np.reshape(path["camera_path"][-1]["camera_to_world"], (4, 4))
    to_spot = np.asarray(spot.position[:2]) - c2w[:2, 3]
    forward = -c2w[:2, 2] / np.linalg.norm(c2w[:2, 2])
    bearing = math.degrees(math.acos(to_spot @ forward / np.linalg.norm(to_spot)))
    assert bearing == pytest.approx(LAST_BEARING_DEG, abs=0.01)


def test_a_projected_box_is_the_pinhole_the_renderer_uses():
    # A camera at the origin looking down -z, 100x100 pixels, 90 degree vertical fov: f = 50 px.
    # (1, 0.5, -2) lands at col 50 + 50 * 1 / 2 = 75, row 50 - 50 * 0.5 / 2 = 37.5; (-1, -0.5, -2)
    # at col 25, row 62.5: the box of whole pixels covering both is cols 25..75, rows 37..63.
    path = {"render_width": 100, "render_height": 100, "camera_path": [{"camera_to_world": np.eye(4).reshape(-1).tolist(), "fov": 90.0}]}
    assert projected_box(path, 0, np.array([[1.0, 0.5, -2.0], [-1.0, -0.5, -2.0]])) == (25, 37, 75, 63)
    assert projected_box(path, 0, np.array([[1.0, 0.5, -2.0], [0.0, 0.0, 1.0]])) is None  # a point behind the camera
    assert projected_box(path, 0, np.array([[50.0, 0.0, -1.0], [60.0, 0.0, -1.0]])) is None  # off the picture
