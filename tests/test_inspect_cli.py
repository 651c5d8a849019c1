"""``blocknerf inspect CAPTURE [--json]``: the summary of good captures, one-line errors for bad ones."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blocknerf.cli.main import main
from blocknerf.errors import InputError
from blocknerf.capture.images import save_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ORIGIN = {"lat": 48.8584, "lon": 2.2945, "alt": 35.0}
POSITIONS = [(0.0, 0.0, 1.5), (10.0, -4.0, 2.0), (-6.0, 8.0, 2.5)]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["inspect", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def noise_png(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """Random pixels, so that the PNG does not compress to a few bytes (truncation must hit pixel data)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    save_image(path, rgb)
    return path


def c2w(position: tuple[float, float, float], yaw: float = 0.0) -> list[list[float]]:
    """A level camera at ``position`` looking along +y turned by ``yaw`` about z (OpenGL axes:
    x right, y up, z backwards, so the columns are right, up (0, 0, 1) and minus the view direction)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return [[c, 0.0, s, position[0]], [s, 0.0, -c, position[1]], [0.0, 1.0, 0.0, position[2]], [0.0, 0.0, 0.0, 1.0]]


@pytest.fixture
def street(tmp_path: Path) -> Path:
    """A geo-registered capture: three 32x24 images with GPS, a fourth listed but missing, splits."""
    root = tmp_path / "street"
    frames = []
    for i, pos in enumerate(POSITIONS):
        noise_png(root / "images" / f"{i}.png", 32, 24, seed=i)
        frames.append({
            "file_path": f"images/{i}.png", "transform_matrix": c2w(pos, 0.5 * i), "timestamp": 100.0 + i,
            "exposure": 1.0 + 0.25 * i, "gps": {"lat": 48.8584 + 1e-5 * i, "lon": 2.2945, "alt": 35.0 + pos[2]},
        })
    frames.append({"file_path": "images/3.png", "transform_matrix": c2w((50.0, 50.0, 2.0))})
    doc = {
        "fl_x": 30.0, "fl_y": 30.0, "cx": 16.0, "cy": 12.0, "w": 32, "h": 24,
        "geo_origin": ORIGIN, "frames": frames,
        "train_filenames": ["images/0.png", "images/2.png"], "test_filenames": ["images/1.png", "images/3.png"],
    }
    (root / "transforms.json").write_text(json.dumps(doc))
    return root


# -- good captures ---------------------------------------------------------------------------------


def test_text_summary_of_a_geo_registered_capture(capsys: pytest.CaptureFixture[str], street: Path) -> None:
    code, out, err = run(capsys, str(street))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["capture", str(street.resolve())]
    expected = [
        "frames          3 loaded of 4 listed (1 missing images)",
        "splits          train 2, test 1",
        "image sizes     32x24 (3 frames)",
        "intrinsics      fx=30.00 fy=30.00 cx=16.00 cy=12.00 (3 frames)",
        # min and max over POSITIONS, x y z
        "camera extent   min [-6.00, -4.00, 1.50]  max [10.00, 8.00, 2.50]  size [16.00, 12.00, 1.00]",
        "geo origin      lat 48.8584000, lon 2.2945000, alt 35.00 m",
        "gps             3 of 3 frames",
        "exposure        3 of 3 frames",
        "timestamps      100.000 .. 102.000",
    ]
    assert lines[1:] == expected
    # The only thing on stderr is the warning about the missing image (no progress bar in a pipe).
    assert err.splitlines() == [
        f"blocknerf: warning: {street / 'transforms.json'}: 1 of 4 listed images are missing "
        "(first: images/3.png); loaded 3 frames"
    ]


@pytest.mark.parametrize("headers_only", [pytest.param(False, id="decode"), pytest.param(True, id="headers-only")])
def test_json_summary(capsys: pytest.CaptureFixture[str], street: Path, headers_only: bool) -> None:
    code, out, _ = run(capsys, str(street), "--json", *(["--headers-only"] if headers_only else []))
    assert code == 0
    s = json.loads(out)
    assert {k: s[k] for k in ("frames", "missing_images", "train", "test", "geo_origin")} == {
        "frames": 3, "missing_images": 1, "train": 2, "test": 1, "geo_origin": ORIGIN,
    }
    assert s["listed"] == 4 and s["image_sizes"] == {"32x24": 3}
    assert s["extent"]["min"] == [-6.0, -4.0, 1.5] and s["extent"]["max"] == [10.0, 8.0, 2.5]
    assert s["extent"]["diagonal"] == pytest.approx(math.sqrt(16.0**2 + 12.0**2 + 1.0**2))
    assert s["intrinsics"] == [
        {"fx": 30.0, "fy": 30.0, "cx": 16.0, "cy": 12.0, "width": 32, "height": 24, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": 3}
    ]
    assert (s["distortion"], s["gps_frames"], s["exposure_frames"]) == (False, 3, 3)
    assert s["timestamps"] == {"min": 100.0, "max": 102.0}


def test_complete_capture_prints_nothing_on_stderr(capsys: pytest.CaptureFixture[str], street: Path) -> None:
    doc = json.loads((street / "transforms.json").read_text())
    doc["frames"] = doc["frames"][:3]
    doc["test_filenames"] = ["images/1.png"]
    (street / "transforms.json").write_text(json.dumps(doc))
    code, out, err = run(capsys, str(street / "transforms.json"))
    assert (code, err) == (0, "")
    assert "frames          3 loaded of 3 listed (0 missing images)" in out.splitlines()


def test_fox(capsys: pytest.CaptureFixture[str]) -> None:
    root = DATA / "fox_8x"
    if not (root / "transforms.json").is_file():
        pytest.skip(f"{root} is not available")
    code, out, err = run(capsys, str(root))
    assert code == 0
    lines = out.splitlines()
    assert "frames          50 loaded of 67 listed (17 missing images)" in lines
    assert "splits          train 43, test 7" in lines
    assert "image sizes     135x240 (50 frames)" in lines
    assert any(line.startswith("intrinsics      fx=171.94 fy=171.81 cx=69.32 cy=120.66, k1=0.05784") for line in lines)
    assert "geo origin      none (local frame only)" in lines
    assert len(err.splitlines()) == 1 and "17 of 67 listed images are missing" in err


def test_synthetic_city(capsys: pytest.CaptureFixture[str], tiny_city: Path) -> None:
    """The summary agrees with the counts in the synthetic city's own transforms.json."""
    doc = json.loads((tiny_city / "transforms.json").read_text())
    code, out, err = run(capsys, str(tiny_city), "--json", "--headers-only")
    assert (code, err) == (0, "")
    s = json.loads(out)
    assert s["frames"] == len(doc["frames"]) and s["missing_images"] == 0
    assert s["test"] == len(doc["test_filenames"]) > 0
    assert s["train"] == len(doc["frames"]) - len(doc["test_filenames"])
    assert s["geo_origin"] == doc["geo_origin"]
    assert s["gps_frames"] == s["frames"]
    assert s["image_sizes"] == {"64x48": s["frames"]}


# -- bad input -------------------------------------------------------------------------------------

EYE = np.eye(4).tolist()


def capture_dir(root: Path, doc: Any, images: dict[str, tuple[int, int]] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, (w, h) in (images if images is not None else {"a.png": (32, 24)}).items():
        noise_png(root / name, w, h)
    (root / "transforms.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return root


def doc(*frames: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"fl_x": 30.0, "w": 32, "h": 24, **top, "frames": list(frames) or [{"file_path": "a.png", "transform_matrix": EYE}]}


def truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


BAD = [
    # (make capture in root -> path to pass, file the message names, problem)
    pytest.param(lambda r: r / "nothing", "nothing", "file not found", id="missing-capture"),
    pytest.param(lambda r: capture_dir(r, '{"frames": [}'), "transforms.json", "malformed JSON at line 1 column 13", id="malformed-json"),
    pytest.param(lambda r: capture_dir(r, {"frames": [{"file_path": "a.png"}]}), "transforms.json", "frame 0: missing key 'transform_matrix'", id="missing-key"),
    pytest.param(lambda r: capture_dir(r, {"fl_x": 30.0, "w": 32, "h": 24}), "transforms.json", "missing key 'frames'", id="no-frames-key"),
    pytest.param(lambda r: capture_dir(r, {"frames": []}), "transforms.json", "no frames", id="zero-frames"),
    pytest.param(
        lambda r: capture_dir(r, doc({"file_path": "a.png", "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, float("nan")], [0, 0, 1, 0], [0, 0, 0, 1]]})),
        "transforms.json", "frame 'a.png': transform_matrix contains non-finite values", id="nan-pose",
    ),
    pytest.param(
        lambda r: capture_dir(r, doc({"file_path": "a.png", "transform_matrix": np.diag([1.0, 3.0, 1.0, 1.0]).tolist()})),
        "transforms.json", "frame 'a.png': transform_matrix is not rigid", id="non-rigid-pose",
    ),
    pytest.param(
        lambda r: capture_dir(r, doc({"file_path": "b.png", "transform_matrix": EYE})), "transforms.json",
        "none of the 1 listed images exists (first: b.png)", id="no-image-exists",
    ),
    pytest.param(lambda r: capture_dir(r, {"w": 32, "h": 24, "frames": [{"file_path": "a.png", "transform_matrix": EYE}]}), "transforms.json", "no focal length", id="no-intrinsics"),
    pytest.param(
        lambda r: capture_dir(r, doc(), {"a.png": (16, 12)}), "a.png", "image is 16x12 but its intrinsics say 32x24", id="wrong-image-size",
    ),
    pytest.param(
        lambda r: (capture_dir(r, doc()), (r / "a.png").write_bytes(b"GIF89a nonsense"))[0], "a.png", "unreadable", id="not-an-image",
    ),
    pytest.param(
        lambda r: (capture_dir(r, doc()), truncate(r / "a.png", 0.6))[0], "a.png", "unreadable or truncated image", id="truncated-image",
    ),
]


@pytest.mark.parametrize(("make", "named", "problem"), BAD)
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Any, named: str, problem: str) -> None:
    target = make(tmp_path / "cap")
    code, out, err = run(capsys, str(target))
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("blocknerf inspect: error: ")
    assert str(tmp_path / "cap" / named) in lines[0] or str((tmp_path / "cap" / named).resolve()) in lines[0]
    assert problem in lines[0]
    assert "Traceback" not in err


def test_truncated_image_passes_a_headers_only_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--headers-only reads sizes from headers only: fast, and documented to miss truncated pixel data."""
    root = capture_dir(tmp_path / "cap", doc())
    truncate(root / "a.png", 0.6)
    assert run(capsys, str(root))[0] == 2
    code, out, err = run(capsys, str(root), "--headers-only", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["frames"] == 1


def test_debug_raises_the_error(tmp_path: Path) -> None:
    root = capture_dir(tmp_path / "cap", '{"frames": [}')
    with pytest.raises(InputError, match="malformed JSON"):
        main(["inspect", str(root), "--debug"])
