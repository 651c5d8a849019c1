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
                "renderers/neural/00001.png", "renderers/baked/00001.png", "composition/before/00002.png", "composition/after/00002.png",
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
        "renderers": {
            "neural": {"s_per_frame": 1.25, "frames": 3, "size": [96, 72]}, "baked": {"s_per_frame": 0.05, "frames": 3, "size": [96, 72]},
            "speedup": 25.0, "psnr": 24.567, "shown": "00001.png",
            "per_frame": [{"image": "00000.png", "psnr": 24.0}, {"image": "00001.png", "psnr": 25.125}, {"image": "00002.png", "psnr": 24.5}],
        },
        "composition": {
            "object": "kiosk", "street": "ns1", "position": [48.0, 0.0, 0.0], "heading_deg": 90.0, "size_m": [2.4, 2.05, 2.8],
            "object_eval": {"views": 4, "psnr": 21.5, "ssim": 0.8},
            "command": "blocknerf compose city.zarr add kiosk.zarr --name kiosk --at-enu 48.00,0.00,0.00 --heading 90",
            "list_command": "blocknerf compose city.zarr list", "list": "kiosk            at (48.00, 0.00, 0.00)  object v1",
            "size": [200, 100], "shown": "00002.png",
            "frames": [{"image": "00001.png", "box": None, "change_inside": None, "change_outside": 0.0},
                       {"image": "00002.png", "box": [150, 40, 180, 90], "change_inside": 0.1234, "change_outside": 0.0012}],
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


def test_the_page_compares_the_renderers_and_shows_the_placed_object(tmp_path: Path, facts: dict) -> None:
    page = write_report(tmp_path, facts).read_text(encoding="utf-8")
    text = text_of(page)
    assert "Baked vs neural rendering" in text
    assert "The same 3 frames of the drive (96x72)" in text
    assert "Baked 0.050 s per frame, neural 1.250 s: 25.0x faster" in text and "24.57 dB PSNR (mean over the frames)" in text
    assert "neural: 1.250 s per frame" in text and "baked: 0.050 s per frame, 25.12 dB against neural" in text
    links = re.findall(r"(?:src|poster)='([^']+)'", page)
    assert "renderers/neural/00001.png" in links and "renderers/baked/00001.png" in links

    assert "Composition" in text
    assert "A kiosk (2.4 x 2.0 x 2.8 m)" in text and "(21.50 dB on 4 of its held-out views)" in text and "street ns1" in text
    assert "inside the box the frame changed by 0.123 on average, elsewhere by 0.001" in text
    assert "composition/before/00002.png" in links and "composition/after/00002.png" in links
    assert f"<code>{facts['composition']['command']}</code>" in page
    assert "$ blocknerf compose city.zarr list kiosk at (48.00, 0.00, 0.00) object v1" in text
    # The box over both images: 150..180 of 200 columns, 40..90 of 100 rows, in percent.
    assert page.count("style='left:75.00%;top:40.00%;width:15.00%;height:50.00%'") == 2
    assert [link for link in links if not (tmp_path / link).exists() and link != "flythrough.mp4"] == []


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
    assert "Baked vs neural" not in text and "Composition" not in text
    assert "– composite PSNR" in text and "– composite SSIM" in text and "0 blocks (0 frame assignments)" in text
    assert "Blocks" in text and "Flythrough" in text and "What ran" in text
