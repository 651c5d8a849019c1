"""Camera paths: nerfstudio camera_path.json (frames and keyframes), errors, and the auto path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from blocknerf.errors import InputError
from partitioning import CameraArrays
from partitioning.layouts import heading_poses, orbit
from streaming.camera_path import CameraPath, auto_path, read_camera_path
from streaming.config import AutoPathConfig


def pose(x: float, y: float, z: float, yaw_deg: float) -> np.ndarray:
    """(4, 4) level camera at (x, y, z) looking along ``yaw_deg``."""
    return heading_poses(np.array([[x, y, z]]), np.array([math.radians(yaw_deg)]))[0]


def write(tmp_path: Path, doc: object, name: str = "camera_path.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_read_camera_path_frames(tmp_path: Path) -> None:
    # As nerfstudio's viewer writes it: camera_to_world row-major, fov vertical in degrees.
    doc = {
        "camera_type": "perspective",
        "render_height": 48,
        "render_width": 64,
        "fps": 24,
        "seconds": 0.125,
        "camera_path": [
            {"camera_to_world": [1, 0, 0, 1.5, 0, 1, 0, -2.0, 0, 0, 1, 3.0, 0, 0, 0, 1], "fov": 60, "aspect": 1.3333},
            {"camera_to_world": [0, -1, 0, 2.5, 1, 0, 0, -2.0, 0, 0, 1, 3.0, 0, 0, 0, 1], "fov": 50, "aspect": 1.3333},
            {"camera_to_world": [0, -1, 0, 3.5, 1, 0, 0, -2.0, 0, 0, 1, 3.0, 0, 0, 0, 1], "fov": 50, "aspect": 1.3333},
        ],
    }
    path = read_camera_path(write(tmp_path, doc))
    assert len(path) == 3 and path.fps == 24.0 and (path.width, path.height) == (64, 48)
    np.testing.assert_array_equal(path.positions[0], [1.5, -2.0, 3.0])
    np.testing.assert_array_equal(path.c2w[1, :3, 0], [0.0, 1.0, 0.0])  # first column of a row-major matrix
    view = path.view(0, path.size((1, 1)))
    # fov 60 deg vertical over 48 px: f = 24 / tan(30 deg) = 41.569
    assert view.intrinsics.fy == pytest.approx(41.5692, abs=1e-4) and view.intrinsics.fx == view.intrinsics.fy
    assert (view.intrinsics.cx, view.intrinsics.cy, view.intrinsics.width) == (32.0, 24.0, 64)
    assert path.view(2, (64, 48)).time_s == pytest.approx(2 / 24)
    # Another size keeps the vertical field of view.
    assert path.view(0, (320, 240)).intrinsics.fy == pytest.approx(120.0 / math.tan(math.radians(30.0)))


def test_frames_without_fps_use_seconds(tmp_path: Path) -> None:
    entry = {"camera_to_world": np.eye(4).reshape(-1).tolist(), "fov": 40}
    path = read_camera_path(write(tmp_path, {"seconds": 2.0, "camera_path": [entry] * 6}))
    assert path.fps == 3.0 and path.width is None


def test_keyframes_are_interpolated(tmp_path: Path) -> None:
    a, b = pose(0.0, 0.0, 2.0, 0.0), pose(10.0, 0.0, 2.0, 90.0)
    doc = {
        "render_width": 32,
        "render_height": 24,
        "fps": 10,
        "default_fov": 70,
        "default_transition_sec": 1.0,
        "keyframes": [
            {"matrix": a.reshape(-1).tolist(), "fov": 70, "aspect": 1.33, "override_transition_enabled": False},
            {"matrix": b.reshape(-1).tolist(), "fov": 50, "aspect": 1.33},
        ],
        "camera_path": [],
    }
    path = read_camera_path(write(tmp_path, doc))
    assert len(path) == 10  # one 1 s transition at 10 fps
    np.testing.assert_allclose(path.c2w[0], a, atol=1e-12)
    np.testing.assert_allclose(path.c2w[-1], b, atol=1e-12)
    # Halfway in time (frame 4.5 of 0..9): x = 5, yaw 45 deg, fov 60.
    mid = 0.5 * (path.positions[4] + path.positions[5])
    assert mid[0] == pytest.approx(5.0)
    forward = -path.c2w[:, :3, 2]
    yaw = np.degrees(np.arctan2(forward[:, 1], forward[:, 0]))
    assert 0.5 * (yaw[4] + yaw[5]) == pytest.approx(45.0, abs=0.01)
    assert np.all(np.diff(yaw) > 0)
    assert 0.5 * (path.fov_y_deg[4] + path.fov_y_deg[5]) == pytest.approx(60.0)


def test_three_keyframes_pass_through_each_keyframe(tmp_path: Path) -> None:
    poses = [pose(0.0, 0.0, 2.0, 0.0), pose(10.0, 5.0, 2.0, 20.0), pose(20.0, 0.0, 2.0, 0.0)]
    doc = {
        "fps": 4,
        "default_fov": 60,
        "default_transition_sec": 1.0,
        "keyframes": [
            {"matrix": poses[0].reshape(-1).tolist()},
            {"matrix": poses[1].reshape(-1).tolist(), "override_transition_enabled": True, "override_transition_sec": 1.0},
            {"matrix": poses[2].reshape(-1).tolist()},
        ],
    }
    path = read_camera_path(write(tmp_path, doc))
    assert len(path) == 8  # 2 s at 4 fps, spread over the keyframe timeline
    np.testing.assert_allclose(path.positions[0], poses[0][:3, 3], atol=1e-9)
    np.testing.assert_allclose(path.positions[-1], poses[2][:3, 3], atol=1e-9)
    assert path.positions[:, 1].max() > 4.5  # the spline goes up to the middle keyframe


def test_old_viewer_string_matrices_are_column_major(tmp_path: Path) -> None:
    m = pose(3.0, 4.0, 5.0, 30.0)
    as_string = json.dumps(m.T.reshape(-1).tolist())  # three.js matrix.elements
    doc = {"fps": 2, "seconds": 1.0, "keyframes": [{"matrix": as_string, "fov": 45}]}
    path = read_camera_path(write(tmp_path, doc))
    assert len(path) == 2
    np.testing.assert_allclose(path.c2w[0], m, atol=1e-12)


def test_round_trip(tmp_path: Path) -> None:
    c2w = np.stack([pose(x, 1.0, 2.0, 10.0 * x) for x in range(5)])
    original = CameraPath(c2w, np.linspace(40.0, 60.0, 5), fps=12.0, width=64, height=48)
    original.write(tmp_path / "p.json")
    back = read_camera_path(tmp_path / "p.json")
    np.testing.assert_allclose(back.c2w, original.c2w, atol=1e-12)
    np.testing.assert_allclose(back.fov_y_deg, original.fov_y_deg)
    assert (back.fps, back.width, back.height) == (12.0, 64, 48)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "must be a JSON object"),
        ({"fps": 30}, "no 'camera_path' frames and no 'keyframes'"),
        ({"camera_path": [{"camera_to_world": [1, 0, 0], "fov": 50}]}, "must be 16 numbers"),
        ({"camera_path": [{"fov": 50}]}, "camera_path[0]: missing 'camera_to_world'"),
        ({"camera_path": [{"camera_to_world": [2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], "fov": 50}]}, "not rigid"),
        ({"camera_path": [{"camera_to_world": np.eye(4).reshape(-1).tolist(), "fov": 190}]}, "'fov' must be the vertical"),
        ({"camera_path": [{"camera_to_world": np.eye(4).reshape(-1).tolist()}]}, "'fov' must be the vertical"),
        ({"camera_type": "fisheye", "camera_path": []}, "not supported"),
        ({"render_width": -3, "camera_path": []}, "'render_width' must be a positive integer"),
        ({"camera_path": "frames"}, "'camera_path' must be a list"),
    ],
    ids=["json", "not-object", "empty", "short-matrix", "no-matrix", "non-rigid", "fov-range", "no-fov", "fisheye", "bad-width", "not-list"],
)
def test_bad_camera_paths_name_the_file(tmp_path: Path, doc: object, message: str) -> None:
    path = tmp_path / "bad_path.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(InputError) as err:
        read_camera_path(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_camera_path(tmp_path / "nope.json")


# -- the automatic path ------------------------------------------------------------------------------
def rig_capture(step_m: float = 2.0) -> tuple[CameraArrays, np.ndarray]:
    """A car with a 4-camera rig driving east 40 m, then north 40 m; every 9th frame held out.
    Returns the cameras and the driven polyline's corners."""
    corners = np.array([[0.0, 0.0, 2.0], [40.0, 0.0, 2.0], [40.0, 40.0, 2.0]])
    stops, travel = [], []
    for (a, b) in zip(corners[:-1], corners[1:]):
        n = int(round(np.linalg.norm(b - a) / step_m))
        for t in np.arange(n) / n:
            stops.append(a + t * (b - a))
            travel.append(math.degrees(math.atan2(*(b - a)[1::-1])))
    stops.append(corners[-1])
    travel.append(travel[-1])
    c2w, times = [], []
    for i, (p, yaw) in enumerate(zip(stops, travel)):
        for k, h in enumerate((0.0, 90.0, 180.0, 270.0)):
            c2w.append(pose(*p, yaw + h))
            times.append(i * 0.4 + 0.01 * k)
    c2w = np.array(c2w)
    n = len(c2w)
    is_train = np.ones(n, bool)
    is_train[8::9] = False
    cams = CameraArrays(
        tuple(f"f{i}" for i in range(n)), c2w, np.tile([40.0, 40.0, 32.0, 24.0], (n, 1)), np.tile([64, 48], (n, 1)), is_train, np.array(times)
    )
    return cams, corners


def distance_to_polyline(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    best = np.full(len(points), np.inf)
    for a, b in zip(corners[:-1], corners[1:]):
        t = np.clip(((points - a) @ (b - a)) / np.dot(b - a, b - a), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * (b - a)), axis=1))
    return best


def test_auto_path_is_smooth_and_follows_the_trajectory() -> None:
    cams, corners = rig_capture()
    path = auto_path(cams, AutoPathConfig(speed_mps=5.0, fps=10.0, smoothing_m=8.0))
    p = path.positions
    # The whole 80 m at 5 m/s and 10 fps: 0.5 m steps.
    assert len(path) == 161 and path.source == "auto"
    steps = np.linalg.norm(np.diff(p, axis=0), axis=1)
    assert steps.mean() == pytest.approx(0.5, rel=0.05) and steps.max() / steps.min() < 1.05
    # Smooth: second differences are small against the step (a corner cut with ~8 m radius).
    assert np.linalg.norm(np.diff(p, 2, axis=0), axis=1).max() < 0.1 * steps.mean()
    # Near the driven path; it cuts the corner by a few metres at most.
    assert distance_to_polyline(p, corners).max() < 3.0
    assert np.linalg.norm(p[0] - corners[0]) < 1.0 and np.linalg.norm(p[-1] - corners[-1]) < 1.0
    # Looking along the road on the straight parts, level, with orthonormal rotations.
    forward = -path.c2w[:, :3, 2]
    straight_east = p[:, 0] < 25.0
    straight_north = p[:, 1] > 15.0
    assert np.degrees(np.arccos(np.clip(forward[straight_east] @ [1.0, 0.0, 0.0], -1, 1))).max() < 3.0
    assert np.degrees(np.arccos(np.clip(forward[straight_north] @ [0.0, 1.0, 0.0], -1, 1))).max() < 3.0
    rot = path.c2w[:, :3, :3]
    np.testing.assert_allclose(np.einsum("nij,nik->njk", rot, rot), np.tile(np.eye(3), (len(p), 1, 1)), atol=1e-9)
    # Orientation changes gradually through the corner: a 90 deg turn spread over ~10 m.
    yaw = np.degrees(np.unwrap(np.arctan2(forward[:, 1], forward[:, 0])))
    assert yaw[-1] - yaw[0] == pytest.approx(90.0, abs=0.5)
    assert np.abs(np.diff(yaw)).max() < 6.0 and np.abs(np.diff(yaw, 2)).max() < 0.6
    # The vertical field of view of the capture: 2 atan(24 / 40).
    assert path.fov_y_deg[0] == pytest.approx(math.degrees(2 * math.atan(24.0 / 40.0)))


@pytest.mark.parametrize(
    ("kwargs", "frames", "length"),
    [
        ({"frames": 20}, 20, 80.0),
        ({"seconds": 3.0}, 30, 80.0),
        ({"frames": 21, "speed_mps": 2.0}, 21, 4.0),
        ({"speed_mps": 20.0}, 41, 80.0),
    ],
    ids=["frames", "seconds", "frames-at-speed", "speed"],
)
def test_auto_path_timing(kwargs: dict[str, float], frames: int, length: float) -> None:
    cams, corners = rig_capture()
    path = auto_path(cams, AutoPathConfig(fps=10.0), **kwargs)
    assert len(path) == frames
    travelled = np.linalg.norm(np.diff(path.positions, axis=0), axis=1).sum()
    assert travelled == pytest.approx(length, rel=0.06)  # smoothing shortens the corner a little


def test_auto_path_of_single_cameras_keeps_their_orientation() -> None:
    cams = orbit(60, radius_m=50.0, altitude_m=20.0)
    cams = CameraArrays(cams.ids, cams.c2w, cams.intrinsics, cams.sizes, cams.is_train, np.arange(60.0))
    path = auto_path(cams, AutoPathConfig(speed_mps=10.0, fps=5.0, smoothing_m=2.0), frames=40)
    # Every camera of the orbit looks at the centre; so does the path.
    to_centre = -path.positions / np.linalg.norm(path.positions, axis=1, keepdims=True)
    forward = -path.c2w[:, :3, 2]
    assert np.degrees(np.arccos(np.clip((forward * to_centre).sum(axis=1), -1, 1))).max() < 3.0
    assert np.abs(np.linalg.norm(path.positions[:, :2], axis=1) - 50.0).max() < 1.0


def test_auto_path_needs_a_trajectory() -> None:
    one = CameraArrays.from_poses(np.stack([pose(0.0, 0.0, 2.0, h) for h in (0.0, 90.0)]))
    with pytest.raises(InputError, match="fewer than two distinct camera positions"):
        auto_path(one)
