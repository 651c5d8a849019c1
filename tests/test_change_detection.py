"""Change detection for updates, against the synthetic city's ground truth.

The store's rendering is replaced by the exact rendering of the city before the change
(``render_city``): a perfect store, so these tests check the detector itself (colour transform,
thresholds, lifting, the block verdicts) without training anything. ``test_update_cli_*`` run the
command on the trained tiny store.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from blocknerf.capture.frames import Intrinsics
from blocknerf.capture.transforms import read_capture
from blocknerf.cli.main import main
from blocknerf.store import BlockStore
from blocknerf.synth import load_city, render_city
from blocknerf.synth.recapture import write_recapture
from blocknerf.updating import (
    ChangeConfig,
    FrameRender,
    UpdateConfig,
    changed_blocks,
    detect_changes,
    fit_colour_transform,
    frame_change,
    merge_captures,
    merged_plan,
)
from partitioning import PartitionConfig, plan_blocks

SPACING_M = 30.0
"""Blocks of the test plan: a grid 30 m apart, radius 30 m (50% overlap)."""
NEAR_FRAMES = 48
"""Frames of the change capture nearest the new building that the change tests use."""


def test_colour_transform_recovers_a_gain_and_offset_despite_outliers():
    rng = np.random.default_rng(0)
    render = rng.uniform(0.0, 0.8, size=(400, 3))
    # photo = render * (1.2, 0.9, 1.05) + 0.02, exactly; 30% of the pixels replaced by junk.
    photo = render * np.array([1.2, 0.9, 1.05]) + 0.02
    photo[:120] = rng.uniform(0.0, 1.0, size=(120, 3))
    t = fit_colour_transform(render, photo, keep=0.6)
    expected = np.vstack([np.diag([1.2, 0.9, 1.05]), [0.02, 0.02, 0.02]])
    # The small ridge towards the identity biases the gains by a few 1e-3 (1.1957 for 1.2).
    assert np.allclose(t, expected, atol=1e-2)


def flat_scene(k: Intrinsics) -> FrameRender:
    """A rendering: a horizontal colour ramp on a wall 10 m away."""
    u = np.linspace(0.1, 0.8, k.width, dtype=np.float32)
    rgb = np.stack(np.broadcast_arrays(u[None, :], 0.5 * u[None, :] + 0.2, np.full((k.height, 1), 0.4, np.float32)), axis=-1)
    rgb = np.ascontiguousarray(np.broadcast_to(rgb, (k.height, k.width, 3)), dtype=np.float32)
    return FrameRender(rgb, np.full((k.height, k.width), 10.0, np.float32), np.ones((k.height, k.width), np.float32))


@pytest.mark.parametrize(
    ("gain", "white_balance"), [(1.0, (1, 1, 1)), (1.6, (1, 1, 1)), (0.5, (1, 1, 1)), (1.0, (1.15, 1.0, 0.85))],
    ids=["same", "brighter", "darker", "white-balance"],
)
def test_appearance_alone_changes_no_pixel_and_a_new_object_does(tiny_city, gain, white_balance):
    frame = read_capture(tiny_city).frames[0]
    k = Intrinsics.from_fov(32, 24, math.radians(85.0))
    render = flat_scene(k)
    photo = np.clip(render.rgb * gain * np.asarray(white_balance, np.float32), 0.0, 1.0)
    assert frame_change(frame, photo, [render], ChangeConfig()).n_changed == 0
    changed = photo.copy()
    changed[6:14, 10:20] = (0.9, 0.1, 0.1)  # something red, 8 x 10 pixels
    found = frame_change(frame, changed, [render], ChangeConfig()).changed
    assert found[7:13, 11:19].all() and not found[:, :6].any() and not found[:, 26:].any()


@pytest.fixture(scope="module")
def city_change(tmp_path_factory) -> Path:
    """The tiny city after the change (``synth --change``), the same size as ``tiny_city``."""
    out = tmp_path_factory.mktemp("city_change") / "change"
    assert main(["synth", str(out), "--grid", "1x1", "--size", "64x48", "--change", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def world(tiny_city) -> SimpleNamespace:
    """The tiny city's capture, a 30 m grid plan of it and the ground-truth renderer of the city
    as it was (sky included: opacity 1)."""
    capture = read_capture(tiny_city)
    geo = capture.geo_origin
    plan = plan_blocks(capture.camera_arrays(), PartitionConfig(strategy="grid", spacing_m=SPACING_M), geo_origin=(geo.lat, geo.lon, geo.alt))
    city = load_city(tiny_city)

    def renderer(frame, k):
        rgb, depth = render_city(city, frame.c2w, k, supersample=1)
        return [FrameRender(rgb, depth, np.ones(depth.shape, np.float32))]

    return SimpleNamespace(capture=capture, plan=plan, renderer=renderer)


def detect(world: SimpleNamespace, new, where: Path):
    """Merge ``new`` into the world's capture and detect changes in its fresh frames."""
    cfg = UpdateConfig()
    merge = merge_captures(world.capture, new, distance=cfg.distance_for(world.plan.radii), angle_deg=15.0, where=where)
    after = merged_plan(world.plan, merge)
    seen = changed_blocks(world.plan, after, merge)
    references = {}
    for old, winner in sorted(merge.superseded.items()):
        references.setdefault(winner, merge.capture.frame(old))
    frames = [merge.capture.frame(f) for f in merge.added if f not in merge.superseded]
    return seen, detect_changes(frames, world.renderer, after, cfg.change, seen_blocks=seen, references=references)


def test_an_unchanged_recapture_under_another_appearance_retrains_nothing(world, tmp_path):
    held_out = [f.id for f in world.capture.test_frames]
    again = write_recapture(world.capture, held_out, tmp_path / "again", gain=1.4, white_balance=(1.1, 0.95, 0.9))
    seen, report = detect(world, again, tmp_path / "again")
    assert len(seen) >= 3  # the frames see several blocks ...
    assert report.affected == () and len(report.points) == 0  # ... and none of them changed


def test_a_change_affects_the_blocks_around_it_only(world, city_change):
    regions = json.loads((city_change / "change.json").read_text())["regions"]
    building = next(r for r in regions if r["kind"] == "new_building")
    centre = np.array(building["centre_xy"])
    change = read_capture(city_change)
    near = sorted(change.frames, key=lambda f: float(np.linalg.norm(f.position[:2] - centre)))[:NEAR_FRAMES]
    seen, report = detect(world, change.subset([f.id for f in near]), city_change)
    # Every changed point is at the change: within its region plus a pixel's reach.
    gaps = [np.linalg.norm(report.points.points[:, :2] - np.array(r["centre_xy"]), axis=1) - r["radius_m"] for r in regions]
    assert len(report.points) > 0 and np.all(np.min(gaps, axis=0) <= 5.0)
    plan = world.plan
    home = min(plan.blocks, key=lambda b: float(np.linalg.norm(b.center_xy - centre)))
    assert home.id in report.affected
    assert set(report.affected) <= {home.id, *home.neighbors}
    for b in plan.blocks:
        gap = min(float(np.linalg.norm(b.center_xy - np.array(r["centre_xy"]))) - b.radius_m - r["radius_m"] for r in regions)
        if b.id in report.affected:
            assert gap <= 20.0, b.id  # never a block far from every change
        verdict = report.blocks.get(b.id)
        if verdict is not None and verdict.retrain:
            lo, hi = verdict.box
            assert all(a <= c for a, c in zip(lo, hi)) and verdict.pixels > 0
    assert set(seen) - set(report.affected)  # some blocks the frames see are kept


def test_a_block_retrains_only_on_points_several_frames_lifted(world):
    """The same changed points inside a block: from the pixels of two frames (where one or two
    frames' visual hull reaches) they are not enough; from ``min_views`` frames they are."""
    from blocknerf.updating.change_points import ChangePoints
    from blocknerf.updating.detector import block_changes

    spec = world.plan.blocks[0]
    n = 20
    points = np.repeat([[*spec.center_xy, 0.5 * (spec.z_min + spec.z_max)]], n, axis=0)
    cfg = ChangeConfig()

    def verdict(frames: int):  # noqa: ANN202
        votes = np.full(n, cfg.min_views, dtype=np.int32)
        lifted = ChangePoints(points, votes, votes, (np.arange(n) % frames).astype(np.int32), np.arange(n, dtype=np.int64))
        return block_changes(world.plan, lifted, cfg, [spec.id], margin=0.0)[spec.id]

    assert cfg.min_views == 3 and n >= cfg.min_points
    two, three = verdict(2), verdict(3)
    assert (two.points, two.frames, two.retrain) == (n, 2, False)
    assert "below the threshold" in two.reason
    assert (three.points, three.frames, three.retrain) == (n, 3, True)


@pytest.fixture(scope="module")
def recaptured_store(tiny_store, tmp_path_factory) -> SimpleNamespace:
    """A copy of the trained tiny store and a re-capture of six of its held-out views: new ids,
    a month later, brighter and warmer."""
    import shutil

    root = tmp_path_factory.mktemp("recaptured")
    url = root / "city.zarr"
    shutil.copytree(tiny_store, url)
    store = BlockStore.open(url)
    held_out = [f.id for f in store.capture.test_frames][:6]
    write_recapture(store.capture, held_out, root / "again", gain=1.3, white_balance=(1.1, 1.0, 0.9))
    return SimpleNamespace(url=url, capture=root / "again", root=root)


def test_update_cli_dry_run_explains_and_changes_nothing(recaptured_store, capsys, monkeypatch, single_torch_thread):
    url = recaptured_store.url
    before = BlockStore.open(url).manifest()
    out = recaptured_store.root / "change"
    assert main(["update", str(url), str(recaptured_store.capture), "--dry-run", "--change-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "blocks to retrain: none" in printed and ": keep (no change in its region)" in printed
    assert (out / "change_map.png").stat().st_size > 0
    assert BlockStore.open(url).manifest() == before


def test_update_cli_with_all_retrains_every_block_the_frames_see(recaptured_store, capsys):
    assert main(["update", str(recaptured_store.url), str(recaptured_store.capture), "--dry-run", "--json", "--all"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["change"] is None and doc["affected"] == doc["seen"] and doc["seen"]


def test_update_cli_refuses_a_change_dir_without_detection(recaptured_store, capsys):
    argv = ["update", str(recaptured_store.url), str(recaptured_store.capture), "--change-dir", "x", "--all"]
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
