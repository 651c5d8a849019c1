"""``blocknerf demo --quick`` end to end: every stage as a user would run it, and what it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blocknerf.capture import load_image, read_capture
from blocknerf.cli.main import main

pytestmark = pytest.mark.slow


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10.0 * np.log10(np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", str(out), "--quick", "--workers", "1"]) == 0
    return out


def test_every_stage_ran_as_a_blocknerf_command(demo: Path) -> None:
    facts = json.loads((demo / "demo.json").read_text())
    stages = facts["stages"]
    assert len(stages) == 19  # the twentieth, writing the report, comes after these facts
    commands = [s["command"] for s in stages if s["command"]]
    verbs = [c.split()[1] for c in commands]
    assert verbs == ["synth", "partition", "train", "eval", "render", "render", "render", "info", "synth", "eval", "update", "eval",
                     "synth", "partition", "train", "render", "compose", "compose", "render"]
    assert all(s["seconds"] > 0 for s in stages)


def test_the_blocks_are_trained_and_better_than_a_grey_guess(demo: Path) -> None:
    ev = json.loads((demo / "eval.json").read_text())
    assert len(ev["blocks"]) == 2
    for block in ev["blocks"].values():
        assert block["views"] > 0 and block["version"] == 1
    # Against the best flat image of each held-out view (its own mean colour, which no model can
    # know: about 15 dB on this city), the trained composite must be better on the same views. The
    # demo trains by time (40 s a block), so the margin is what a busy machine still reaches.
    composite = ev["composite"]
    assert composite["views"] == 3
    by_id = {f.id: f for f in read_capture(demo / "capture").test_frames}
    images = [load_image(by_id[v["frame"]].image_path) / 255.0 for v in composite["per_view"]]
    flat = [psnr_db(img, img.mean(axis=(0, 1), keepdims=True)) for img in images]
    assert composite["psnr"] > float(np.mean(flat)) + 0.5


def test_the_update_republished_only_what_changed_and_kept_the_rest(demo: Path) -> None:
    facts = json.loads((demo / "demo.json").read_text())
    before, after = facts["update"]["before"]["published"], facts["update"]["after"]["published"]
    assert set(before) == set(after)
    changed = {b for b in after if after[b] != before[b]}
    assert changed, "the update republished no block"
    assert all(after[b] == before[b] + 1 for b in changed)
    assert facts["update"]["after"]["views"] == facts["update"]["before"]["views"] == 4


def test_the_report_flythrough_and_map_are_real_files(demo: Path) -> None:
    page = (demo / "report.html").read_text()
    for block in json.loads((demo / "demo.json").read_text())["blocks"]:
        assert block["id"] in page
    frames = sorted((demo / "flythrough_frames").glob("*.png"))
    assert len(frames) == 16
    first, last = (np.asarray(Image.open(p), dtype=np.float32) for p in (frames[0], frames[-1]))
    assert first.shape == (72, 96, 3)
    assert np.abs(first - last).mean() > 1.0  # the camera moved: the frames differ
    assert (demo / "flythrough.mp4").stat().st_size > 1000
    geo = json.loads((demo / "blocks.geojson").read_text())
    assert len(geo["features"]) >= 2


def _frame(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def test_baked_and_neural_render_the_same_frames_alike_and_baked_is_faster(demo: Path) -> None:
    r = json.loads((demo / "demo.json").read_text())["renderers"]
    neural, baked = (sorted((demo / "renderers" / name).glob("*.png")) for name in ("neural", "baked"))
    assert [p.name for p in neural] == [p.name for p in baked] and len(neural) == r["neural"]["frames"] == 4
    # The PSNR between the two renders, from the frames themselves: finite (they differ) and close.
    values = [psnr_db(_frame(n), _frame(b)) for n, b in zip(neural, baked)]
    assert all(np.isfinite(v) and v > 15.0 for v in values), values
    assert r["psnr"] == pytest.approx(np.mean(values), abs=0.01)
    # Seconds per frame as each render recorded them (its stats), not timed here.
    stats = {name: json.loads((demo / "renderers" / f"{name}_stats.json").read_text())["summary"] for name in ("neural", "baked")}
    assert stats["baked"]["render_ms_median"] < stats["neural"]["render_ms_median"]
    assert r["baked"]["s_per_frame"] == pytest.approx(stats["baked"]["render_ms_median"] / 1e3, abs=1e-4)
    assert r["baked"]["frame_s"] == pytest.approx(stats["baked"]["frame_ms_median"] / 1e3, abs=1e-4)


def test_the_kiosk_is_placed_beside_the_drive_and_changes_only_the_frame_around_it(demo: Path) -> None:
    from blocknerf.store import BlockStore

    c = json.loads((demo / "demo.json").read_text())["composition"]
    manifest = BlockStore.open(demo / "city.zarr").manifest()
    assert sorted(manifest.objects) == ["kiosk"] and manifest.objects["kiosk"].placement["position"] == c["position"]
    assert c["list"].startswith("kiosk") and "object v1" in c["list"]
    assert c["object_eval"]["views"] > 0
    shown = next(f for f in c["frames"] if f["image"] == c["shown"])
    before, after = (_frame(demo / "composition" / which / c["shown"]) for which in ("before", "after"))
    assert before.shape == (144, 192, 3) and list(before.shape[1::-1]) == c["size"]
    col0, row0, col1, row1 = shown["box"]
    inside = np.zeros(before.shape[:2], dtype=bool)
    inside[row0:row1, col0:col1] = True
    change = np.abs(after - before).max(axis=2)
    # Inside the box the object's bounding box projects to the frame changed; elsewhere next to nothing.
    assert change[inside].mean() > 0.02, change[inside].mean()
    assert change[inside].mean() > 5 * change[~inside].mean(), (change[inside].mean(), change[~inside].mean())
    assert (demo / "report.html").read_text().count("composition/after/" + c["shown"]) == 1
