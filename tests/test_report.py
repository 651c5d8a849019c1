"""The demo's HTML report, rendered through its jinja2 template: content and escaping."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest

from blocknerf.capture.images import save_image
from blocknerf.presentation.report import write_report


def demo_facts(out: Path) -> dict:
    """Facts as run_demo gathers them, for a two-block demo, with the images they refer to (the
    shape of tests/test_demo.py's facts, plus the flythrough figures the report can show)."""
    for rel in ("map.png", "heldout/000_a.png", "update/before/000_c.png", "update/after/000_c.png",
                *(f"flythrough_frames/{i:05d}.png" for i in range(8))):
        save_image(out / rel, np.full((6, 8, 3), 0.5, dtype=np.float32))
    return {
        "preset": "quick",
        "seconds": 172.4,
        "stages": [
            {"title": "train every block", "command": "blocknerf train city.zarr", "seconds": 61.0},
            {"title": "stream a flythrough", "command": "blocknerf render city.zarr --auto --out flythrough.mp4", "seconds": 12.25},
            {"title": "render the changed area before the update", "command": None, "seconds": 4.2},
        ],
        "eval": {
            "blocks": {"b0": {"version": 1, "views": 3, "psnr": 21.5, "ssim": 0.61}, "b1": {"version": 1, "views": 3, "psnr": 20.25, "ssim": 0.58}},
            "composite": {"views": 3, "psnr": 22.126, "ssim": 0.64, "best_block": "b0", "best_block_psnr": 21.9, "oracle_block_psnr": 22.4,
                          "per_view": [{"frame": "images/a.png", "psnr": 22.0, "ssim": 0.6, "blocks": [{"id": "b0", "weight": 0.7}], "image": "000_a.png"}]},
        },
        "flythrough": {"summary": {"frames": 16, "frames_per_s": 0.5, "blocks_per_frame_mean": 1.25, "hit_rate": 0.875,
                                   "peak_cache_bytes": 3 << 20, "budget_bytes": 1 << 30,
                                   "pop": {"switches": 2, "max_change_at_switch": 0.021, "max_change_elsewhere": 0.034}}},
        "blocks": [
            {"id": "b0", "center": [0, 0, 0], "radius_m": 60.0, "frames": 400, "published": 2, "versions": []},
            {"id": "b1", "center": [60, 0, 0], "radius_m": 60.0, "frames": 1390, "published": 1, "versions": []},
        ],
        "update": {
            "before": {"psnr": 14.5, "published": {"b0": 1, "b1": 1}, "per_view": [{"frame": "c", "psnr": 14.5, "image": "000_c.png"}]},
            "after": {"psnr": 19.75, "published": {"b0": 2, "b1": 1}, "per_view": [{"frame": "c", "psnr": 19.75, "image": "000_c.png"}]},
        },
        "files": ["map.png", "report.html"],
    }


def text_of(page: str) -> str:
    """The page's visible text: tags dropped, entities decoded, whitespace collapsed."""
    body = re.sub(r"<style>.*?</style>", " ", page, flags=re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


@pytest.fixture
def facts(tmp_path: Path) -> dict:
    return demo_facts(tmp_path)


def test_the_page_shows_every_block_the_kpis_and_each_stages_command(tmp_path: Path, facts: dict) -> None:
    page = write_report(tmp_path, facts).read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    text = text_of(page)
    for block in facts["blocks"]:
        assert f"<code>{block['id']}</code>" in page
    # One row per block: id, radius, frames (thousands separated), published version, views, PSNR, SSIM.
    assert "b0 60 m 400 v2 3 21.50 dB 0.610" in text and "b1 60 m 1,390 v1 3 20.25 dB 0.580" in text
    assert "streamed composite 3 22.13 dB 0.640" in text
    # The KPIs: composite PSNR and SSIM, the block count with frame assignments (400 + 1390), the whole run.
    for kpi in ("22.13 dB composite PSNR on held-out views", "0.640 composite SSIM", "2 blocks (1,790 frame assignments)",
                "2 min 52 s whole demo, this machine"):
        assert kpi in text, kpi
    for stage in facts["stages"]:
        assert stage["title"] in text
        if stage["command"]:
            assert f"<code>{stage['command']}</code>" in page
    assert "train every block blocknerf train city.zarr 1 min 01 s" in text
    assert "render the changed area before the update 4.2 s" in text
    assert "preset quick" in text


def test_the_page_shows_the_flythrough_heldout_views_and_the_update(tmp_path: Path, facts: dict) -> None:
    text = text_of(write_report(tmp_path, facts).read_text(encoding="utf-8"))
    assert ("frames 16 · frames/s 0.50 · blocks per frame 1.25 · cache hit rate 0.88 · peak block memory 3.0 MiB · "
            "budget 1.0 GiB · frame-to-frame change at the 2 block switches at most 0.021, elsewhere up to 0.034") in text
    assert "images/a.png: 22.00 dB, SSIM 0.600, blended from b0" in text
    assert "best single block reaches 21.90 dB ( b0 ), and the best block chosen per view 22.40 dB" in text
    assert "14.50 dB before, 19.75 dB after" in text and "before: 14.50 dB" in text and "after: 19.75 dB" in text
    assert "b0 v2 b1 v1" in text
    assert "Files: map.png · report.html" in text


def test_values_in_the_facts_are_escaped(tmp_path: Path, facts: dict) -> None:
    attack = "<script>alert('x')</script>"
    facts["preset"] = attack
    facts["stages"][0]["command"] = f"blocknerf train '{attack}.zarr'"
    facts["stages"][1]["title"] = attack
    facts["blocks"][0]["id"] = attack
    facts["eval"]["blocks"][attack] = facts["eval"]["blocks"].pop("b0")
    facts["files"].append(attack)
    page = write_report(tmp_path, facts).read_text(encoding="utf-8")
    assert "<script" not in page
    # Shown five times: the preset, the command, the stage title, the block id and the file name.
    assert page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") == 5
    # Escaped, the values still read as given.
    text = text_of(page)
    assert f"preset {attack}" in text and f"blocknerf train '{attack}.zarr'" in text


def test_sections_without_their_facts_are_left_out(tmp_path: Path) -> None:
    page = write_report(tmp_path, {"preset": "quick", "seconds": 3.0, "blocks": [], "stages": []}).read_text(encoding="utf-8")
    text = text_of(page)
    assert "Held-out views" not in text and "Incremental update" not in text
    assert "– composite PSNR" in text and "– composite SSIM" in text and "0 blocks (0 frame assignments)" in text
    assert "Blocks" in text and "Flythrough" in text and "What ran" in text
