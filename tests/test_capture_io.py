"""Capture I/O: transforms.json in the instant-ngp and nerfstudio conventions, the fox capture,
bad input, and the OpenCV distortion model of the intrinsics."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blocknerf.capture.frames import Capture, Frame, Intrinsics
from blocknerf.capture.transforms import capture_from_dict, read_capture, write_capture
from blocknerf.errors import CaptureWarning, InputError
from blocknerf.capture.geo import LLA
from blocknerf.capture.images import save_image
from blocknerf.capture.rays import distort_points, undistort_points

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FOX_K = (0.0578421, -0.0805099, -0.000980296, 0.00015575)


# -- helpers ---------------------------------------------------------------------------------------


def png(path: Path, width: int, height: int) -> Path:
    """Write a small gradient image of ``width`` x ``height`` pixels."""
    ramp = np.linspace(0.0, 1.0, width * height * 3).reshape(height, width, 3)
    save_image(path, ramp)
    return path


def pose(i: int) -> np.ndarray:
    """(4, 4) rigid camera-to-world: a turn of 0.3 * i rad about z and a tilt about x, moved along x."""
    a, b = 0.3 * i, 0.1 * i
    rz = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)], [0.0, math.sin(b), math.cos(b)]])
    m = np.eye(4)
    m[:3, :3] = rz @ rx
    m[:3, 3] = [1.5 * i, -0.25 * i, 2.0 + 0.125 * i]
    return m


def write_doc(root: Path, doc: Any, name: str = "transforms.json") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def read_quietly(path: Path) -> Capture:
    """read_capture that fails the test on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read_capture(path)


SHARED_K = Intrinsics(fx=60.5, fy=61.25, cx=15.75, cy=12.125, width=32, height=24, k1=-0.125, k2=0.0375, p1=1e-3, p2=-2e-4)
OTHER_K = Intrinsics(fx=40.0, fy=40.0, cx=8.0, cy=6.0, width=16, height=12)


def full_capture(root: Path, *, per_frame: bool) -> Capture:
    """A capture using every field: distortion, timestamps, exposure, GPS, splits, appearance, depth."""
    frames = []
    for i in range(4):
        k = OTHER_K if per_frame and i % 2 else SHARED_K
        image = png(root / "images" / f"cam{i}" / f"{i:04d}.png", k.width, k.height)
        depth = root / "depth" / f"{i:04d}.npy"
        frames.append(
            Frame(
                id=f"images/cam{i}/{i:04d}.png",
                image_path=image,
                intrinsics=k,
                c2w=pose(i),
                appearance_index=7 - i,  # not the loading order: must survive as written
                timestamp=1_700_000_000.0 + 0.1 * i if i != 2 else None,
                exposure=[0.5, 1.0, 2.0, None][i],
                gps=LLA(37.7764 + 1e-5 * i, -122.4346 - 2e-5 * i, 40.0 + 0.5 * i) if i != 3 else None,
                split=["train", "test", None, "train"][i],
                depth_path=depth if i < 2 else None,
                extra={"sharpness": 30.5 + i, "mask_path": f"masks/{i}.png"} if i == 0 else {},
            )
        )
    return Capture(
        root=root.resolve(),
        frames=tuple(frames),
        geo_origin=LLA(37.7764, -122.4346, 40.0),
        extra={"aabb_scale": 16, "applied_transform": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]},
    )


def extensionless_capture(root: Path) -> Capture:
    """NeRF-synthetic style ids: file paths without extension, camera_angle_x only."""
    k = Intrinsics.from_fov(20, 20, 0.6911112070083618)
    frames = tuple(
        Frame(f"train/r_{i}", png(root / "train" / f"r_{i}.png", 20, 20), k, pose(i), i) for i in range(3)
    )
    return Capture(root=root.resolve(), frames=frames)


def minimal_capture(root: Path) -> Capture:
    frames = tuple(Frame(f"{i}.png", png(root / f"{i}.png", 16, 12), OTHER_K, pose(i), i) for i in range(2))
    return Capture(root=root.resolve(), frames=frames)


# -- write -> read ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "filename"),
    [
        pytest.param(lambda r: full_capture(r, per_frame=False), None, id="all-fields-global-intrinsics"),
        pytest.param(lambda r: full_capture(r, per_frame=True), None, id="all-fields-per-frame-intrinsics"),
        pytest.param(minimal_capture, None, id="minimal"),
        pytest.param(extensionless_capture, None, id="ids-without-extension"),
        pytest.param(lambda r: full_capture(r, per_frame=True), "transforms_custom.json", id="other-file-name"),
    ],
)
def test_write_then_read_is_lossless(tmp_path: Path, make: Any, filename: str | None) -> None:
    capture = make(tmp_path)
    written = write_capture(capture, tmp_path if filename is None else tmp_path / filename)
    assert written == tmp_path / (filename or "transforms.json")
    back = read_quietly(written)
    assert back == capture
    for a, b in zip(back.frames, capture.frames, strict=True):  # field by field, for a readable failure
        assert a.id == b.id
        assert a.intrinsics == b.intrinsics
        np.testing.assert_array_equal(a.c2w, b.c2w)
        assert (a.appearance_index, a.timestamp, a.exposure, a.gps, a.split) == (
            b.appearance_index, b.timestamp, b.exposure, b.gps, b.split,
        )
        assert (a.depth_path, a.extra) == (b.depth_path, b.extra)
    assert back.geo_origin == capture.geo_origin
    assert back.extra == capture.extra
    assert back.missing == ()
    # Writing what was read gives the same document.
    again = write_capture(back, tmp_path / "again.json")
    assert json.loads(again.read_text()) == json.loads(written.read_text())


def test_written_file_uses_the_documented_keys(tmp_path: Path) -> None:
    doc = json.loads(write_capture(full_capture(tmp_path, per_frame=False), tmp_path).read_text())
    assert (doc["fl_x"], doc["fl_y"], doc["cx"], doc["cy"], doc["w"], doc["h"]) == (60.5, 61.25, 15.75, 12.125, 32, 24)
    assert (doc["k1"], doc["k2"], doc["p1"], doc["p2"]) == (-0.125, 0.0375, 1e-3, -2e-4)
    assert doc["camera_angle_x"] == pytest.approx(2.0 * math.atan(16.0 / 60.5))
    assert doc["geo_origin"] == {"lat": 37.7764, "lon": -122.4346, "alt": 40.0}
    assert doc["train_filenames"] == ["images/cam0/0000.png", "images/cam3/0003.png"]
    assert doc["test_filenames"] == ["images/cam1/0001.png"]
    first = doc["frames"][0]
    assert first["gps"] == {"lat": 37.7764, "lon": -122.4346, "alt": 40.0}
    assert first["depth_file_path"] == "depth/0000.npy"
    assert first["sharpness"] == 30.5
    assert "fl_x" not in first  # shared intrinsics are written once, at the top level


# -- hand-written files ----------------------------------------------------------------------------


def test_nerfstudio_file_with_per_frame_overrides(tmp_path: Path) -> None:
    for name, (w, h) in {"frame_00001.png": (32, 24), "frame_00002.png": (32, 24), "frame_00003.png": (16, 12)}.items():
        png(tmp_path / "images" / name, w, h)
    doc = {
        "camera_model": "OPENCV",
        "fl_x": 30.0, "fl_y": 31.0, "cx": 16.5, "cy": 11.5, "w": 32, "h": 24,
        "k1": 0.01, "k2": -0.002, "p1": 0.0003, "p2": -0.0004,
        "applied_transform": [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]],
        "frames": [
            {"file_path": "images/frame_00001.png", "transform_matrix": pose(1).tolist(), "colmap_im_id": 1},
            # Overrides only the focal length: the other intrinsics come from the top level.
            {"file_path": "./images/frame_00002.png", "transform_matrix": pose(2).tolist(), "fl_x": 28.0, "fl_y": 29.0},
            # A smaller image with all its own intrinsics and no distortion.
            {
                "file_path": "images/frame_00003.png", "transform_matrix": pose(3).tolist()[:3],
                "fl_x": 15.0, "fl_y": 15.0, "cx": 8.0, "cy": 6.0, "w": 16, "h": 12, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
            },
        ],
        "train_filenames": ["images/frame_00001.png", "images/frame_00003.png"],
        "test_filenames": ["images/frame_00002.png"],
    }
    cap = read_quietly(write_doc(tmp_path, doc))
    assert [f.id for f in cap.frames] == ["images/frame_00001.png", "images/frame_00002.png", "images/frame_00003.png"]
    assert cap.frames[0].intrinsics == Intrinsics(30.0, 31.0, 16.5, 11.5, 32, 24, 0.01, -0.002, 0.0003, -0.0004)
    assert cap.frames[1].intrinsics == Intrinsics(28.0, 29.0, 16.5, 11.5, 32, 24, 0.01, -0.002, 0.0003, -0.0004)
    assert cap.frames[2].intrinsics == Intrinsics(15.0, 15.0, 8.0, 6.0, 16, 12)
    for i, f in enumerate(cap.frames, start=1):
        np.testing.assert_array_equal(f.c2w, pose(i))  # a 3x4 matrix gets its [0, 0, 0, 1] row
        assert f.image_path == (tmp_path / "images" / f"frame_0000{i}.png").resolve()
    assert [f.split for f in cap.frames] == ["train", "test", "train"]
    assert [f.appearance_index for f in cap.frames] == [0, 1, 2]  # loading order when not given
    assert cap.frames[0].extra == {"colmap_im_id": 1}
    assert cap.extra == {"applied_transform": doc["applied_transform"]}
    assert cap.geo_origin is None and all(f.gps is None for f in cap.frames)


def test_instant_ngp_colmap_file(tmp_path: Path) -> None:
    """colmap2nerf output: camera_angle_x/y beside fl_x/fl_y (fl wins), './' paths, sharpness, aabb_scale."""
    for i in range(2):
        png(tmp_path / "images" / f"{i:04d}.png", 27, 48)
    doc = {
        "camera_angle_x": 0.7481849417937728, "camera_angle_y": 1.2193576119562444,
        "fl_x": 34.388, "fl_y": 34.36225, "k1": FOX_K[0], "k2": FOX_K[1], "p1": FOX_K[2], "p2": FOX_K[3],
        "cx": 13.86395, "cy": 24.1317, "w": 27.0, "h": 48.0, "aabb_scale": 4,
        "frames": [
            {"file_path": f"./images/{i:04d}.png", "sharpness": 31.5 + i, "transform_matrix": pose(i).tolist()} for i in range(2)
        ],
    }
    cap = read_quietly(write_doc(tmp_path, doc))
    assert [f.id for f in cap.frames] == ["images/0000.png", "images/0001.png"]
    assert cap.frames[0].intrinsics == Intrinsics(34.388, 34.36225, 13.86395, 24.1317, 27, 48, *FOX_K)
    assert [f.extra for f in cap.frames] == [{"sharpness": 31.5}, {"sharpness": 32.5}]
    assert cap.extra == {"aabb_scale": 4}
    assert all(f.split is None and f.is_train for f in cap.frames)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        # f = w / 2 / tan(angle / 2); the principal point defaults to the image centre.
        pytest.param({"camera_angle_x": 2.0 * math.atan(0.5)}, (40.0, 40.0, 20.0, 15.0), id="camera_angle_x-only"),
        pytest.param(
            {"camera_angle_x": 2.0 * math.atan(0.5), "camera_angle_y": 2.0 * math.atan(0.25)},
            (40.0, 60.0, 20.0, 15.0), id="camera_angle_x-and-y",
        ),
        pytest.param({"camera_angle_y": 2.0 * math.atan(0.5)}, (30.0, 30.0, 20.0, 15.0), id="camera_angle_y-only"),
        pytest.param({"fl_x": 50.0}, (50.0, 50.0, 20.0, 15.0), id="fl_x-only"),
        pytest.param({"fl_x": 50.0, "camera_angle_x": 2.0 * math.atan(0.5)}, (50.0, 50.0, 20.0, 15.0), id="fl_x-wins"),
        pytest.param({"fl_x": 50.0, "fl_y": 52.0, "cx": 19.0, "cy": 14.0}, (50.0, 52.0, 19.0, 14.0), id="full-pinhole"),
    ],
)
def test_focal_length_conventions(tmp_path: Path, keys: dict[str, float], expected: tuple[float, ...]) -> None:
    """Image size from the file itself (no w/h keys), focal length from whichever key is given."""
    png(tmp_path / "train" / "r_0.png", 40, 30)
    doc = {**keys, "frames": [{"file_path": "./train/r_0", "rotation": 0.0126, "transform_matrix": pose(0).tolist()}]}
    cap = read_quietly(write_doc(tmp_path, doc))
    (frame,) = cap.frames
    k = frame.intrinsics
    assert (k.fx, k.fy, k.cx, k.cy) == pytest.approx(expected, abs=1e-12)
    assert (k.width, k.height, k.has_distortion) == (40, 30, False)
    assert frame.id == "train/r_0" and frame.image_path.name == "r_0.png"
    assert frame.extra == {"rotation": 0.0126}
    # ... and it survives a round trip.
    assert read_quietly(write_capture(cap, tmp_path / "out.json")) == cap


def test_records_without_images_keep_every_frame(tmp_path: Path) -> None:
    """capture_from_dict(require_images=False): a block store's record on a machine without images."""
    doc = {"fl_x": 10.0, "w": 8, "h": 6, "frames": [{"file_path": f"gone/{i}.png", "transform_matrix": pose(i).tolist()} for i in range(3)]}
    cap = capture_from_dict(doc, root=tmp_path, where="record", require_images=False)
    assert [f.id for f in cap.frames] == ["gone/0.png", "gone/1.png", "gone/2.png"]
    assert cap.missing == ()


# -- the fox capture (real data) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size", "fx"),
    [pytest.param("fox_8x", (135, 240), 171.94, id="fox_8x"), pytest.param("fox_4x", (270, 480), 343.88, id="fox_4x")],
)
def test_fox_loads_present_frames_with_one_warning(name: str, size: tuple[int, int], fx: float) -> None:
    root = DATA / name
    if not (root / "transforms.json").is_file():
        pytest.skip(f"{root} is not available")
    listed = json.loads((root / "transforms.json").read_text())["frames"]
    present = sorted(p.name for p in (root / "images").iterdir())
    with pytest.warns(CaptureWarning) as record:
        cap = read_capture(root)
    assert len(record) == 1
    assert "17 of 67 listed images are missing" in str(record[0].message)
    assert str(root / "transforms.json") in str(record[0].message)
    assert (len(listed), len(present), len(cap)) == (67, 50, 50)
    assert sorted(Path(f.id).name for f in cap.frames) == present
    assert len(cap.missing) == 17 and not set(cap.missing) & {f.id for f in cap.frames}
    assert (len(cap.train_frames), len(cap.test_frames)) == (43, 7)
    (k,) = {f.intrinsics for f in cap.frames}
    assert (k.fx, (k.width, k.height), k.distortion) == (fx, size, FOX_K)
    assert cap.extra == {"aabb_scale": 4}
    first = next(e for e in listed if e["file_path"] == cap.frames[0].id)
    np.testing.assert_array_equal(cap.frames[0].c2w, np.array(first["transform_matrix"]))
    assert cap.frames[0].extra == {"sharpness": first["sharpness"]}


# -- bad input -------------------------------------------------------------------------------------

IDENTITY = np.eye(4).tolist()


def frame(path: str = "a.png", matrix: Any = IDENTITY, **keys: Any) -> dict[str, Any]:
    return {"file_path": path, "transform_matrix": matrix, **keys}


def doc_with(*frames: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"fl_x": 20.0, "w": 16, "h": 12, **top, "frames": list(frames) if frames else [frame()]}


BAD_DOCS = [
    pytest.param("{\"frames\": [", "malformed JSON at line 1", id="malformed-json"),
    pytest.param("[]", "top level must be a JSON object", id="top-level-list"),
    pytest.param({"fl_x": 20.0}, "missing key 'frames'", id="no-frames-key"),
    pytest.param({"frames": {}}, "'frames' must be a list", id="frames-not-a-list"),
    pytest.param({"frames": []}, "no frames", id="zero-frames"),
    pytest.param(doc_with(frame(), "a.png"), "frame 1 is not a JSON object", id="frame-not-object"),
    pytest.param(doc_with({"file_path": "a.png"}), "frame 0: missing key 'transform_matrix'", id="no-transform-matrix"),
    pytest.param(doc_with({"transform_matrix": IDENTITY}), "frame 0: missing key 'file_path'", id="no-file-path"),
    pytest.param(doc_with(frame(matrix=np.diag([2.0, 2.0, 2.0, 1.0]).tolist())), "not rigid", id="scaled-pose"),
    pytest.param(doc_with(frame(matrix=[[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])), "not rigid", id="sheared-pose"),
    pytest.param(doc_with(frame(matrix=np.diag([1.0, 1.0, -1.0, 1.0]).tolist())), "reflection", id="reflected-pose"),
    pytest.param(doc_with(frame(matrix=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]])), "last row", id="projective-pose"),
    pytest.param(
        '{"fl_x": 20, "w": 16, "h": 12, "frames": [{"file_path": "a.png", '
        '"transform_matrix": [[1,0,0,NaN],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}',
        "frame 'a.png': transform_matrix contains non-finite values", id="nan-pose",
    ),
    pytest.param(doc_with(frame(matrix=np.eye(3).tolist())), "must be a 4x4 list of numbers", id="3x3-pose"),
    pytest.param(doc_with(frame(matrix=[["1", 0, 0, 0]] * 4)), "must be a 4x4 list of numbers", id="string-pose"),
    pytest.param({"w": 16, "h": 12, "frames": [frame()]}, "frame 'a.png': no focal length", id="no-focal-length"),
    pytest.param(doc_with(fl_x=-5.0), "bad intrinsics (focal length", id="negative-focal-length"),
    pytest.param(doc_with(fl_x="20"), "'fl_x' must be a finite number", id="focal-length-string"),
    pytest.param(doc_with(w=16.5), "not a whole number of pixels", id="fractional-width"),
    pytest.param(doc_with(w=0), "bad intrinsics (image size 0x12", id="zero-width"),
    pytest.param(doc_with(camera_model="OPENCV_FISHEYE"), "camera_model 'OPENCV_FISHEYE' is not supported", id="fisheye"),
    pytest.param(doc_with(frame(gps={"lat": 1.0})), "frame 'a.png': gps: expected", id="gps-without-lon"),
    pytest.param(doc_with(geo_origin={"lat": 91.0, "lon": 0.0}), "geo_origin: bad coordinate: latitude 91.0", id="geo-origin-latitude"),
    pytest.param(doc_with(frame(appearance_id=-1)), "appearance_id must be a non-negative integer", id="negative-appearance"),
    pytest.param(doc_with(frame(timestamp="noon")), "timestamp must be a finite number", id="timestamp-string"),
    pytest.param(doc_with(train_filenames="a.png"), "'train_filenames' must be a list", id="split-not-a-list"),
    pytest.param(doc_with(test_filenames=["b.png"]), "not the file_path of any frame (first: b.png)", id="split-names-unknown-image"),
    pytest.param(doc_with(train_filenames=["a.png"], test_filenames=["./a.png"]), "'a.png' is in both", id="split-twice"),
    pytest.param(doc_with(frame(), frame("./a.png")), "frame 'a.png' is listed more than once", id="duplicate-frame"),
]


@pytest.mark.parametrize(("doc", "problem"), BAD_DOCS)
def test_bad_transforms_raise_one_line_naming_file(tmp_path: Path, doc: Any, problem: str) -> None:
    png(tmp_path / "a.png", 16, 12)
    path = write_doc(tmp_path, doc)
    with pytest.raises(InputError) as info:
        read_capture(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("setup", "target", "problem"),
    [
        pytest.param(lambda d: None, "nowhere/transforms.json", "file not found", id="missing-file"),
        pytest.param(lambda d: (d / "empty").mkdir(), "empty", "file not found", id="directory-without-transforms"),
    ],
)
def test_missing_transforms_file(tmp_path: Path, setup: Any, target: str, problem: str) -> None:
    setup(tmp_path)
    with pytest.raises(InputError, match=problem) as info:
        read_capture(tmp_path / target)
    assert info.value.path is not None and info.value.path.endswith("transforms.json")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content",
    [pytest.param(b"this is not an image", id="not-an-image"), pytest.param(b"", id="empty-file")],
)
def test_unreadable_image_without_size_names_the_image(tmp_path: Path, content: bytes) -> None:
    """Without w/h the size comes from the image header, so an unknown image format fails at load."""
    (tmp_path / "a.png").write_bytes(content)
    write_doc(tmp_path, {"camera_angle_x": 1.0, "frames": [frame()]})
    with pytest.raises(InputError, match="unreadable image") as info:
        read_capture(tmp_path)
    assert info.value.path == str(tmp_path.resolve() / "a.png")
    assert "\n" not in str(info.value)


def test_no_existing_image_is_one_error_and_no_warning(tmp_path: Path) -> None:
    path = write_doc(tmp_path, doc_with(frame("x.png"), frame("y.png")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning here would be a second message for one problem
        with pytest.raises(InputError, match=r"none of the 2 listed images exists \(first: x.png\)") as info:
            read_capture(path)
    assert info.value.path == str(path)


def test_missing_images_are_skipped_with_one_warning(tmp_path: Path) -> None:
    png(tmp_path / "a.png", 16, 12)
    doc = doc_with(frame("gone1.png"), frame(), frame("gone2.png"), test_filenames=["gone2.png"])
    with pytest.warns(CaptureWarning, match=r"transforms.json: 2 of 3 listed images are missing \(first: gone1.png\); loaded 1 frames") as record:
        cap = read_capture(write_doc(tmp_path, doc))
    assert len(record) == 1
    assert [f.id for f in cap.frames] == ["a.png"] and cap.missing == ("gone1.png", "gone2.png")


def test_ignored_distortion_terms_warn(tmp_path: Path) -> None:
    png(tmp_path / "a.png", 16, 12)
    with pytest.warns(CaptureWarning, match="distortion k3 is ignored") as record:
        read_capture(write_doc(tmp_path, doc_with(k3=0.01)))
    assert len(record) == 1


# -- intrinsics and the OpenCV distortion model ----------------------------------------------------


def test_intrinsics_from_fov_and_scaled() -> None:
    k = Intrinsics.from_fov(200, 100, math.radians(90.0))  # f = 100 / tan(45 deg) = 100
    assert (k.fx, k.fy, k.cx, k.cy) == pytest.approx((100.0, 100.0, 100.0, 50.0))
    half = Intrinsics(100.0, 90.0, 49.5, 30.25, 200, 100, *FOX_K).scaled(100, 50)
    assert half == Intrinsics(50.0, 45.0, 24.75, 15.125, 100, 50, *FOX_K)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"width": 0}, id="zero-width"),
        pytest.param({"fx": 0.0}, id="zero-focal-length"),
        pytest.param({"k1": math.nan}, id="nan-distortion"),
        pytest.param({"cx": math.inf}, id="infinite-principal-point"),
    ],
)
def test_intrinsics_reject_invalid_values(kwargs: dict[str, float]) -> None:
    values = {"fx": 10.0, "fy": 10.0, "cx": 5.0, "cy": 5.0, "width": 10, "height": 10, **kwargs}
    with pytest.raises(ValueError):
        Intrinsics(**values)


def test_distortion_matches_hand_computed_values() -> None:
    k = Intrinsics(1.0, 1.0, 0.0, 0.0, 1, 1, k1=0.1, k2=0.01, p1=0.001, p2=0.002)
    # x=0.1, y=0.2: r2 = 0.05, radial = 1 + 0.1*0.05 + 0.01*0.0025 = 1.005025
    # xd = 0.1*1.005025 + 2*0.001*0.1*0.2 + 0.002*(0.05 + 2*0.01) = 0.1005025 + 0.00004 + 0.00014
    # yd = 0.2*1.005025 + 0.001*(0.05 + 2*0.04) + 2*0.002*0.1*0.2 = 0.201005 + 0.00013 + 0.00008
    xd, yd = distort_points(np.array([0.1]), np.array([0.2]), k)
    assert (xd[0], yd[0]) == pytest.approx((0.1006825, 0.201215), abs=1e-15)
    x, y = undistort_points(xd, yd, k)
    assert (x[0], y[0]) == pytest.approx((0.1, 0.2), abs=1e-14)


@pytest.mark.parametrize(
    "coefficients",
    [
        pytest.param(FOX_K, id="fox"),
        pytest.param((-0.25, 0.07, 0.001, -0.001), id="barrel"),
        pytest.param((-0.35, 0.12, 0.0, 0.0), id="strong-barrel"),
        pytest.param((0.2, 0.05, 0.002, 0.002), id="pincushion"),
        pytest.param((0.0, 0.0, 0.01, -0.01), id="tangential-only"),
    ],
)
def test_undistort_inverts_distort_over_the_image(coefficients: tuple[float, ...]) -> None:
    """Normalised coordinates out to the corners of a 90-degree-wide 4:3 image (|x| <= 1, |y| <= 0.75)."""
    k = Intrinsics(100.0, 100.0, 50.0, 37.5, 100, 75, *coefficients)
    x, y = np.meshgrid(np.linspace(-1.0, 1.0, 41), np.linspace(-0.75, 0.75, 31))
    xd, yd = distort_points(x, y, k)
    xu, yu = undistort_points(xd, yd, k)
    # 1e-12 of the focal length: a billionth of a pixel even at f = 1000 px.
    np.testing.assert_allclose(xu, x, atol=1e-12)
    np.testing.assert_allclose(yu, y, atol=1e-12)
    xr, yr = distort_points(xu, yu, k)
    np.testing.assert_allclose(xr, xd, atol=1e-12)
    np.testing.assert_allclose(yr, yd, atol=1e-12)


def test_undistort_without_distortion_is_identity() -> None:
    k = Intrinsics(10.0, 10.0, 5.0, 5.0, 10, 10)
    x = np.array([[-0.4, 0.0, 0.3]])
    xu, yu = undistort_points(x, -x, k)
    np.testing.assert_array_equal(xu, x)
    np.testing.assert_array_equal(yu, -x)
