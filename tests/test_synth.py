"""The synthetic city: capture layout, ground truth, geo-registration, determinism, the change."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blocknerf.capture.frames import Capture, Intrinsics, pose_problem
from blocknerf.capture.transforms import read_capture
from blocknerf.cli.main import main
from blocknerf.capture.images import load_image
from blocknerf.synth import (
    City,
    SynthConfig,
    apply_appearance,
    apply_change,
    build_city,
    capture_intrinsics,
    load_city,
    look,
    plan_capture,
    sky_colour,
    synthesize,
)
from blocknerf.synth.raycast import cast, centre_rays, pixel_rays, render_city
from blocknerf.synth.scene import compile_scene

# A fast configuration for tests that write their own captures: one block, tiny images, a stop
# every 20 m and two headings.
FAST = SynthConfig(grid=(1, 1), width=24, height=18, spacing_m=20.0, headings_deg=(0.0, 90.0), workers=1)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """The 8-bit quantisation of blocknerf.capture.images.save_image."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def capture(tiny_city: Path) -> Capture:
    return read_capture(tiny_city)


@pytest.fixture(scope="module")
def city(tiny_city: Path) -> City:
    return load_city(tiny_city)


# -- the capture as written ----------------------------------------------------------------------


def test_capture_matches_the_plan(capture: Capture, city: City) -> None:
    plan = plan_capture(city)
    assert [f.id for f in capture.frames] == [f"images/{v.name}.png" for v in plan]
    assert not capture.missing
    assert city.config.grid == (1, 1) and (city.config.width, city.config.height) == (64, 48)
    # 4 streets of 80 m, a stop every 6 m: 14 stops forward, 13 back (staggered by half a
    # spacing), 4 headings each; the offset pass stops every 48 m: twice per street and direction.
    drive = [f for f in capture.frames if f.extra["trajectory"] == "drive"]
    offset = [f for f in capture.frames if f.extra["trajectory"] == "offset"]
    assert len(drive) == 4 * (14 + 13) * 4
    assert len(offset) == 4 * 2 * 2 * 4
    assert {f.extra["heading_deg"] for f in capture.frames} == {0.0, 90.0, 180.0, 270.0}


def test_split_is_every_nth_drive_frame_plus_the_offset_trajectory(capture: Capture, city: City) -> None:
    n = city.config.test_every
    drive = [f for f in capture.frames if f.extra["trajectory"] == "drive"]
    assert [f.split for f in drive] == ["test" if i % n == n - 1 else "train" for i in range(len(drive))]
    assert all(f.split == "test" for f in capture.frames if f.extra["trajectory"] == "offset")
    doc = json.loads((capture.root / "transforms.json").read_text())
    assert set(doc["test_filenames"]) == {f.id for f in capture.test_frames}
    assert set(doc["train_filenames"]) == {f.id for f in capture.train_frames}
    # Held-out frames repeat no training pose: the offset pass runs test_offset_m beside the drive.
    train = np.array([f.position for f in capture.train_frames])
    for f in capture.test_frames:
        if f.extra["trajectory"] == "offset":
            assert np.min(np.linalg.norm(train[:, :2] - f.position[:2], axis=1)) >= city.config.test_offset_m - 1e-6


def test_intrinsics_images_and_depth_files(capture: Capture) -> None:
    k = capture_intrinsics(SynthConfig(width=64, height=48))
    assert {f.intrinsics for f in capture.frames} == {k}
    assert math.isclose(2 * math.atan(0.5 * k.width / k.fx), math.radians(85.0))
    assert (k.cx, k.cy, k.fx) == (32.0, 24.0, k.fy)
    for f in capture.frames[::50]:
        assert load_image(f.image_path).shape == (48, 64, 3)
        depth = np.load(f.depth_path)
        assert depth.shape == (48, 64) and depth.dtype == np.float32
        assert np.all((depth > 0) & ~np.isnan(depth))


def test_poses_drive_the_streets_at_rig_height(capture: Capture, city: City) -> None:
    cfg = city.config
    half_road = 0.5 * cfg.carriageway_m
    x0, y0, x1, y1 = city.extent_m
    for f in capture.frames:
        assert pose_problem(f.c2w, tol=1e-9) is None
        x, y, z = f.position
        assert z == pytest.approx(cfg.camera_height_m)
        on_ns = min(abs(x - s.offset_m) for s in city.streets if s.axis == "ns") <= half_road
        on_ew = min(abs(y - s.offset_m) for s in city.streets if s.axis == "ew") <= half_road
        assert on_ns or on_ew
        assert x0 - half_road <= x <= x1 + half_road and y0 - half_road <= y <= y1 + half_road
        forward = -f.c2w[:3, 2]
        assert math.degrees(math.asin(forward[2])) == pytest.approx(cfg.pitch_deg)
        assert f.c2w[2, 0] == pytest.approx(0.0, abs=1e-12)  # no roll


def test_timestamps_increase_along_the_drive(capture: Capture) -> None:
    times = np.array([f.timestamp for f in capture.frames])
    assert np.all(np.diff(times) > 0)


def test_gps_of_every_frame_is_its_camera_centre(capture: Capture) -> None:
    assert capture.geo_origin is not None
    assert (capture.geo_origin.lat, capture.geo_origin.lon) == (37.7764, -122.4346)
    lla = np.array([[f.gps.lat, f.gps.lon, f.gps.alt] for f in capture.frames])
    enu = capture.geo.lla_to_enu(lla)
    assert np.max(np.abs(enu - capture.positions())) < 1e-3


def test_synthesize_returns_the_capture_it_wrote(tmp_path: Path) -> None:
    written = synthesize(tmp_path / "c", FAST, progress=False)
    assert written == read_capture(tmp_path / "c")
    assert (tmp_path / "c" / "contact_sheet.png").is_file()


# -- ground truth ----------------------------------------------------------------------------------


def test_stored_depth_is_the_rendered_depth(capture: Capture, city: City) -> None:
    for f in capture.frames[::37]:
        _, depth = render_city(city, f.c2w, f.intrinsics)
        np.testing.assert_array_equal(np.load(f.depth_path), depth)


def test_stored_images_are_the_rendering_with_the_recorded_appearance(capture: Capture, city: City) -> None:
    frames = capture.frames[::41]
    assert {f.split for f in frames} == {"train", "test"}
    for f in frames:
        rgb, _ = render_city(city, f.c2w, f.intrinsics)
        expected = to_uint8(apply_appearance(rgb, f.exposure, f.extra["white_balance"]))
        np.testing.assert_array_equal(load_image(f.image_path), expected, err_msg=f.id)


def test_appearance_is_modest_and_neutral_on_held_out_frames(capture: Capture, city: City) -> None:
    cfg = city.config
    exposures = np.array([f.exposure for f in capture.frames])
    assert np.all(np.abs(np.log2(exposures)) <= cfg.exposure_stops + 1e-6)
    assert exposures.std() > 0.05
    for f in capture.frames:
        wb = np.array(f.extra["white_balance"])
        if f.split == "test":
            assert wb.tolist() == [1.0, 1.0, 1.0]
        else:
            assert np.all(np.abs(wb - 1.0) <= cfg.white_balance_jitter + 1e-6)
    assert len({tuple(f.extra["white_balance"]) for f in capture.train_frames}) > 10


def test_apply_appearance_scales_and_clips() -> None:
    rgb = np.array([[0.2, 0.4, 0.9]], dtype=np.float32)
    out = apply_appearance(rgb, 1.25, [1.0, 0.5, 1.0])
    np.testing.assert_allclose(out, [[0.25, 0.25, 1.0]], rtol=1e-6)
    assert out.dtype == np.float32


@pytest.mark.parametrize("height_m", [1.5, 7.0, 30.0])
def test_camera_looking_straight_down_sees_the_road_at_its_height(city: City, height_m: float) -> None:
    # Above the centre of an intersection, a narrow camera sees only road.
    k = Intrinsics.from_fov(16, 12, math.radians(20.0))
    x = city.streets[0].offset_m
    y = next(s.offset_m for s in city.streets if s.axis == "ew")
    rgb, depth = render_city(city, look((x, y, height_m), 90.0, -90.0), k)
    np.testing.assert_allclose(depth, height_m, rtol=1e-5)
    assert np.all(rgb < 0.6)  # asphalt, not sky


def test_camera_facing_a_building_gets_its_distance(city: City) -> None:
    # A building whose south face stands at (or near) its block's southern edge faces a street:
    # stand in that street 5 m in front of the face's middle and look north.
    fronts = [
        b for b in city.buildings
        if city.is_driven_block(_block_of(b.name)) and b.lo[1] - city.block_rect(*_block_of(b.name))[1] < 2.0
    ]
    assert fronts
    b = fronts[0]
    k = Intrinsics.from_fov(33, 25, math.radians(40.0))
    c2w = look((0.5 * (b.lo[0] + b.hi[0]), b.lo[1] - 5.0, 3.0), 90.0, 0.0)
    rgb, depth = render_city(city, c2w, k)
    assert depth[12, 16] == pytest.approx(5.0, abs=1e-4)
    # A facade fills the view: no sky, everything at the face's distance or nearer (the road).
    assert np.all(np.isfinite(depth)) and np.all(depth <= 5.0 + 1e-4)


def _block_of(name: str) -> tuple[int, int]:
    i, j, _ = name[1:].split("_")
    return int(i), int(j)


def test_sky_has_infinite_depth_and_sky_colour(city: City) -> None:
    k = Intrinsics.from_fov(20, 16, math.radians(30.0))
    x = city.streets[0].offset_m
    y = next(s.offset_m for s in city.streets if s.axis == "ew")
    c2w = look((x, y, 2.0), 0.0, 89.0)
    rgb, depth = render_city(city, c2w, k)
    assert np.all(np.isinf(depth))
    dirs, _ = centre_rays(c2w, k, slice(0, k.height))
    np.testing.assert_allclose(rgb.reshape(-1, 3), sky_colour(dirs), atol=2e-3)
    assert np.all(rgb[..., 2] > rgb[..., 0])  # blue


def test_rendering_is_deterministic_and_finite_from_anywhere() -> None:
    city = apply_change(build_city(SynthConfig(grid=(2, 2), seed=3)))
    k = Intrinsics.from_fov(20, 15, math.radians(85.0))
    rng = np.random.default_rng(0)
    with np.errstate(all="raise"):
        for _ in range(40):
            pos = rng.uniform([-120.0, -120.0, 0.3], [120.0, 120.0, 90.0])
            c2w = look(pos, rng.uniform(0.0, 360.0), rng.uniform(-90.0, 90.0))
            ss = int(rng.integers(1, 4))
            rgb, depth = render_city(city, c2w, k, supersample=ss)
            again = render_city(city, c2w, k, supersample=ss)
            np.testing.assert_array_equal(rgb, again[0])
            np.testing.assert_array_equal(depth, again[1])
            assert rgb.dtype == np.float32 and np.all((rgb >= 0) & (rgb <= 1))
            assert np.all(depth > 0) and not np.any(np.isnan(depth))


def test_supersampling_only_touches_edge_pixels(capture: Capture, city: City) -> None:
    # Flat regions come out the same at any supersampling (analytic filtering); only pixels at
    # surface boundaries change.
    f = capture.frames[5]
    one, _ = render_city(city, f.c2w, f.intrinsics, supersample=1)
    three, _ = render_city(city, f.c2w, f.intrinsics, supersample=3)
    changed = np.any(one != three, axis=-1)
    assert 0.0 < changed.mean() < 0.4


# -- the city -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_layout_is_a_plausible_city(seed: int) -> None:
    cfg = SynthConfig(grid=(2, 2), seed=seed)
    city = build_city(cfg)
    by_block: dict[str, list] = {}
    for b in city.buildings:
        by_block.setdefault(b.name.rsplit("_", 1)[0], []).append(b)
        assert cfg.min_height_m <= b.height_m <= cfg.max_height_m
        assert b.hi[0] - b.lo[0] >= 8.0 - 1e-6 and b.hi[1] - b.lo[1] >= 8.0 - 1e-6
    assert len(by_block) == (2 + 2) * (2 + 2)  # driven blocks and the outer ring
    for name, buildings in by_block.items():
        i, j = (int(v) for v in name[1:].split("_"))
        x0, y0, x1, y1 = city.block_rect(i, j)
        assert 2 <= len(buildings) <= cfg.max_buildings_per_block
        for b in buildings:  # inside the block: off the streets
            assert x0 - 1e-6 <= b.lo[0] < b.hi[0] <= x1 + 1e-6 and y0 - 1e-6 <= b.lo[1] < b.hi[1] <= y1 + 1e-6
        for a in buildings:
            for b in buildings:
                if a is not b:
                    overlap_x = min(a.hi[0], b.hi[0]) - max(a.lo[0], b.lo[0])
                    overlap_y = min(a.hi[1], b.hi[1]) - max(a.lo[1], b.lo[1])
                    assert min(overlap_x, overlap_y) <= 1e-6, f"{a.name} overlaps {b.name}"
    assert any(l.kind == "empty" and l.street_facing and city.is_driven_block(l.block) for l in city.lots)
    assert len({b.wall_rgb for b in city.buildings}) > len(city.buildings) // 2
    assert max(b.height_m for b in city.buildings) - min(b.height_m for b in city.buildings) > 10.0


def test_city_is_deterministic_by_seed_and_round_trips(tmp_path: Path) -> None:
    a = build_city(SynthConfig(seed=7))
    assert a.to_dict() == build_city(SynthConfig(seed=7)).to_dict()
    assert a.to_dict()["buildings"] != build_city(SynthConfig(seed=8)).to_dict()["buildings"]
    a.save(tmp_path)
    b = load_city(tmp_path)
    assert b.to_dict() == a.to_dict()
    k = Intrinsics.from_fov(24, 18, 1.4)
    c2w = look((1.5, 3.0, 2.0), 30.0, 8.0)
    np.testing.assert_array_equal(render_city(a, c2w, k)[0], render_city(b, c2w, k)[0])


def test_same_seed_gives_identical_files_and_another_seed_another_city(tmp_path: Path) -> None:
    one = synthesize(tmp_path / "one", FAST, progress=False)
    two = synthesize(tmp_path / "two", dataclasses.replace(FAST, workers=2), progress=False)  # in parallel
    other = synthesize(tmp_path / "other", dataclasses.replace(FAST, seed=1), progress=False)
    assert (tmp_path / "one/transforms.json").read_bytes() == (tmp_path / "two/transforms.json").read_bytes()
    city_one, city_two = (json.loads((tmp_path / name / "city.json").read_text()) for name in ("one", "two"))
    assert city_one["config"].pop("workers") == 1 and city_two["config"].pop("workers") == 2
    assert city_one == city_two
    for f in one.frames:
        rel = f.image_path.relative_to(one.root)
        assert f.image_path.read_bytes() == (two.root / rel).read_bytes()
        assert f.depth_path.read_bytes() == (two.root / f.depth_path.relative_to(one.root)).read_bytes()
    assert json.loads((tmp_path / "one/city.json").read_text())["buildings"] != json.loads(
        (tmp_path / "other/city.json").read_text()
    )["buildings"]
    assert any(
        f.image_path.read_bytes() != (other.root / f.image_path.relative_to(one.root)).read_bytes() for f in one.frames
    )


def test_rewriting_an_earlier_output_replaces_it(tmp_path: Path) -> None:
    synthesize(tmp_path, FAST, progress=False)
    smaller = dataclasses.replace(FAST, headings_deg=(0.0,))
    capture = synthesize(tmp_path, smaller, progress=False)
    assert len(list((tmp_path / "images").iterdir())) == len(capture.frames)


# -- the change -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def change_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``blocknerf synth OUT --change`` of the tiny city, via a config file (small images)."""
    root = tmp_path_factory.mktemp("change")
    config = root / "synth.yaml"
    config.write_text("synth:\n  width: 32\n  height: 24\n  spacing_m: 12.0\n")
    out = root / "changed"
    assert main(["synth", str(out), "--grid", "1x1", "--config", str(config), "--change", "--quiet"]) == 0
    return out


def test_change_capture_covers_the_changed_regions_later_in_time(change_dir: Path, capture: Capture) -> None:
    changed = load_city(change_dir)
    cfg = changed.config
    assert cfg.change and (cfg.width, cfg.height, cfg.spacing_m) == (32, 24, 12.0)
    doc = json.loads((change_dir / "change.json").read_text())
    assert {r["kind"] for r in doc["regions"]} == {"new_building", "construction"}
    assert doc["regions"] == [r.to_dict() for r in changed.change_regions]
    cap = read_capture(change_dir)
    assert all(f.id.startswith("images/chg_") for f in cap.frames)
    assert cap.test_frames and cap.train_frames
    centres = np.array([r.centre_xy for r in changed.change_regions])
    reach = np.array([r.radius_m for r in changed.change_regions]) + cfg.change_margin_m
    for f in cap.frames:
        assert np.any(np.linalg.norm(centres - f.position[:2], axis=1) <= reach + 1e-6)
    first_new = min(f.timestamp for f in cap.frames)
    assert first_new > max(f.timestamp for f in capture.frames)
    original = build_city(SynthConfig(grid=(1, 1), spacing_m=12.0))
    assert first_new > max(v.timestamp for v in plan_capture(original))
    assert doc["timestamp_min"] == first_new


def test_change_capture_is_ground_truth_of_the_new_city(change_dir: Path) -> None:
    changed = load_city(change_dir)
    cap = read_capture(change_dir)
    for f in cap.test_frames[::9]:
        rgb, depth = render_city(changed, f.c2w, f.intrinsics)
        np.testing.assert_array_equal(load_image(f.image_path), to_uint8(apply_appearance(rgb, f.exposure, [1, 1, 1])))
        np.testing.assert_array_equal(np.load(f.depth_path), depth)


def test_changed_city_differs_only_inside_the_changed_regions(change_dir: Path) -> None:
    changed = load_city(change_dir)
    original = build_city(dataclasses.replace(changed.config, change=False))
    assert len(changed.buildings) == len(original.buildings) + 1
    assert len(changed.props) > 10 and not original.props
    centres = np.array([r.centre_xy for r in changed.change_regions])
    radii = np.array([r.radius_m for r in changed.change_regions])
    h, w = 24, 32
    k = Intrinsics.from_fov(w, h, math.radians(85.0))
    rng = np.random.default_rng(5)
    n_same = n_differ = 0
    for _ in range(60):
        pos = (rng.uniform(-55.0, 55.0), rng.uniform(-55.0, 55.0), rng.uniform(1.0, 30.0))
        c2w = look(pos, rng.uniform(0.0, 360.0), rng.uniform(-30.0, 20.0))
        rgb_a, depth_a = render_city(original, c2w, k, supersample=2)
        rgb_b, depth_b = render_city(changed, c2w, k, supersample=2)
        differs = np.any(rgb_a != rgb_b, axis=-1) | (depth_a != depth_b)
        # Pixels any of whose rays (centre, 2x2 subpixels) ends inside a changed region, in either
        # city; a pixel next to one may change too (it can become an edge pixel).
        inside = np.zeros((h, w), dtype=bool)
        for city in (original, changed):
            xy = _ray_ends(city, c2w, k, offsets=(0.5, 0.25, 0.75))
            dist = np.linalg.norm(xy[..., None, :] - centres, axis=-1)
            inside |= np.any(dist <= radii + 0.5, axis=(2, 3))
        padded = np.pad(inside, 1)
        near = np.any([padded[1 + a : 1 + a + h, 1 + b : 1 + b + w] for a in (-1, 0, 1) for b in (-1, 0, 1)], 0)
        assert not np.any(differs & ~near), "a pixel changed whose surface lies outside every changed region"
        if not near.any():
            np.testing.assert_array_equal(rgb_a, rgb_b)
            n_same += 1
        n_differ += bool(differs.any())
    assert n_same > 5 and n_differ > 5


def _ray_ends(city: City, c2w: np.ndarray, k: Intrinsics, offsets: tuple[float, ...]) -> np.ndarray:
    """(H, W, S, 2) xy where rays through pixel points (r + a, c + b), a, b in ``offsets``, end;
    far away (1e9) for rays that see sky."""
    rows, cols = np.mgrid[0 : k.height, 0 : k.width]
    ends = []
    for a in offsets:
        for b in offsets:
            dirs, _ = pixel_rays(c2w, k, (cols + b).reshape(-1), (rows + a).reshape(-1))
            t = cast(compile_scene(city), c2w[:3, 3], dirs).t
            t = np.where(np.isfinite(t), t, 1e9)
            ends.append((c2w[:2, 3] + t[:, None] * dirs[:, :2]).reshape(k.height, k.width, 2))
    return np.stack(ends, axis=2)


def test_changed_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="already"):
        apply_change(build_city(SynthConfig(grid=(1, 1), change=True)))


# -- command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--grid", "0x2"],
        ["--grid", "2"],
        ["--size", "abc"],
        ["--size", "4x4"],
        ["--seed", "x"],
        ["--workers", "-1"],
    ],
    ids=["grid-zero", "grid-one-number", "size-text", "size-too-small", "seed-text", "workers-negative"],
)
def test_bad_arguments_give_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert main(["synth", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("blocknerf synth: error:") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_bad_config_file_gives_one_line_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("synth:\n  grid: [1, 1]\n  colour: red\n")
    assert main(["synth", str(tmp_path / "out"), "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "colour" in err and str(config) in err and "\n" not in err


def test_refuses_to_write_into_a_directory_of_other_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["synth", str(tmp_path), "--grid", "1x1", "--size", "16x12"]) == 2
    assert "not a 'blocknerf synth' output" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_importing_synth_does_not_import_torch() -> None:
    code = "import sys, blocknerf.synth, blocknerf.cli.synth; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
