"""``blocknerf update STORE PHOTOS_DIR``: new photos of an ingested street register into the
ingest's reconstruction (its cameras fixed), land on their true poses through the recorded
similarity, and retrain the blocks they touch; without ingest provenance, one line and exit 2."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from blocknerf.capture.transforms import read_capture
from blocknerf.cli.main import main
from blocknerf.store import BlockStore
from partitioning import frame_blocks

pycolmap = pytest.importorskip("pycolmap")
pytestmark = pytest.mark.usefixtures("single_torch_thread")

STREET = dict(streets=("ns0",), headings_deg=(0.0, 25.0, 335.0), spacing_m=3.0)
"""The one-street capture of tests/test_ingest.py: forward-looking cameras 3 m apart."""
NEW_STOPS = (4, 8)
"""Rig positions left out of the ingest and photographed again a month later."""
LATER_S = 30 * 86400.0
ONE_THREAD = ["--sfm-threads", "1", "--in-process", "--threads-per-worker", "1"]


def _store_config(path: Path) -> Path:
    """The tiny preset, two blocks along the street, a few dozen steps."""
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "blocknerf" / "presets" / "tiny.yaml").read_text())
    cfg["partition"] = {"strategy": "clusters", "clusters": 2, "spacing_m": 20.0}
    cfg["train"] = {**cfg["train"], "steps": 30}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _later_copy(src: Path, dst: Path) -> float:
    """``src`` re-saved as ``dst`` with its EXIF time ``LATER_S`` later; returns that time."""
    from PIL import Image

    from blocknerf.ingest.exif import exif_bytes, read_exif

    exif = read_exif(src)
    later = dataclasses.replace(exif, timestamp=exif.timestamp + LATER_S)
    with Image.open(src) as img:
        img.save(dst, exif=exif_bytes(later), quality=95)
    return later.timestamp


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The street ingested without the rig positions ``NEW_STOPS``, a store of it trained, and
    those positions' photos taken a month later in a folder of their own."""
    from blocknerf.synth import synthesize
    from blocknerf.synth.config import SynthConfig

    root = tmp_path_factory.mktemp("street_update")
    truth = synthesize(root / "synth", SynthConfig(grid=(1, 1), width=256, height=192, exif=True, workers=1,
                                                    contact_sheet=False, **STREET), progress=False)
    photos, new = root / "photos", root / "new_photos"
    photos.mkdir()
    new.mkdir()
    times = {}
    for f in truth.frames:
        name = Path(f.id).name
        if name.startswith("ns0f_p0") and int(name[6:9]) < 12:
            if int(name[6:9]) in NEW_STOPS:
                times[name] = _later_copy(f.image_path, new / name)
            else:
                shutil.copy(f.image_path, photos / name)
    out, store = root / "out", root / "street.zarr"
    assert main(["ingest", str(photos), str(out), "--threads", "1"]) == 0
    assert main(["partition", str(out), "--store", str(store), "--config", str(_store_config(root / "tiny.yaml"))]) == 0
    assert main(["train", str(store), "--in-process", "--threads-per-worker", "1"]) == 0
    return dict(root=root, truth=truth, out=out, store=store, new=new, times=times)


@pytest.fixture(scope="module")
def updated(street: dict) -> dict:
    """``update STORE NEW_PHOTOS --json`` on the trained store; the store before, the outcome."""
    import contextlib
    import io

    before = BlockStore.open(street["store"]).manifest()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["update", str(street["store"]), str(street["new"]), "--steps", "4", "--json", "--all", *ONE_THREAD])
    assert code == 0
    return dict(before=before, outcome=json.loads(buffer.getvalue()))


def test_new_photos_register_onto_their_true_poses(street: dict, updated: dict) -> None:
    registration = updated["outcome"]["registration"]
    work = Path(registration["work"])
    assert work.parent == street["out"] / "updates"  # beside the capture, inside its directory
    assert registration["total_images"] == registration["registered_images"] == 3 * len(NEW_STOPS)
    assert registration["unregistered"] == []
    new = read_capture(work)
    capture = read_capture(street["out"])
    assert new.geo_origin == capture.geo_origin
    assert sorted(Path(f.id).name for f in new.frames) == sorted(street["times"])
    truth = {Path(f.id).name: f for f in street["truth"].frames}
    for f in new.frames:
        name = Path(f.id).name
        assert f.timestamp == pytest.approx(street["times"][name], abs=1e-2)  # the later EXIF time
        assert f.gps is not None
        # The recorded similarity puts the new camera where the synthetic rig was.
        centre = street["truth"].geo.lla_to_enu(new.geo.enu_to_lla(f.c2w[:3, 3]))
        assert np.linalg.norm(centre - truth[name].c2w[:3, 3]) < 0.5
        rel = truth[name].c2w[:3, :3].T @ f.c2w[:3, :3]
        assert np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1))) < 1.0
    # The old cameras and the camera model did not move.
    old = pycolmap.Reconstruction(street["out"] / "colmap" / "model")
    both = pycolmap.Reconstruction(work / "colmap" / "model")
    by_name = {im.name: im for im in both.images.values()}
    for image in old.images.values():
        moved = by_name[image.name].cam_from_world().matrix() - image.cam_from_world().matrix()
        assert np.abs(moved).max() < 1e-9
    assert np.allclose(both.cameras[1].params, old.cameras[1].params)


def test_the_update_retrains_the_blocks_the_new_frames_touch(street: dict, updated: dict) -> None:
    store = BlockStore.open(street["store"])
    new = read_capture(Path(updated["outcome"]["registration"]["work"]))
    touched = {b for blocks in frame_blocks(store.plan, new.camera_arrays()) for b, _ in blocks}
    outcome, before = updated["outcome"], updated["before"]
    assert touched and outcome["added_frames"] == len(new.frames)
    assert set(outcome["published"]) == touched
    after = store.manifest()
    for block_id, entry in before.blocks.items():
        expected = entry.version + 1 if block_id in touched else entry.version
        assert after.version_of(block_id) == expected
    recorded = {f.id for f in store.capture.frames}
    assert {f"updates/{Path(outcome['registration']['work']).name}/{f.id}" for f in new.frames} <= recorded


def test_the_same_photos_again_change_nothing(street: dict, updated: dict, capsys: pytest.CaptureFixture) -> None:
    serial = BlockStore.open(street["store"]).manifest().serial
    assert main(["update", str(street["store"]), str(street["new"]), "--steps", "4", "--all", *ONE_THREAD]) == 0
    out = capsys.readouterr().out
    assert "registered 6/6 new photos" in out and "nothing to publish" in out
    assert BlockStore.open(street["store"]).manifest().serial == serial


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def _store_of_a_copy(street: dict, to: Path, *, keep_ingest: bool) -> Path:
    """A store partitioned from a copy of the ingest output without ``colmap/`` (and, unless
    ``keep_ingest``, without the ``ingest`` record: a capture of poses from elsewhere)."""
    shutil.copytree(street["out"], to, ignore=shutil.ignore_patterns("colmap", "updates"))
    if not keep_ingest:
        doc = json.loads((to / "transforms.json").read_text())
        del doc["ingest"]
        (to / "transforms.json").write_text(json.dumps(doc))
    store = to.with_suffix(".zarr")
    assert main(["partition", str(to), "--store", str(store), "--spacing", "20"]) == 0
    return store


def test_photos_need_a_store_made_by_ingest(street: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plain = _store_of_a_copy(street, tmp_path / "plain", keep_ingest=False)
    capsys.readouterr()
    err = _one_line_error(["update", str(plain), str(street["new"])], capsys)
    assert "not made by 'blocknerf ingest'" in err and "run 'blocknerf ingest" in err and str(tmp_path / "plain") in err
    # An ingest whose reconstruction is gone.
    gone = _store_of_a_copy(street, tmp_path / "gone", keep_ingest=True)
    capsys.readouterr()
    err = _one_line_error(["update", str(gone), str(street["new"])], capsys)
    assert "colmap" in err and "run 'blocknerf ingest" in err
    # Photos of another camera (another aspect ratio) than the capture's.
    from PIL import Image

    other = tmp_path / "other_camera"
    other.mkdir()
    Image.new("RGB", (200, 200), (90, 120, 60)).save(other / "square.jpg")
    err = _one_line_error(["update", str(street["store"]), str(other), "--work", str(tmp_path / "w")], capsys)
    assert "square.jpg" in err and "mixed cameras" in err
    # A photo the capture was made from, given again.
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(street["root"] / "photos" / "ns0f_p000_h000.jpg", again)
    err = _one_line_error(["update", str(street["store"]), str(again), "--work", str(tmp_path / "wa")], capsys)
    assert "ns0f_p000_h000.jpg" in err and "already in the capture" in err
    # Photos of nothing in the capture: none registers (an error naming the folder), and the
    # interrupted work directory is cleared by the next try rather than refused.
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (192, 256, 3), dtype=np.uint8)).save(noise / f"noise{k}.jpg")
    for _ in range(2):
        err = _one_line_error(["update", str(street["store"]), str(noise), "--work", str(tmp_path / "wn"), "--sfm-threads", "1"], capsys)
        assert str(noise) in err and "none of the 2 photos registered" in err
