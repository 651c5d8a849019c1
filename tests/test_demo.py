"""The demo's presets, the stages it runs and the facts it gathers, its output directory rules, and
the report page it writes."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from blocknerf.capture import read_capture
from blocknerf.capture.images import save_image
from blocknerf.cli.main import main
from blocknerf.cli.settings import Settings
from blocknerf.config import preset_names, replace
from blocknerf.presentation import demo as demo_module
from blocknerf.presentation.demo import PRESET_NAMES, DemoPreset, DemoStageFailed, run_demo
from blocknerf.presentation.report import format_duration, write_report
from blocknerf.store import BlockStore


def test_the_preset_names_are_the_shipped_demo_presets():
    assert sorted(f"demo-{name}" for name in PRESET_NAMES) == sorted(p for p in preset_names() if p.startswith("demo-"))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_is_a_valid_config(name):
    preset = DemoPreset.load(name)
    assert preset.name == name
    settings = replace(Settings(), preset.config(), where=f"preset demo-{name}")
    assert settings.partition.strategy == "clusters" and settings.partition.clusters == preset.blocks
    assert settings.train.time_budget_s == preset.train_s
    # The presets are bounded by time: their step count must never be what stops training.
    assert settings.train.steps >= 10_000


FAKE_FRAME_MS = {"neural": 500.0, "baked": 20.0}
"""Median frame times the fake ``render`` records per renderer (the flythrough's is baked)."""
FAKE_GREY = {"neural": 128, "baked": 138}
"""The grey each renderer's fake frames are: 10 levels apart, 20 log10(255 / 10) = 28.13 dB."""


class FakeBlocknerf:
    """``blocknerf ARGV`` for ``run_demo`` without training: ``partition`` and ``synth --object``
    run for real (on the tiny city, and a small kiosk), the other commands only write the files the
    demo reads back: a render writes flat grey frames, with a white square where the placed
    object would be once ``compose add`` ran. Records every argv; ``fail``: the subcommand that
    exits 1."""

    def __init__(self, city: Path, fail: str | None = None) -> None:
        self.city = city
        self.fail = fail
        self.argv: list[list[str]] = []
        self.composite_psnr = iter([15.5, 14.5, 19.75])  # the city, then the changed area before and after
        self.placed = False

    def __call__(self, argv: list[str]) -> int:
        self.argv.append(argv)
        verb = argv[0]
        if verb == self.fail:
            return 1
        if verb == "synth" and "--object" in argv:
            return main(argv)
        if verb == "synth":
            shutil.copytree(self.city, argv[1])
        elif verb == "partition":
            return main(argv)
        elif verb == "compose" and argv[2] == "add":
            self.placed = True
        elif verb == "compose" and argv[2] == "list":
            print("kiosk            at (1.00, 2.00, 0.00)  object v1")
        elif verb == "eval":
            psnr = next(self.composite_psnr)
            composite = {"views": 3, "psnr": psnr, "ssim": 0.5, "per_view": [{"frame": "images/a.png", "psnr": psnr, "ssim": 0.5}]}
            result = Path(argv[argv.index("--out") + 1])
            result.parent.mkdir(parents=True, exist_ok=True)
            result.write_text(json.dumps({"blocks": {}, "composite": composite}))
        elif verb == "render":
            self.render(argv)
        return 0

    def render(self, argv: list[str]) -> None:
        renderer = argv[argv.index("--renderer") + 1] if "--renderer" in argv else "baked"
        if "--path" in argv:
            path = json.loads(Path(argv[argv.index("--path") + 1]).read_text())
            frames, size = len(path["camera_path"]), (path["render_width"], path["render_height"])
        else:
            frames, size = int(argv[argv.index("--frames") + 1]), tuple(int(v) for v in argv[argv.index("--size") + 1].split("x"))
        summary = {"frames": frames, "size": list(size), "frame_ms_median": FAKE_FRAME_MS[renderer] + 10.0,
                   "render_ms_median": FAKE_FRAME_MS[renderer], "frames_per_s": 0.5,
                   "blocks_per_frame_mean": 1.25, "hit_rate": 0.875, "peak_cache_bytes": 3 << 20, "budget_bytes": 1 << 30,
                   "pop": {"switches": 1, "max_change_at_switch": 0.02, "max_change_elsewhere": 0.03}}
        stats = Path(argv[argv.index("--stats") + 1])
        stats.parent.mkdir(parents=True, exist_ok=True)
        stats.write_text(json.dumps({"summary": summary}))
        if "--write-path" in argv:
            poses = [f.c2w for f in read_capture(self.city).frames[:4]]
            doc = {"render_width": size[0], "render_height": size[1], "camera_path": [{"camera_to_world": c.reshape(-1).tolist(), "fov": 60.0} for c in poses]}
            Path(argv[argv.index("--write-path") + 1]).write_text(json.dumps(doc))
        if "--frames-dir" in argv:
            for i in range(frames):
                image = np.full((size[1], size[0], 3), FAKE_GREY[renderer], dtype=np.uint8)
                if self.placed:
                    image[: size[1] // 2, : size[0] // 2] = 255  # the "object": the top left quarter
                save_image(Path(argv[argv.index("--frames-dir") + 1]) / f"{i:05d}.png", image)


def test_the_demo_runs_each_stage_as_the_command_it_prints_and_reports_what_they_wrote(tiny_city, tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module, "screenshot", lambda report, png: None)  # no browser in a unit test
    fake, printed = FakeBlocknerf(tiny_city), []
    out = tmp_path / "demo"
    preset = DemoPreset.load("quick")
    facts = run_demo(out, command=fake, preset=preset, workers=3, echo=printed.append)

    config = str(out / "demo.yaml")
    assert yaml.safe_load((out / "demo.yaml").read_text()) == preset.config()
    assert [a[0] for a in fake.argv] == ["synth", "partition", "train", "eval", "render", "render", "render", "info", "synth", "eval", "update",
                                         "eval", "synth", "partition", "train", "render", "compose", "compose", "render"]
    assert len(facts["stages"]) == demo_module.STAGES - 1  # the last, writing the report, comes after the facts
    synth, partition, train = fake.argv[:3]
    assert synth == ["synth", str(out / "capture"), "--grid", preset.grid, "--size", preset.size, "--config", config]
    assert partition[:4] == ["partition", str(out / "capture"), "--store", str(out / "city.zarr")] and config in partition
    assert train == ["train", str(out / "city.zarr"), "--workers", "3"]
    # Each stage is printed and recorded as the command it ran.
    commands = ["blocknerf " + shlex.join(argv) for argv in fake.argv]
    assert [s["command"] for s in facts["stages"]] == commands
    assert all(any(line.endswith(f"$ {c}") for line in printed) for c in commands)

    # The facts are plain JSON, written as demo.json, and hold what the stages wrote.
    assert json.loads((out / "demo.json").read_text()) == facts
    assert facts["preset"] == "quick" and facts["eval"] == json.loads((out / "eval.json").read_text())
    assert (facts["update"]["before"]["psnr"], facts["update"]["after"]["psnr"]) == (14.5, 19.75)
    assert facts["update"]["before"]["published"] == facts["update"]["after"]["published"] == {}  # nothing trained
    assert facts["flythrough"]["summary"]["frames"] == 16
    plan = BlockStore.open(out / "city.zarr").plan
    assert [b["id"] for b in facts["blocks"]] == list(plan.ids) and len(plan.ids) == preset.blocks
    assert all(b["published"] is None and b["versions"] == [] for b in facts["blocks"])
    assert (out / "report.html").exists()


def test_the_demo_compares_the_renderers_on_the_same_frames_and_places_the_object_with_compose(tiny_city, tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module, "screenshot", lambda report, png: None)
    fake = FakeBlocknerf(tiny_city)
    out = tmp_path / "demo"
    preset = DemoPreset.load("quick")
    facts = run_demo(out, command=fake, preset=preset, echo=lambda line: None)

    # Both renderers render the same frames of the drive, at the preset's size.
    neural, baked = (a for a in fake.argv if a[0] == "render" and "--renderer" in a)
    assert neural[neural.index("--renderer") + 1] == "neural" and baked[baked.index("--renderer") + 1] == "baked"
    strip = lambda argv: [w for w in argv if "neural" not in w and "baked" not in w]  # noqa: E731
    assert strip(neural) == strip(baked)
    assert ["--frames", str(preset.renderer_frames), "--size", preset.renderer_size] == neural[3:7]
    r = facts["renderers"]
    assert (r["neural"]["s_per_frame"], r["baked"]["s_per_frame"], r["speedup"]) == (0.5, 0.02, 25.0)
    assert (r["neural"]["frame_s"], r["baked"]["frame_s"]) == (0.51, 0.03)  # loads waited for included
    assert r["psnr"] == 28.13 and [f["psnr"] for f in r["per_frame"]] == [28.13] * preset.renderer_frames

    # The kiosk: captured at the preset's size and views, a store of its own with the object
    # settings, trained, then placed into the city store; the pass-by renders the same path twice.
    synth, partition, train = (a for a in fake.argv[12:15])
    assert synth == ["synth", str(out / "kiosk"), "--object", "kiosk", "--size", preset.size, "--views", str(preset.object_views)]
    assert partition[:4] == ["partition", str(out / "kiosk"), "--store", str(out / "kiosk.zarr")] and str(out / "object.yaml") in partition
    assert yaml.safe_load((out / "object.yaml").read_text())["train"]["time_budget_s"] == preset.object_train_s
    assert train[:2] == ["train", str(out / "kiosk.zarr")]
    assert len(BlockStore.open(out / "kiosk.zarr").plan.ids) == 1
    before, add, listing, after = fake.argv[15:]
    assert add[:6] == ["compose", str(out / "city.zarr"), "add", str(out / "kiosk.zarr"), "--name", "kiosk"]
    assert before[before.index("--path") + 1] == after[after.index("--path") + 1]
    c = facts["composition"]
    assert c["command"] == "blocknerf " + shlex.join(add) and c["list_command"] == "blocknerf " + shlex.join(listing)
    assert c["list"] == "kiosk            at (1.00, 2.00, 0.00)  object v1"  # what `compose list` printed
    assert c["object_eval"] is None  # the fake trains nothing
    assert len(c["frames"]) == preset.pass_by_frames and c["size"] == [int(v) for v in preset.pass_by_size.split("x")]
    # The fake's "object" whitens the top left quarter of the grey frames: it changed (255 - 138) / 255.
    changed = [f for f in c["frames"] if max(f["change_inside"] or 0, f["change_outside"] or 0) > 0]
    assert changed == c["frames"]
    assert json.loads((out / "demo.json").read_text()) == facts


def test_a_failing_stage_stops_the_demo_with_its_exit_code(tiny_city, tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module, "screenshot", lambda report, png: None)
    fake = FakeBlocknerf(tiny_city, fail="train")
    with pytest.raises(DemoStageFailed, match=r"stage 'train every block .*' failed \(exit 1\): blocknerf train ") as err:
        run_demo(tmp_path / "demo", command=fake, preset=DemoPreset.load("quick"), echo=lambda line: None)
    assert err.value.stage.exit_code == 1
    assert [a[0] for a in fake.argv] == ["synth", "partition", "train"]
    assert not (tmp_path / "demo" / "report.html").exists()


def test_the_demo_refuses_a_directory_that_is_not_an_earlier_demo(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["demo", str(out), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an earlier demo" in err[0] and str(out) in err[0]
    assert (out / "thesis.tex").read_text() == "precious"


def _facts(out: Path) -> dict:
    """Facts as run_demo gathers them, for a two-block demo, with the images they refer to."""
    for rel in ("map.png", "heldout/000_a.png", "update/before/000_c.png", "update/after/000_c.png",
                *(f"flythrough_frames/{i:05d}.png" for i in range(8))):
        save_image(out / rel, np.full((6, 8, 3), 0.5, dtype=np.float32))
    return {
        "preset": "quick",
        "seconds": 172.4,
        "stages": [
            {"title": "train every block", "command": "blocknerf train city.zarr", "seconds": 61.0},
            {"title": "render the changed area before the update", "command": None, "seconds": 4.2},
        ],
        "eval": {
            "blocks": {"b0": {"version": 1, "views": 3, "psnr": 21.5, "ssim": 0.61}, "b1": {"version": 1, "views": 3, "psnr": 20.25, "ssim": 0.58}},
            "composite": {"views": 3, "psnr": 22.126, "ssim": 0.64, "best_block": "b0", "best_block_psnr": 21.9, "oracle_block_psnr": 22.4,
                          "per_view": [{"frame": "images/a.png", "psnr": 22.0, "ssim": 0.6, "blocks": [{"id": "b0", "weight": 0.7}], "image": "000_a.png"}]},
        },
        "flythrough": {"summary": {"frames": 16, "frames_per_s": 0.5, "peak_cache_bytes": 3 << 20}},
        "blocks": [
            {"id": "b0", "center": [0, 0, 0], "radius_m": 60.0, "frames": 400, "published": 2, "versions": []},
            {"id": "b1", "center": [60, 0, 0], "radius_m": 60.0, "frames": 390, "published": 1, "versions": []},
        ],
        "update": {
            "before": {"psnr": 14.5, "published": {"b0": 1, "b1": 1}, "per_view": [{"frame": "c", "psnr": 14.5, "image": "000_c.png"}]},
            "after": {"psnr": 19.75, "published": {"b0": 2, "b1": 1}, "per_view": [{"frame": "c", "psnr": 19.75, "image": "000_c.png"}]},
        },
        "files": ["map.png", "report.html"],
    }


def test_the_report_shows_the_measured_figures_and_links_only_files_that_exist(tmp_path):
    facts = _facts(tmp_path)
    page = write_report(tmp_path, facts).read_text()
    for figure in ("22.13 dB", "21.50 dB", "20.25 dB", "0.640", "frames/s 0.50", "peak block memory 3.0 MiB", "14.50 dB before, 19.75 dB after", "2 min 52 s", "1 min 01 s"):
        assert figure in page, figure
    # The block the update retrained is marked new; the other is not.
    assert re.search(r"class='tag new'>b0 v2<", page) and re.search(r"class='tag'>b1 v1<", page)
    links = re.findall(r"(?:src|poster)='([^']+)'", page)
    assert "flythrough.mp4" in links and "heldout/000_a.png" in links
    missing = [link for link in links if not (tmp_path / link).exists() and link != "flythrough.mp4"]
    assert missing == []
    # Six evenly spaced frames of the flythrough, first and last included.
    strip = [link for link in links if link.startswith("flythrough_frames/")]
    assert strip[0] == strip[1] == "flythrough_frames/00000.png" and strip[-1] == "flythrough_frames/00007.png" and len(strip) == 7


def test_the_report_escapes_what_it_shows(tmp_path):
    facts = _facts(tmp_path)
    facts["stages"][0]["command"] = "blocknerf train '<city>.zarr'"
    page = write_report(tmp_path, facts).read_text()
    assert "&lt;city&gt;" in page and "<city>" not in page


@pytest.mark.parametrize(("seconds", "text"), [(0.04, "0.0 s"), (59.94, "59.9 s"), (60.0, "1 min 00 s"), (754.2, "12 min 34 s")])
def test_durations_read_as_people_write_them(seconds, text):
    assert format_duration(seconds) == text


def test_the_placement_figures_measure_the_change_inside_the_objects_box_and_outside_it(tmp_path):
    from blocknerf.presentation.roadside import ObjectExtent, pass_by_path, projected_box, roadside_spot
    from blocknerf.presentation.showcases import placement_figures
    from blocknerf.synth import SynthConfig, build_city
    from blocknerf.synth.objects import build_object

    city = build_city(SynthConfig(grid=(1, 1)))
    extent = ObjectExtent.from_object_json(build_object("kiosk").to_dict())
    spot = roadside_spot(city, np.zeros((1, 3)))
    path = pass_by_path(city, spot, frames=2, size=(64, 48), fov_y_deg=69.0)
    box = projected_box(path, 1, spot.to_world(extent, extent.corners()))
    # Frame 0: nothing changes. Frame 1: black to white inside the object's box, and by a quarter
    # (of 255: 64 levels) in one pixel outside it, of the 64 x 48 - box area others.
    for i in range(2):
        before, after = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64, 3), np.uint8)
        if i == 1:
            after[box[1] : box[3], box[0] : box[2]] = 255
            after[0, 0, 1] = 64
        save_image(tmp_path / "before" / f"{i:05d}.png", before)
        save_image(tmp_path / "after" / f"{i:05d}.png", after)
    figures = placement_figures(tmp_path, path, spot, extent)
    outside = 64 * 48 - (box[2] - box[0]) * (box[3] - box[1])
    assert figures["size"] == [64, 48] and figures["shown"] == "00001.png"
    first, last = figures["frames"]
    assert (first["change_inside"], first["change_outside"]) == (0.0, 0.0)
    assert last["box"] == list(box) and last["change_inside"] == 1.0
    assert last["change_outside"] == pytest.approx(64 / 255 / outside, abs=1e-4)
