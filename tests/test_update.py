"""Incremental updates: merging a re-capture (newer frames supersede older ones of the same place),
retraining only the blocks it touches, atomic publication under kills and concurrent readers,
rollback, gc and what `info` says about versions."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from blocknerf.model.block import load_block
from blocknerf.capture.frames import Capture, Frame, Intrinsics
from blocknerf.capture.transforms import read_capture, write_capture
from blocknerf.cli.main import main
from blocknerf.cli.settings import Settings
from blocknerf.training.cluster import ClusterConfig
from blocknerf.config import replace
from blocknerf.errors import ConfigError, InputError, StoreError
from blocknerf.capture.geo import LLA, GeoFrame
from blocknerf.store import FAULT_ENV, FAULT_EXIT_CODE, FAULT_POINTS, BlockStore, checksum_arrays
from blocknerf.updating import (
    SUPERSEDED_KEY,
    UpdateConfig,
    changed_blocks,
    merge_captures,
    merged_plan,
    record_id,
    rollback_block,
    update_store,
)
from partitioning import PartitionConfig, frame_blocks, plan_blocks

pytestmark = pytest.mark.usefixtures("single_torch_thread")

UPDATE_STEPS = 6
"""Steps of each warm-started retraining in these tests (the tiny store trained 80)."""


# -- merging captures ------------------------------------------------------------------------------

K = Intrinsics.from_fov(64, 48, math.radians(85.0))


def frame(root: Path, name: str, xy: tuple[float, float], yaw_deg: float, t: float | None, split: str | None = None) -> Frame:
    """A level camera 2 m up at ``xy`` looking along ``yaw_deg`` (0: +x), its image under ``root``."""
    yaw = math.radians(yaw_deg)
    forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, [xy[0], xy[1], 2.0]
    return Frame(id=f"images/{name}.png", image_path=root / "images" / f"{name}.png", intrinsics=K, c2w=c2w,
                 appearance_index=0, timestamp=t, split=split)


def capture_of(root: Path, *frames: Frame, geo=None) -> Capture:  # noqa: ANN001
    return Capture(root=root, frames=tuple(dataclasses.replace(f, appearance_index=i) for i, f in enumerate(frames)), geo_origin=geo)


def merge(record: Capture, new: Capture) -> object:
    return merge_captures(record, new, distance=1.0, angle_deg=15.0, where="new/transforms.json")


@pytest.mark.parametrize(
    ("offset", "yaw", "t_new", "superseded"),
    [
        ((0.0, 0.0), 0.0, 200.0, "old"),
        ((0.5, 0.3), 10.0, 200.0, "old"),  # within 1 m and 15 degrees: the same place
        ((0.0, 0.0), 0.0, 50.0, "new"),  # the new capture is older: it is the one superseded
        ((0.0, 0.0), 0.0, 100.0, None),  # taken at the same time: neither replaces the other
        ((0.0, 0.0), 0.0, None, "old"),  # no timestamp: the frame being added counts as newer
        ((0.0, 0.0), 90.0, 200.0, None),  # looking another way
        ((1.5, 0.0), 0.0, 200.0, None),  # too far away
    ],
    ids=["same-pose-later", "near-later", "older", "same-time", "untimed", "other-heading", "too-far"],
)
def test_newer_frames_of_the_same_place_supersede_older_ones(tmp_path, offset, yaw, t_new, superseded):
    record = capture_of(tmp_path / "city", frame(tmp_path / "city", "a", (0.0, 0.0), 0.0, 100.0),
                        frame(tmp_path / "city", "b", (10.0, 0.0), 0.0, 100.0))
    new = capture_of(tmp_path / "re", frame(tmp_path / "re", "a", offset, yaw, t_new))
    result = merge(record, new)
    new_id = "../re/images/a.png"  # ids are image paths relative to the record's root
    assert result.added == (new_id,) and result.known == ()
    by_id = {f.id: f for f in result.capture.frames}
    assert list(by_id) == ["images/a.png", "images/b.png", new_id]  # nothing is dropped from the record
    expected = {"old": {"images/a.png": new_id}, "new": {new_id: "images/a.png"}, None: {}}[superseded]
    assert dict(result.superseded) == expected
    assert {i: f.extra[SUPERSEDED_KEY] for i, f in by_id.items() if SUPERSEDED_KEY in f.extra} == expected
    assert by_id[new_id].appearance_index == 2  # after the record's own


def test_merging_the_same_capture_twice_changes_nothing(tmp_path):
    record = capture_of(tmp_path / "city", frame(tmp_path / "city", "a", (0.0, 0.0), 0.0, 100.0))
    re = tmp_path / "re"
    new = capture_of(re, frame(re, "a", (0.0, 0.0), 0.0, 200.0), frame(re, "c", (5.0, 0.0), 0.0, 200.0))
    first = merge(record, new)
    assert first.changed and first.marked == ("images/a.png",)
    again = merge(first.capture, new)
    assert not again.changed and again.added == () and again.known == first.added
    assert again.superseded == first.superseded and again.capture == first.capture


def test_a_recorded_frame_with_another_pose_is_an_input_error(tmp_path):
    record = capture_of(tmp_path / "city", frame(tmp_path / "city", "a", (0.0, 0.0), 0.0, 100.0))
    moved = capture_of(tmp_path / "city", frame(tmp_path / "city", "a", (3.0, 0.0), 0.0, 100.0))
    with pytest.raises(InputError, match=r"new/transforms.json: frame 'images/a.png' is recorded already"):
        merge(record, moved)


def test_poses_of_a_capture_at_another_geo_origin_move_into_the_records_frame(tmp_path):
    home = GeoFrame(LLA(37.7764, -122.4346, 40.0))
    east = home.enu_to_lla(np.array([100.0, 0.0, 0.0]))
    record = capture_of(tmp_path / "city", frame(tmp_path / "city", "a", (0.0, 0.0), 0.0, 1.0), geo=home.origin)
    new = capture_of(tmp_path / "re", frame(tmp_path / "re", "b", (0.0, 0.0), 0.0, 2.0), geo=LLA(*(float(v) for v in east)))
    moved = merge(record, new).capture.frames[-1]
    # 2 m above the other origin = 2 m above (100, 0, 0) here, minus the Earth's curvature (0.8 mm).
    np.testing.assert_allclose(moved.position, [100.0, 0.0, 2.0], atol=2e-3)
    np.testing.assert_allclose(moved.c2w[:3, :3], new.frames[0].c2w[:3, :3], atol=2e-5)  # 100 m: 3e-6 rad apart


def test_merged_plan_moves_training_from_superseded_frames_to_new_ones(tiny_city, tmp_path):
    record = read_capture(tiny_city)
    plan = plan_blocks(record.camera_arrays(), PartitionConfig(spacing_m=60.0))
    # Re-capture 6 frames from the same poses, a month later, as images of their own.
    olds = [f for f in record.frames if f.is_train][::60][:6]
    new = Capture(root=tmp_path, frames=tuple(
        dataclasses.replace(f, id=f"images/{i}.png", image_path=tmp_path / "images" / f"{i}.png", timestamp=f.timestamp + 3e6)
        for i, f in enumerate(olds)
    ))
    result = merge_captures(record, new, distance=0.5, angle_deg=5.0, where="new")
    assert dict(result.superseded) == {o.id: record_id(n.image_path, record.root) for o, n in zip(olds, new.frames)}
    after = merged_plan(plan, result)
    for old, new_frame in zip(olds, new.frames):
        nid = record_id(new_frame.image_path, record.root)
        # The new frame takes the place of the old one in exactly the blocks that had it.
        assert set(after.blocks_of_frame(nid)) == set(plan.blocks_of_frame(old.id)) and after.blocks_of_frame(old.id) == ()
    touched = {b for o in olds for b in plan.blocks_of_frame(o.id)}
    assert set(changed_blocks(plan, after, result)) == touched
    assert [b.radius_m for b in after.blocks] == [b.radius_m for b in plan.blocks]  # regions stay


# -- fingerprints and warm-started runs -----------------------------------------------------------


def test_a_fingerprint_says_what_a_block_is_trained_for_and_a_run_id_how():
    from blocknerf.training.config import TrainConfig
    from blocknerf.training.trainer import WarmStart, run_config, run_id, training_fingerprint
    from blocknerf.model.config import ModelConfig
    from partitioning import BlockSpec

    spec = BlockSpec("b000_000", (0.0, 0.0, 5.0), 50.0, -5.0, 15.0, frames=("a", "b", "t"), shares=(0.5, 0.5, 0.5))
    model, train = ModelConfig(), TrainConfig(steps=400, warmup_steps=40)
    fp = training_fingerprint(spec, model, train, 50.0, held_out={"t"})
    # How a run starts does not change what it is trained for ...
    assert training_fingerprint(spec, model, dataclasses.replace(train, warm_start_steps=7), 50.0, {"t"}) == fp
    # ... nor does a held-out frame; a training frame or a setting does.
    fewer_held_out = dataclasses.replace(spec, frames=("a", "b"), shares=(0.5, 0.5))
    assert training_fingerprint(fewer_held_out, model, train, 50.0, {"t"}) == fp
    assert training_fingerprint(spec, model, train, 50.0, held_out=()) != fp
    assert training_fingerprint(spec, model, dataclasses.replace(train, lr=0.02), 50.0, {"t"}) != fp
    # A plain run is identified by its fingerprint (so old checkpoints stay valid); others are not.
    warm = WarmStart(1, "sha256:x", model=None)
    shorter = dataclasses.replace(train, steps=100)
    assert run_id(fp, None, train, train) == fp
    assert run_id(fp, None, dataclasses.replace(train, checkpoint_every_s=1.0), train) == fp  # (not a setting of what is learned)
    ids = {fp, run_id(fp, None, shorter, train), run_id(fp, warm, shorter, train), run_id(fp, warm, train, train)}
    assert len(ids) == 4
    # A warm run: a quarter of the steps by default, warm-up shortened alike (40 * 100 / 400).
    assert (run_config(train, warm=True).steps, run_config(train, warm=True).warmup_steps) == (100, 10)
    update = run_config(train, warm=True, overrides={"steps": 200, "time_budget_s": 30.0})
    assert (update.steps, update.warmup_steps, update.time_budget_s) == (200, 20, 30.0)
    assert run_config(train, warm=False, overrides={"steps": 100}) == shorter
    with pytest.raises(ConfigError, match="steps must be at least 1"):
        run_config(train, warm=True, overrides={"steps": 0})


def test_warm_start_copies_weights_and_follows_appearance_codes_by_image(tiny_store):
    import torch

    from blocknerf.model.field import BlockField
    from blocknerf.training.trainer import _copy_weights, load_warm_start

    store = BlockStore.open(tiny_store)
    block = store.plan.ids[0]
    s = settings_of(store)
    warm, note = load_warm_start(store, block, 1, s.model, torch.device("cpu"))
    assert warm is not None and note == "warm start from v1" and warm.checksum == store.version_info(block, 1).checksum
    old_ids = warm.model.image_ids
    new_ids = [old_ids[5], "new/image.png", old_ids[0]]
    torch.manual_seed(0)
    fld = BlockField(s.model, num_images=len(new_ids), with_exposure=warm.model.field.with_exposure)
    fresh_code = fld.appearance.weight[1].detach().clone()
    carried = _copy_weights(warm.model, fld, new_ids)
    old = warm.model.field.state_dict()
    assert carried == len(old) - 1  # everything but the appearance table, which differs in size
    for name, tensor in fld.state_dict().items():
        if name != "appearance.weight":
            assert torch.equal(tensor, old[name]), name
    codes = fld.appearance.weight.detach()
    assert torch.equal(codes[0], old["appearance.weight"][5]) and torch.equal(codes[2], old["appearance.weight"][0])
    assert torch.equal(codes[1], fresh_code)  # a new image keeps its fresh code
    # Other model settings: no warm start (the block trains from scratch).
    other = replace(s.model, {"field": {"hidden_dim": 32}})
    assert load_warm_start(store, block, 1, other, torch.device("cpu")) == (None, "v1 has other model settings; trained from scratch")


# -- updating a trained store ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_block(change_city, tiny_store) -> SimpleNamespace:  # noqa: ANN001
    """The frames of the change capture that only one block of ``tiny_store`` sees, written as a
    capture of their own (``path``); ``block``: that block, ``other``: the one they do not touch."""
    store = BlockStore.open(tiny_store)
    capture = read_capture(change_city)
    seen = [[b for b, _ in blocks] for blocks in frame_blocks(store.plan, capture.camera_arrays())]
    counts = {b: sum(s == [b] for s in seen) for b in store.plan.ids}
    block = max(counts, key=counts.get)
    ids = [f.id for f, s in zip(capture.frames, seen) if s == [block]]
    path = write_capture(capture.subset(ids), change_city / "one_block.json")
    (other,) = [b for b in store.plan.ids if b != block]
    return SimpleNamespace(path=path, capture=read_capture(path), block=block, other=other, n=len(ids))


def settings_of(store: BlockStore) -> Settings:
    return replace(Settings(), store.config, where="stored config")


def tree_digest(path: Path) -> str:
    """SHA-256 over the relative names and bytes of every file under ``path``."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(path)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def street_view(store: BlockStore, block_id: str, size: tuple[int, int] = (24, 18)):  # noqa: ANN201
    from partitioning.layouts import heading_poses
    from streaming.protocol import CameraView

    x, y = store.plan.block(block_id).center_xy
    c2w = heading_poses(np.array([[x, y, 2.0]]), np.array([0.3]), math.radians(8.0))[0]
    return CameraView(c2w, Intrinsics.from_fov(size[0], size[1], math.radians(85.0)))


def assert_serves(url: Path) -> dict[str, int]:
    """The store opens read-only, reads its records, and every published block loads (checksum
    verified) and renders finite colours; returns the published versions."""
    store = BlockStore.open(url)
    manifest = store.manifest()
    assert store.plan.ids and len(store.capture) > 0
    for block_id, entry in manifest.blocks.items():
        arrays, _ = store.read_version(block_id, entry.version, verify=True)
        assert checksum_arrays(arrays) == entry.checksum
        view = street_view(store, block_id)
        rgb = load_block(store, block_id).render_view(np.array(view.c2w), view.intrinsics).rgb
        assert rgb.shape == (18, 24, 3) and bool(rgb.isfinite().all())
    return {b: e.version for b, e in manifest.blocks.items()}


def render_until(url: Path, started: threading.Event, stop: threading.Event, frames: list, errors: list) -> None:
    """A streaming reader: renders a view between the two blocks until ``stop`` is set, then two
    frames more (so that it sees what was published last)."""
    from streaming.compositor import Compositor
    from streaming.config import StreamConfig
    from streaming.streamer import BlockStreamer

    try:
        store = BlockStore.open(url)
        cfg = replace(replace(StreamConfig(), store.config.get("stream", {})), {"device": "cpu", "manifest_refresh_frames": 1})
        compositor = Compositor(BlockStreamer.open(store, cfg))
        a, b = store.plan.blocks
        mid = 0.5 * (a.center_xy + b.center_xy)
        from partitioning.layouts import heading_poses
        from streaming.protocol import CameraView

        view = CameraView(heading_poses(np.array([[mid[0], mid[1], 2.0]]), np.array([0.3]), math.radians(8.0))[0],
                          Intrinsics.from_fov(24, 18, math.radians(85.0)))
        after_stop = 0
        while after_stop < 2:
            if stop.is_set():
                after_stop += 1
            frame = compositor.render(view)
            frames.append((frame.manifest_serial, {u.block_id: u.version for u in frame.blocks}, bool(np.isfinite(frame.rgb).all())))
            started.set()
    except Exception as exc:  # noqa: BLE001 - reported to the test thread
        errors.append(exc)
        started.set()


@pytest.fixture(scope="module")
def updated(tiny_store, one_block, tmp_path_factory) -> SimpleNamespace:  # noqa: ANN001
    """A copy of ``tiny_store`` updated in-process with ``one_block``'s capture while a streaming
    reader renders from it in another thread; the state before, the report and the frames seen."""
    import torch

    url = tmp_path_factory.mktemp("updated") / "city.zarr"
    shutil.copytree(tiny_store, url)
    store = BlockStore.open(url)
    before = SimpleNamespace(manifest=store.manifest(), plan=store.plan, capture=store.capture,
                             other_files=tree_digest(url / "blocks" / one_block.other))
    s = settings_of(store)
    started, stop, frames, errors = threading.Event(), threading.Event(), [], []
    reader = threading.Thread(target=render_until, args=(url, started, stop, frames, errors), daemon=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reader.start()
        started.wait()
        report = update_store(
            str(url), one_block.capture, s.model, s.train, ClusterConfig(in_process=True, threads_per_worker=1),
            UpdateConfig(), capture_path=str(one_block.path), overrides={"steps": UPDATE_STEPS},
        )
    finally:
        stop.set()
        reader.join()
        torch.set_num_threads(threads)
    return SimpleNamespace(url=url, before=before, report=report, frames=frames, errors=errors, after=BlockStore.open(url))


def test_update_retrains_and_publishes_only_the_affected_block(updated, one_block):
    report, after, before = updated.report, updated.after, updated.before
    assert report.ok and report.affected == (one_block.block,)
    assert report.published == {one_block.block: 2} and report.train.skipped == {}
    manifest = after.manifest()
    assert manifest.serial == before.manifest.serial + 1 and manifest.records == report.records == 1
    assert manifest.blocks[one_block.block].history == (1,)
    # The other block is untouched: same manifest entry, same bytes on disk.
    assert manifest.blocks[one_block.other] == before.manifest.blocks[one_block.other]
    assert tree_digest(updated.url / "blocks" / one_block.other) == before.other_files
    assert [v.version for v in after.versions(one_block.other)] == [1]
    assert assert_serves(updated.url) == {one_block.block: 2, one_block.other: 1}


def test_the_capture_record_keeps_old_frames_and_the_plan_trains_on_the_new_ones(updated, one_block):
    report, after, before = updated.report, updated.after, updated.before
    capture = after.capture
    assert len(capture) == len(before.capture) + one_block.n  # nothing dropped, everything new added
    assert len(report.added) == one_block.n and report.superseded
    by_id = {f.id: f for f in capture.frames}
    for old, new in report.superseded.items():
        assert by_id[old].extra[SUPERSEDED_KEY] == new and by_id[new].timestamp > by_id[old].timestamp
    frames = set(after.plan.block(one_block.block).frames)
    assert not frames & set(report.superseded) and set(report.added) - set(report.superseded) <= frames
    assert after.plan.block(one_block.other) == before.plan.block(one_block.other)


def test_the_new_version_records_why_it_was_made(updated, one_block):
    from blocknerf.training.trainer import training_fingerprint

    after = updated.after
    (info,) = [v for v in after.versions(one_block.block) if v.version == 2]
    cause = info.attrs["caused_by"]
    assert info.attrs["reason"] == "update" and info.created.startswith("20")
    assert cause["capture"] == str(one_block.path) and cause["count"] == len(cause["frames"]) > 0
    assert set(cause["frames"]) <= set(updated.report.added) and set(cause["superseded"]) <= set(updated.report.superseded)
    train = info.attrs["train"]
    assert train["steps"] == UPDATE_STEPS and train["warm_start"]["version"] == 1 and train["warm_start"]["carried_params"] > 0
    # Trained for the block as the published plan has it now: up to date for `train` and `update`.
    s = settings_of(after)
    held_out = {f.id for f in after.capture.frames if not f.is_train}
    spec = after.plan.block(one_block.block)
    assert info.attrs["fingerprint"] == training_fingerprint(spec, s.model, s.train, after.plan.far_m, held_out)
    assert after.versions(one_block.block)[0].attrs.get("reason", "train") == "train"


def test_a_second_identical_update_does_nothing(updated, one_block, capsys):
    manifest = updated.after.manifest()
    argv = ["update", str(updated.url), str(one_block.path), "--in-process", "--steps", str(UPDATE_STEPS), "--json", "--all"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added_frames"], report["known_frames"]) == (0, one_block.n)
    assert report["published"] == {} and report["records"] is None and report["manifest_serial"] is None
    assert report["up_to_date"] == {one_block.block: "up to date (v2)"}
    assert updated.after.manifest() == manifest
    assert [v.version for v in updated.after.versions(one_block.block)] == [1, 2]


def test_a_reader_rendering_during_the_update_sees_whole_versions(updated, one_block):
    assert updated.errors == []
    before, after = updated.before.manifest, updated.after.manifest()
    published = {before.serial: {b: e.version for b, e in before.blocks.items()},
                 after.serial: {b: e.version for b, e in after.blocks.items()}}
    assert len(updated.frames) >= 3
    for serial, versions, finite in updated.frames:
        assert finite and versions == {b: published[serial][b] for b in versions}  # one manifest per frame
    serials = [serial for serial, _, _ in updated.frames]
    assert serials == sorted(serials) and serials[0] == before.serial and serials[-1] == after.serial


def test_info_lists_versions_with_dates_and_causes(updated, one_block, capsys):
    assert main(["info", str(updated.url), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["id"]: r for r in doc["blocks"]}
    assert rows[one_block.block]["version"] == 2 and rows[one_block.other]["version"] == 1
    v1, v2 = rows[one_block.block]["versions"]
    assert (v1["reason"], v1["published"], v1["was_published"]) == ("train", False, True)
    assert (v2["reason"], v2["published"], v2["warm_start"]) == ("update", True, 1)
    assert v2["caused_by"]["count"] == len(v2["caused_by"]["frames"]) and v2["created"]
    assert main(["info", str(updated.url)]) == 0
    text = capsys.readouterr().out
    assert f"{one_block.block} v2" in text and "new frames" in text and "warm start from v1" in text


def test_rollback_republishes_the_previous_version_and_back(updated, one_block, tmp_path, capsys):
    url = tmp_path / "city.zarr"
    shutil.copytree(updated.url, url)
    assert main(["rollback", str(url), one_block.block]) == 0
    assert f"{one_block.block}: published v3, a copy of v1 (replacing v2)" in capsys.readouterr().out
    store = BlockStore.open(url)
    manifest = store.manifest()
    v1, v3 = store.version_info(one_block.block, 1), store.version_info(one_block.block, 3)
    assert manifest.version_of(one_block.block) == 3 and v3.checksum == v1.checksum == manifest.blocks[one_block.block].checksum
    assert v3.attrs["reason"] == "rollback" and v3.attrs["caused_by"] == {"rollback_to": 1, "replaced": 2}
    assert manifest.blocks[one_block.block].history == (1, 2)
    # Rolling back again undoes the rollback.
    assert rollback_block(BlockStore.open(url, writable=True), one_block.block) == (4, 2)
    assert BlockStore.open(url).version_info(one_block.block, 4).checksum == store.version_info(one_block.block, 2).checksum
    assert assert_serves(url)[one_block.block] == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--to", "9"], "has no complete version 9"),
        (["--to", "2"], "v2 is the published version already"),
    ],
    ids=["missing-version", "already-published"],
)
def test_rollback_refuses_what_it_cannot_do(updated, one_block, argv, message, capsys):
    before = updated.after.manifest()
    assert main(["rollback", str(updated.url), one_block.block, *argv]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(StoreError, match="no version was published before v1"):
        rollback_block(BlockStore.open(updated.url, writable=True), one_block.other)
    assert updated.after.manifest() == before


@pytest.mark.parametrize(("keep", "left"), [(1, [2]), (2, [1, 2])], ids=["keep-1", "keep-2"])
def test_gc_keeps_the_published_version_and_deletes_old_records(updated, one_block, tmp_path, keep, left, capsys):
    url = tmp_path / "city.zarr"
    shutil.copytree(updated.url, url)
    store = BlockStore.open(url, writable=True)
    # A version an interrupted update left behind: complete, never published.
    arrays, attrs = store.read_version(one_block.block, 2)
    store.write_version(one_block.block, arrays, {"reason": "update"})
    assert main(["gc", str(url), "--keep", str(keep), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [tuple(v) for v in out["versions"]] == [(one_block.block, v) for v in (1, 3) if v not in left] and out["records"] == [0]
    assert [v.version for v in store.versions(one_block.block)] == left
    assert [v.version for v in store.versions(one_block.other)] == [1]  # published, never deleted
    assert assert_serves(url) == {one_block.block: 2, one_block.other: 1}


# -- crash safety ----------------------------------------------------------------------------------

FAULTS = list(FAULT_POINTS)


def run_update_command(url: Path, capture: Path, fault: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    cmd = [sys.executable, "-m", "blocknerf", "update", str(url), str(capture), "--steps", "3",
           "--in-process", "--threads-per-worker", "1", "--json", "--all"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("fault", FAULTS)
def test_an_update_killed_at_any_point_leaves_a_working_store(tiny_store_copy, one_block, fault):
    url = tiny_store_copy
    before = BlockStore.open(url).manifest()
    recorded = len(BlockStore.open(url).capture)
    other_files = tree_digest(url / "blocks" / one_block.other)
    proc = run_update_command(url, one_block.path, fault)
    assert proc.returncode == FAULT_EXIT_CODE, proc.stderr  # killed at that very point
    assert assert_serves(url) == {one_block.block: 1, one_block.other: 1}
    assert BlockStore.open(url).manifest() == before  # nothing of the update is visible
    assert tree_digest(url / "blocks" / one_block.other) == other_files
    # Running the update again finishes it, reusing a version that was complete before the kill.
    s = settings_of(BlockStore.open(url))
    report = update_store(
        str(url), one_block.capture, s.model, s.train, ClusterConfig(in_process=True, threads_per_worker=1),
        UpdateConfig(), capture_path=str(one_block.path), overrides={"steps": 3},
    )
    assert report.ok
    store = BlockStore.open(url)
    versions = [v.version for v in store.versions(one_block.block)]
    expected = {"during_version_write": [1, 3]}.get(fault, [1, 2])  # v2 was left incomplete there
    assert versions == expected and store.manifest().version_of(one_block.block) == expected[-1]
    assert store.manifest().records == 1 and len(store.capture) == recorded + one_block.n
    assert tree_digest(url / "blocks" / one_block.other) == other_files
    assert assert_serves(url)[one_block.other] == 1
