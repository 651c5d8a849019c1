"""The command line on a trained tiny store: ``blocknerf render``, ``match`` and ``eval``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blocknerf.capture.images import load_image
from blocknerf.cli.main import main
from blocknerf.cli.settings import stored_settings
from blocknerf.store import BlockStore
from streaming.appearance import AppearanceTable
from streaming.camera_path import CameraPath, read_camera_path
from streaming.compositor import Compositor
from streaming.config import parse_bytes
from streaming.evaluation import evaluate_composite
from streaming.streamer import BlockStreamer

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def frame_count(video: Path) -> int:
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(video))[0]


WHOLE_BLOCKS = {"stream": {"lod": False}}
"""Every block at its finest level: which level a streamed frame draws depends on how far the
prefetcher has got (levels of detail refine over frames), whole blocks do not."""


def whole_blocks_config(tmp_path: Path) -> str:
    """A ``--config`` file with ``WHOLE_BLOCKS``."""
    import yaml

    path = tmp_path / "whole_blocks.yaml"
    path.write_text(yaml.safe_dump(WHOLE_BLOCKS))
    return str(path)


def composite_frames(store_path: Path, path: CameraPath, size: tuple[int, int]) -> list[np.ndarray]:
    """Every view of ``path`` rendered by the compositor directly, with the store's settings and
    whole blocks, as the 8-bit pixels a PNG frame holds."""
    import dataclasses

    store = BlockStore.open(store_path)
    compositor = Compositor(BlockStreamer.open(store, dataclasses.replace(stored_settings(store.config).stream, lod=False)))
    frames = [compositor.render(path.view(i, size)).rgb for i in range(len(path))]
    return [(np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8) for rgb in frames]


def test_render_auto_writes_video_frames_and_stats(tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "flythrough.mp4"
    code = main(
        ["render", str(tiny_store), "--auto", "--frames", "6", "--speed", "10", "--size", "32x24", "--out", str(out),
         "--frames-dir", str(tmp_path / "png"), "--memory-budget", "64MB", "--write-path", str(tmp_path / "path.json"), "--quiet",
         "--config", whole_blocks_config(tmp_path)]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "rendered 6 frames (32x24)" in text and "blocks used:" in text and str(out) in text
    assert frame_count(out) == 6
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(6)]
    stats = json.loads((out.parent / "render_stats.json").read_text())
    assert len(stats["frames"]) == 6 and stats["summary"]["frames"] == 6
    assert stats["config"]["stream"]["memory_budget_mb"] == pytest.approx(64.0)
    frame = stats["frames"][0]
    assert {"blocks", "cache", "load_ms", "render_ms", "position", "dominant"} <= set(frame)
    assert all({"id", "version", "weight", "level", "wanted_level", "levels"} <= set(b) for b in frame["blocks"])
    assert all(b["level"] == b["levels"] - 1 for b in frame["blocks"])  # whole blocks: the finest level
    assert sum(frame["resident_bytes_by_level"].values()) > 0
    assert set(stats["summary"]["lod"]) == {"draws_by_level", "draws_coarser_than_wanted", "peak_resident_bytes_by_level"}
    assert stats["summary"]["over_budget_bytes"] == 0
    # 6 frames at 10 m/s and 30 fps: the camera moves 10/30 m between frames.
    path = read_camera_path(tmp_path / "path.json")
    assert len(path) == 6 and (path.width, path.height) == (32, 24)
    assert np.linalg.norm(np.diff(path.positions, axis=0), axis=1) == pytest.approx(np.full(5, 1 / 3), rel=0.05)
    # The frames are the compositor's renders of that path, pixel for pixel.
    for png, expected in zip(pngs, composite_frames(tiny_store, path, (32, 24))):
        np.testing.assert_array_equal(load_image(png), expected, err_msg=png.name)


def test_render_a_camera_path_file(tiny_store: Path, tmp_path: Path) -> None:
    store = BlockStore.open(tiny_store)
    frames = store.capture.test_frames[:3]
    doc = {
        "camera_type": "perspective",
        "render_width": 24,
        "render_height": 18,
        "fps": 5,
        "seconds": 0.6,
        "camera_path": [{"camera_to_world": f.c2w.reshape(-1).tolist(), "fov": 60.0, "aspect": 4 / 3} for f in frames],
    }
    (tmp_path / "camera_path.json").write_text(json.dumps(doc))
    assert main(["render", str(tiny_store), "--path", str(tmp_path / "camera_path.json"), "--frames-dir", str(tmp_path / "png"), "--quiet",
                 "--config", whole_blocks_config(tmp_path)]) == 0
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == ["00000.png", "00001.png", "00002.png"]
    # The frames are the compositor's renders of the file's views, pixel for pixel.
    path = read_camera_path(tmp_path / "camera_path.json")
    np.testing.assert_allclose(path.positions, [f.position for f in frames], atol=1e-9)
    for png, expected in zip(pngs, composite_frames(tiny_store, path, (24, 18))):
        np.testing.assert_array_equal(load_image(png), expected, err_msg=png.name)
    stats = json.loads((tmp_path / "png" / "render_stats.json").read_text())
    assert stats["summary"]["size"] == [24, 18] and stats["path"].endswith("camera_path.json")


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [("64MB", 64_000_000), ("2GB", 2_000_000_000), ("2GiB", 2 * 2**30), (" 64 mb ", 64_000_000), ("1.5k", 1500),
     ("512KiB", 512 * 1024), ("1e3MB", 10**9), ("1B", 1)],
    ids=["MB", "GB-powers-of-1000", "GiB-powers-of-1024", "spaces-and-case", "k", "KiB", "exponent", "one-byte"],
)
def test_sizes_read_with_dask_units(text: str, nbytes: int) -> None:
    assert parse_bytes(text) == nbytes


@pytest.mark.parametrize(
    ("text", "message"),
    [("512", "has no unit"), ("lots", "is not a size"), ("MB", "is not a size"), ("5 foos", "'foos' as a byte unit"),
     ("1.2.3MB", "is not a size"), ("infGB", "is not a size"), ("0.5B", "at least one byte"), ("-1MB", "at least one byte")],
    ids=["no-unit", "no-number", "unit-alone", "unknown-unit", "bad-number", "infinite", "under-a-byte", "negative"],
)
def test_bad_sizes_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_bytes(text)
    assert "\n" not in str(err.value) and repr(text) in str(err.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--memory-budget", "100kB", "--out", "{tmp}/f.mp4"], "needs"),
        (["--memory-budget", "512", "--out", "{tmp}/f.mp4"], "has no unit"),
        (["--memory-budget", "lots", "--out", "{tmp}/f.mp4"], "is not a size"),
        (["--size", "33x24", "--out", "{tmp}/f.mp4"], "even width and height"),
        (["--size", "32by24", "--out", "{tmp}/f.mp4"], "--size"),
        ([], "nothing to write"),
        (["--out", "{tmp}/f.avi"], ".mp4"),
    ],
    ids=["budget-below-a-block", "budget-no-unit", "budget-garbage", "odd-size", "bad-size", "no-output", "not-mp4"],
)
def test_render_errors_are_one_line(tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    args = ["render", str(tiny_store), "--auto", "--frames", "2", "--size", "32x24", "--quiet"]
    args += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("blocknerf render: error:") and "\n" not in err and message in err
    assert not (tmp_path / "f.mp4").exists()


def test_budget_error_names_block_size_and_budget(tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["render", str(tiny_store), "--auto", "--frames", "2", "--size", "32x24", "--memory-budget", "100kB", "--out", str(tmp_path / "f.mp4"), "--quiet"])
    err = capsys.readouterr().err
    ids = BlockStore.open(tiny_store).plan.ids
    assert any(f"block {b} v1 needs" in err for b in ids)
    # 100kB is 10^5 bytes; dask.utils.format_bytes shows it in binary units (97.66 kiB).
    assert "memory budget is 97.66 kiB" in err  # the coarse level must fit: finer ones are optional


def test_match_then_render_with_matched_codes(tiny_store_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["match", str(tiny_store_copy), "--steps", "10", "--json"]) == 0
    table = AppearanceTable.from_dict(json.loads(capsys.readouterr().out))
    assert len(table.codes) == 2 and AppearanceTable.load(BlockStore.open(tiny_store_copy)) == table
    out = tmp_path / "f.mp4"
    assert main(["render", str(tiny_store_copy), "--auto", "--frames", "2", "--size", "16x12", "--out", str(out), "--match-appearance", "--quiet"]) == 0
    assert frame_count(out) == 2


def test_eval_reports_the_composite(tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tiny_store), "--views", "2", "--json", "--out", str(tmp_path / "eval.json")]) == 0
    capsys.readouterr()
    result = json.loads((tmp_path / "eval.json").read_text())
    comp = result["composite"]
    assert comp["views"] == 2 and len(comp["per_view"]) == 2
    assert comp["psnr"] == pytest.approx(np.mean([v["psnr"] for v in comp["per_view"]]), abs=1e-3)
    # What the command reports is the composite evaluation with the store's own settings.
    store = BlockStore.open(tiny_store)
    assert comp == json.loads(json.dumps(evaluate_composite(store, stored_settings(store.config).stream, max_views=2)))
