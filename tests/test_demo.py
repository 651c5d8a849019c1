"""The demo's presets, its output directory rules, and the report page it writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from blocknerf.cli.main import main
from blocknerf.cli.settings import Settings
from blocknerf.config import replace
from blocknerf.presentation.demo import PRESETS
from blocknerf.capture.images import save_image
from blocknerf.presentation.report import format_duration, write_report


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config(name):
    preset = PRESETS[name]
    settings = replace(Settings(), preset.config(), where=f"preset {name}")
    assert settings.partition.strategy == "clusters" and settings.partition.clusters == preset.blocks
    assert settings.train.time_budget_s == preset.train_s
    # The presets are bounded by time: their step count must never be what stops training.
    assert settings.train.steps >= 10_000


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
    json.dumps(facts)  # facts stay plain JSON


@pytest.mark.parametrize(("seconds", "text"), [(0.04, "0.0 s"), (59.94, "59.9 s"), (60.0, "1 min 00 s"), (754.2, "12 min 34 s")])
def test_durations_read_as_people_write_them(seconds, text):
    assert format_duration(seconds) == text
