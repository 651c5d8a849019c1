"""Flythroughs: render a camera path through the streamed blocks to mp4, PNG frames and statistics.

Frames are rendered in order by the compositor while the prefetcher loads the blocks of the next
``prefetch_lookahead`` poses. The video is H.264 in yuv420p through imageio-ffmpeg (so width and
height must be even); PNG frames are ``00000.png``, ``00001.png``, ... ``render_stats.json`` holds,
per frame, the blocks used (ids, versions, distances, visibility, weights), the cache's hits,
misses and evictions during the frame, load and render milliseconds, the level of detail each
block drew at (and the one the view wanted), the bytes the cache held per level after the frame,
the mean absolute change from the previous frame and whether the dominant block switched; at the
end a summary (cache totals and bytes loaded, block draws and peak bytes resident per level,
load-time percentiles, frames per second, peak cache bytes against the budget, and the
frame-to-frame change at block switches against elsewhere, which shows any pop) and the
resolved configuration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blocknerf.errors import InputError
from streaming.camera_path import CameraPath
from streaming.compositor import CompositeFrame, Compositor
from streaming.prefetch import Prefetcher
from streaming.streamer import BlockStreamer

STATS_SCHEMA = 1


@dataclass(frozen=True)
class FlythroughResult:
    """What a flythrough wrote and its summary statistics."""

    frames: int
    video: Path | None
    frames_dir: Path | None
    stats_path: Path | None
    summary: Mapping[str, Any]
    frame_stats: tuple[Mapping[str, Any], ...]


def render_flythrough(
    streamer: BlockStreamer,
    path: CameraPath,
    *,
    size: tuple[int, int],
    video: str | Path | None = None,
    frames_dir: str | Path | None = None,
    stats_path: str | Path | None = None,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    on_frame: Callable[[int, CompositeFrame], None] | None = None,
) -> FlythroughResult:
    """Render every pose of ``path`` at ``size`` (width, height); write what is asked for.

    ``config`` (the resolved settings) is recorded in the statistics; ``on_frame(i, frame)`` sees
    each composite frame (e.g. to keep the pixels).
    """
    width, height = size
    video = None if video is None else Path(video)
    frames_dir = None if frames_dir is None else Path(frames_dir)
    stats_path = None if stats_path is None else Path(stats_path)
    if video is not None and (width % 2 or height % 2):
        raise InputError(video, f"an mp4 (yuv420p) needs an even width and height, got {width}x{height}")
    for target in (video, stats_path):
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    from blocknerf.capture.images import save_image

    check_budget(streamer, path)
    cfg = streamer.cfg
    compositor = Compositor(streamer)
    prefetcher = Prefetcher(streamer) if cfg.prefetch and cfg.prefetch_lookahead > 0 else None
    positions = path.positions
    writer = None
    stats: list[dict[str, Any]] = []
    previous: np.ndarray | None = None
    previous_dominant: str | None = None
    began = time.perf_counter()
    bar = tqdm(total=len(path), desc="rendering", unit="frame", disable=not progress, dynamic_ncols=True)
    try:
        if video is not None:
            import imageio_ffmpeg

            writer = imageio_ffmpeg.write_frames(
                str(video), (width, height), fps=float(path.fps), pix_fmt_out="yuv420p",
                macro_block_size=2, ffmpeg_log_level="error",
            )
            writer.send(None)
        if prefetcher is not None:
            prefetcher.start()
        for i in range(len(path)):
            if prefetcher is not None:
                fx = path.view(min(i + 1, len(path) - 1), (width, height)).intrinsics.fx
                prefetcher.schedule(positions[i + 1 : i + 1 + cfg.prefetch_lookahead], focal_px=float(fx))
            frame = compositor.render(path.view(i, (width, height)))
            pixels = (np.clip(frame.rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            if writer is not None:
                writer.send(np.ascontiguousarray(pixels).tobytes())
            if frames_dir is not None:
                save_image(frames_dir / f"{i:05d}.png", pixels)
            dominant = frame.dominant
            change = None if previous is None else float(np.abs(frame.rgb - previous).mean())
            stats.append(
                {
                    "index": i,
                    "time_s": round(i / path.fps, 4),
                    "position": [round(float(v), 3) for v in positions[i]],
                    **frame.to_dict(),
                    "dominant": dominant,
                    "switch": previous_dominant is not None and dominant != previous_dominant,
                    "change": None if change is None else round(change, 6),
                }
            )
            previous, previous_dominant = frame.rgb, dominant
            if on_frame is not None:
                on_frame(i, frame)
            c = streamer.cache.counters()
            bar.set_postfix(blocks=len(frame.used), hits=c.hits, misses=c.misses, refresh=False)
            bar.update(1)
    finally:
        bar.close()
        if prefetcher is not None:
            prefetcher.stop()
        if writer is not None:
            writer.close()
    wall = time.perf_counter() - began
    summary = summarize(stats, streamer, wall_s=wall, fps=path.fps, size=size)
    if prefetcher is not None and prefetcher.errors:
        summary["prefetch_errors"] = prefetcher.errors[:10]
    if stats_path is not None:
        doc = {
            "schema_version": STATS_SCHEMA,
            "path": path.source,
            "video": None if video is None else str(video),
            "frames_dir": None if frames_dir is None else str(frames_dir),
            "summary": summary,
            "frames": stats,
            "config": dict(config or {}),
        }
        stats_path.write_text(json.dumps(doc, indent=1))
    return FlythroughResult(len(stats), video, frames_dir, stats_path, summary, tuple(stats))


def check_budget(streamer: BlockStreamer, path: CameraPath) -> None:
    """Fail before rendering anything when a block the path needs is larger than the budget
    (``BlockTooLargeError`` naming the block, its size and the budget)."""
    from streaming.cache import BlockTooLargeError

    budget = streamer.cache.max_bytes
    sizes = {key: streamer.estimate_nbytes(key) for key in streamer.keys_along(path.positions)}
    too_large = [(n, key) for key, n in sizes.items() if n > budget]
    if too_large:
        nbytes, key = max(too_large)
        raise BlockTooLargeError(key, nbytes, budget)


def summarize(
    stats: list[Mapping[str, Any]], streamer: BlockStreamer, *, wall_s: float, fps: float, size: tuple[int, int]
) -> dict[str, Any]:
    """Summary statistics of a flythrough's per-frame records (see the module docstring)."""
    counters = streamer.cache.counters()
    loads = streamer.cache.load_times_ms()
    frame_ms = [s["frame_ms"] for s in stats]
    used = [[b for b in s["blocks"] if b["weight"] > 0] for s in stats]
    versions = sorted({(b["id"], b["version"]) for u in used for b in u})
    requests = counters.hits + counters.misses
    return {
        "frames": len(stats),
        "size": list(size),
        "fps_video": fps,
        "wall_s": round(wall_s, 3),
        "frames_per_s": round(len(stats) / wall_s, 4) if wall_s > 0 else None,
        "frame_ms_median": _pct(frame_ms, 50),
        "render_ms_median": _pct([s["render_ms"] for s in stats], 50),
        "blocks_per_frame_mean": round(float(np.mean([len(u) for u in used])), 3) if used else 0.0,
        "blocks_used": [{"id": b, "version": v} for b, v in versions],
        "cache": counters.to_dict(),
        "hit_rate": round(counters.hits / requests, 4) if requests else None,
        "load_ms_median": _pct(loads, 50),
        "load_ms_p95": _pct(loads, 95),
        "load_ms_max": _pct(loads, 100),
        "budget_bytes": streamer.cache.max_bytes,
        "peak_cache_bytes": counters.peak_bytes,
        "over_budget_bytes": counters.over_budget_bytes,
        "pop": pop_statistics(stats),
        "lod": level_statistics(stats),
    }


def level_statistics(stats: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Levels of detail over a flythrough: how many block draws were at each level, how many were
    coarser than the view wanted (still refining), and the peak bytes resident per level."""
    drawn: dict[str, int] = {}
    coarser = 0
    peak: dict[str, int] = {}
    for s in stats:
        for b in s["blocks"]:
            if b.get("weight", 0) > 0 and b.get("level") is not None:
                drawn[str(b["level"])] = drawn.get(str(b["level"]), 0) + 1
                coarser += int(b["level"] < b.get("wanted_level", b["level"]))
        for level, nbytes in s.get("resident_bytes_by_level", {}).items():
            peak[level] = max(peak.get(level, 0), int(nbytes))
    return {
        "draws_by_level": dict(sorted(drawn.items(), key=lambda kv: int(kv[0]))),
        "draws_coarser_than_wanted": coarser,
        "peak_resident_bytes_by_level": dict(sorted(peak.items(), key=lambda kv: int(kv[0]))),
    }


def pop_statistics(stats: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Frame-to-frame change (mean absolute difference, [0, 1]) at switches of the dominant block
    against the other frames: a visible pop is a switch that changes the image more than the
    camera's motion does elsewhere."""
    at = [s["change"] for s in stats if s.get("switch") and s.get("change") is not None]
    elsewhere = [s["change"] for s in stats if not s.get("switch") and s.get("change") is not None]
    return {
        "switches": len(at),
        "max_change_at_switch": max(at) if at else None,
        "max_change_elsewhere": max(elsewhere) if elsewhere else None,
        "median_change_elsewhere": _pct(elsewhere, 50),
    }


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


__all__ = ["FlythroughResult", "check_budget", "level_statistics", "pop_statistics", "render_flythrough", "summarize"]
