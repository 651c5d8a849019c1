"""The compositor on fake blocks: lone blocks, blends, the visibility test, versions, budgets,
appearance codes, and a flythrough to mp4 + PNGs + stats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from blocknerf.errors import InputError
from blocknerf.capture.images import load_image
from blocknerf.model.renderer import Rays
from blocknerf.capture.rays import image_rays
from streaming.appearance import AppearanceTable, MatchedCode
from streaming.blend import blend_weights
from streaming.cache import BlockTooLargeError
from streaming.camera_path import CameraPath
from streaming.compositor import Compositor
from streaming.config import StreamConfig
from streaming.flythrough import render_flythrough
from streaming.streamer import BlockStreamer


def decode_video(path: Path, size: tuple[int, int]) -> np.ndarray:
    """All frames of a video as (N, H, W, 3) float RGB, decoded by imageio-ffmpeg's ffmpeg."""
    import subprocess

    import imageio_ffmpeg

    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout
    w, h = size
    return np.frombuffer(out, dtype=np.uint8).reshape(-1, h, w, 3).astype(float)


def own_image(block, view) -> np.ndarray:  # noqa: ANN001
    """What a block renders for a view on its own (zero appearance code), (H, W, 3)."""
    origins, dirs, _ = image_rays(np.array(view.c2w), view.intrinsics)
    out = block.render_rays(Rays(origins, dirs, torch.zeros(len(origins), 3), None))
    k = view.intrinsics
    return out.rgb.reshape(k.height, k.width, 3).clamp(0, 1).numpy()


def two_blocks(fakes, **cfg: object) -> tuple[BlockStreamer, object]:  # noqa: ANN001
    a = fakes.Block("a", center=(0.0, 0.0, 0.0), radius=20.0, color=(0.8, 0.2, 0.2))
    b = fakes.Block("b", center=(20.0, 0.0, 0.0), radius=20.0, color=(0.2, 0.2, 0.8))
    source = fakes.Source([a, b])
    return BlockStreamer(source, StreamConfig(memory_budget_mb=1e-3, **cfg)), source


def test_a_block_alone_in_range_gives_its_own_image(fakes) -> None:  # noqa: ANN001
    streamer, source = two_blocks(fakes)
    view = fakes.view([0.0, 0.0, 2.0], yaw_deg=30.0)  # at a's centre, 20 m from b: b is out of range
    frame = Compositor(streamer).render(view)
    np.testing.assert_array_equal(frame.rgb, own_image(source.blocks[("a", 1)], view))
    assert [(u.block_id, u.weight) for u in frame.used] == [("a", 1.0)]
    assert frame.blocks[0].visibility is None  # a lone block needs no visibility test


@pytest.mark.parametrize("blend", ["image", "pixel"], ids=["per-image", "per-pixel"])
def test_two_blocks_blend_with_inverse_distance_weights(fakes, blend: str) -> None:  # noqa: ANN001
    streamer, source = two_blocks(fakes, blend=blend)
    view = fakes.view([6.0, 1.0, 2.0])
    frame = Compositor(streamer).render(view)
    da, db = np.hypot(6.0, 1.0), np.hypot(14.0, 1.0)
    wa, wb = blend_weights(np.array([da, db]), np.array([20.0, 20.0]), visibility=np.array([0.9, 0.9]))
    assert 0.5 < wa < 1.0 and wb > 0.0
    expected = wa * own_image(source.blocks[("a", 1)], view) + wb * own_image(source.blocks[("b", 1)], view)
    np.testing.assert_allclose(frame.rgb, expected, atol=1e-6)
    assert {u.block_id: round(u.weight, 9) for u in frame.used} == {"a": round(wa, 9), "b": round(wb, 9)}
    assert sum(u.weight for u in frame.blocks) == pytest.approx(1.0)
    assert all(u.visibility == pytest.approx(0.9) for u in frame.blocks)


def test_a_budget_of_one_block_renders_a_blend(fakes) -> None:  # noqa: ANN001
    """Blocks are leased one at a time, so a budget that holds one block renders a blend of two."""
    a = fakes.Block("a", center=(0.0, 0.0, 0.0), radius=20.0, color=(0.8, 0.2, 0.2))
    b = fakes.Block("b", center=(20.0, 0.0, 0.0), radius=20.0, color=(0.2, 0.2, 0.8))
    streamer = BlockStreamer(fakes.Source([a, b]), StreamConfig(memory_budget_mb=150e-6))
    frame = Compositor(streamer).render(fakes.view([8.0, 1.0, 2.0]))
    assert {u.block_id for u in frame.used} == {"a", "b"}
    assert frame.cache["misses"] == 2 and frame.cache["evictions"] == 1
    assert streamer.cache.counters().peak_bytes <= 150


def test_a_block_that_does_not_see_the_view_is_dropped(fakes) -> None:  # noqa: ANN001
    streamer, source = two_blocks(fakes)
    source.blocks[("b", 1)].visibility = 0.02
    view = fakes.view([6.0, 1.0, 2.0])
    frame = Compositor(streamer).render(view)
    np.testing.assert_array_equal(frame.rgb, own_image(source.blocks[("a", 1)], view))
    b = next(u for u in frame.blocks if u.block_id == "b")
    assert b.weight == 0.0 and b.visibility == pytest.approx(0.02)
    assert source.blocks[("b", 1)].renders == 1  # the low-resolution test only


def test_an_update_is_seen_as_whole_new_blocks(fakes) -> None:  # noqa: ANN001
    """Publishing new versions while rendering: the next frame uses them (new cache keys), the
    old versions leave the cache, and a frame never mixes manifests."""
    streamer, source = two_blocks(fakes)
    compositor = Compositor(streamer)
    view = fakes.view([6.0, 1.0, 2.0])
    first = compositor.render(view)
    assert {(u.block_id, u.version) for u in first.blocks} == {("a", 1), ("b", 1)}
    source.publish(fakes.Block("a", version=2, center=(0.0, 0.0, 0.0), radius=20.0, color=(0.1, 0.9, 0.1)))
    source.publish(fakes.Block("b", version=2, center=(20.0, 0.0, 0.0), radius=20.0, color=(0.9, 0.9, 0.1)))
    second = compositor.render(view)
    assert {(u.block_id, u.version) for u in second.blocks} == {("a", 2), ("b", 2)}
    assert second.manifest_serial == first.manifest_serial + 2
    assert sorted(streamer.cache.keys()) == [("a", 2, 0), ("b", 2, 0)]
    assert not np.allclose(first.rgb, second.rgb)


def test_budget_smaller_than_a_block_is_a_clear_error(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    blocks = [fakes.Block("a", radius=20.0, nbytes=34_000_000)]
    streamer = BlockStreamer(fakes.Source(blocks), StreamConfig(memory_budget_mb=16.0))
    with pytest.raises(BlockTooLargeError, match=r"block a v1 needs 32.42 MiB but the memory budget is 15.26 MiB"):
        Compositor(streamer).render(fakes.view([0.0, 0.0, 2.0]))
    # A flythrough fails before it writes anything.
    path = CameraPath(np.repeat(fakes.view([0.0, 0.0, 2.0]).c2w[None], 3, axis=0), np.full(3, 60.0))
    with pytest.raises(BlockTooLargeError):
        render_flythrough(streamer, path, size=(16, 12), video=tmp_path / "f.mp4", progress=False)
    assert not (tmp_path / "f.mp4").exists()


def test_matched_appearance_codes_are_used_for_their_version(fakes) -> None:  # noqa: ANN001
    streamer, source = two_blocks(fakes)
    source.document = AppearanceTable(
        codes={"a": MatchedCode(1, (0.1, -0.1, 0.05)), "b": MatchedCode(7, (0.3, 0.3, 0.3))}, roots=("a",), manifest_serial=1
    ).to_dict()
    source.serial += 1  # a new snapshot reads the document
    Compositor(streamer).render(fakes.view([6.0, 1.0, 2.0]))
    np.testing.assert_allclose(source.blocks[("a", 1)].last_appearance.numpy(), [0.1, -0.1, 0.05], rtol=1e-6)
    # b's matched code is for another version: b renders with its zero code.
    np.testing.assert_array_equal(source.blocks[("b", 1)].last_appearance.numpy(), [0.0, 0.0, 0.0])


def test_a_code_of_the_wrong_length_is_an_input_error(fakes) -> None:  # noqa: ANN001
    streamer, source = two_blocks(fakes)
    source.document = AppearanceTable(codes={"a": MatchedCode(1, (0.1, 0.2))}).to_dict()
    source.serial += 1
    with pytest.raises(InputError, match="rerun `blocknerf match`"):
        Compositor(streamer).render(fakes.view([0.0, 0.0, 2.0]))


def test_flythrough_writes_mp4_pngs_and_stats(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    import imageio_ffmpeg

    streamer, source = two_blocks(fakes, visibility_threshold=0.0)
    xs = np.linspace(-2.0, 22.0, 9)
    c2w = np.stack([fakes.view([x, 1.0, 2.0]).c2w for x in xs])
    path = CameraPath(c2w, np.full(len(xs), 60.0), fps=12.0, source="test")
    result = render_flythrough(
        streamer, path, size=(16, 12), video=tmp_path / "out" / "f.mp4", frames_dir=tmp_path / "png",
        stats_path=tmp_path / "out" / "render_stats.json", progress=False, config={"stream": {"max_blocks": 3}},
    )
    video = decode_video(tmp_path / "out" / "f.mp4", (16, 12))
    assert video.shape == (9, 12, 16, 3)
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "out" / "f.mp4")) == (9, pytest.approx(0.75, abs=0.01))
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [f"{i:05d}.png" for i in range(9)]
    pngs = np.stack([load_image(tmp_path / "png" / f"{i:05d}.png") for i in range(9)]).astype(float)
    assert np.abs(video - pngs).mean() < 6.0  # the same frames, up to H.264 / yuv420p loss
    stats = json.loads((tmp_path / "out" / "render_stats.json").read_text())
    assert stats["config"] == {"stream": {"max_blocks": 3}}
    assert len(stats["frames"]) == 9 and stats["summary"]["frames"] == 9
    first, middle = stats["frames"][0], stats["frames"][4]
    assert first["change"] is None and middle["change"] > 0.0
    assert {b["id"] for b in middle["blocks"] if b["weight"] > 0} == {"a", "b"}
    assert sum(b["weight"] for b in middle["blocks"]) == pytest.approx(1.0, abs=1e-5)
    assert {"hits", "misses", "evictions"} <= set(first["cache"])
    s = stats["summary"]
    # Each block was loaded once, on demand or by the prefetcher.
    assert s["cache"]["misses"] + s["cache"]["prefetch_loads"] == 2 and s["cache"]["loads"] == 2
    assert s["over_budget_bytes"] == 0 and s["peak_cache_bytes"] <= s["budget_bytes"]
    assert s["pop"]["switches"] == 1  # a dominates the first half, b the second
    assert result.summary == s and result.frames == 9


def test_odd_sizes_cannot_be_written_to_mp4(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    streamer, _ = two_blocks(fakes)
    path = CameraPath(fakes.view([0.0, 0.0, 2.0]).c2w[None], np.array([60.0]))
    with pytest.raises(InputError, match="even width and height"):
        render_flythrough(streamer, path, size=(15, 12), video=tmp_path / "f.mp4", progress=False)
