"""``blocknerf render S.zarr (--path P | --auto) --out F.mp4``: stream blocks and render a flythrough."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from blocknerf.cli.settings import add_config_argument

HELP = "render a flythrough (nerfstudio camera_path.json or --auto) from streamed blocks to mp4/PNGs + stats"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL)")
    add_config_argument(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--path", metavar="JSON", help="nerfstudio camera_path.json (poses in the store's world frame)")
    which.add_argument("--auto", action="store_true", help="a smooth path along the capture's training cameras")
    p.add_argument("--out", metavar="MP4", help="video to write (H.264, yuv420p)")
    p.add_argument("--frames-dir", metavar="DIR", help="also write every frame as a PNG into DIR")
    p.add_argument("--stats", metavar="JSON", help="per-frame statistics (default: render_stats.json beside --out or in --frames-dir)")
    p.add_argument("--size", metavar="WxH", help="frame size (default: the path's, else stream.width x stream.height)")
    p.add_argument("--memory-budget", metavar="SIZE", help="most memory for loaded blocks, e.g. 512MB or 2GB")
    p.add_argument("--max-blocks", type=int, metavar="K", help="blend at most K blocks per frame")
    p.add_argument("--renderer", choices=("baked", "neural"), help="render blocks from their bake where they have one, or from their network (default: stream.renderer)")
    p.add_argument("--frames", type=int, metavar="N", help="--auto: N frames over the trajectory (default: stream.auto_path.default_seconds of video)")
    p.add_argument("--seconds", type=float, metavar="S", help="--auto: S seconds of video over the trajectory")
    p.add_argument("--speed", type=float, metavar="M_PER_S", help="--auto: camera speed (with --frames/--seconds: only that far)")
    p.add_argument("--fps", type=float, metavar="F", help="--auto: frames per second")
    p.add_argument("--write-path", metavar="JSON", help="also save the camera path rendered as camera_path.json")
    p.add_argument("--match-appearance", action="store_true", help="match appearance codes across neighbours first (needs a writable store)")
    p.add_argument("--no-prefetch", action="store_true", help="load blocks only when a frame needs them")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to render (default: stream.device)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from dask.utils import format_bytes

    from blocknerf.cli.settings import resolve
    from blocknerf.config import to_dict
    from blocknerf.errors import ConfigError
    from blocknerf.store import BlockStore
    from streaming.camera_path import auto_path, read_camera_path
    from streaming.config import parse_bytes, parse_size
    from streaming.flythrough import render_flythrough
    from streaming.streamer import BlockStreamer

    if not args.out and not args.frames_dir:
        raise ConfigError(None, "nothing to write: give --out F.mp4 and/or --frames-dir DIR")
    if args.out and Path(args.out).suffix.lower() != ".mp4":
        raise ConfigError(None, f"--out must name an .mp4 file, got '{args.out}'")
    if not args.auto and any(v is not None for v in (args.frames, args.seconds, args.speed, args.fps)):
        raise ConfigError(None, "--frames, --seconds, --speed and --fps apply to --auto paths only")
    if args.frames is not None and args.seconds is not None:
        raise ConfigError(None, "give --frames or --seconds, not both")
    flags: dict[str, Any] = {
        "stream.max_blocks": args.max_blocks,
        "stream.device": args.device,
        "stream.prefetch": False if args.no_prefetch else None,
        "stream.auto_path.fps": args.fps,
        "stream.renderer": args.renderer,
    }
    if args.memory_budget is not None:
        try:
            flags["stream.memory_budget_mb"] = parse_bytes(args.memory_budget) / 1e6
        except ValueError as exc:
            raise ConfigError(None, f"--memory-budget: {exc}") from None
    size = None
    if args.size is not None:
        try:
            size = parse_size(args.size)
        except ValueError as exc:
            raise ConfigError(None, f"--size: {exc}") from None
    for flag, value in (("--frames", args.frames), ("--seconds", args.seconds), ("--speed", args.speed)):
        if value is not None and not value > 0:
            raise ConfigError(None, f"{flag} must be positive, got {value}")

    store = BlockStore.open(args.store, writable=args.match_appearance)
    settings = resolve(args, flags, stored=store.config, where_stored=f"{args.store} (stored config)")
    cfg = settings.stream
    if args.match_appearance:
        from blocknerf.cli.match import run_matching

        run_matching(store, cfg, root=None, quiet=args.quiet or args.json)
    if args.auto:
        seconds = args.seconds
        if args.frames is None and args.seconds is None and args.speed is None:
            seconds = cfg.auto_path.default_seconds
        path = auto_path(
            store.capture.camera_arrays(), cfg.auto_path, frames=args.frames, seconds=seconds,
            speed_mps=args.speed, size=size,
        )
    else:
        path = read_camera_path(args.path)
    size = size or path.size((cfg.width, cfg.height))
    if args.write_path:
        path.write(args.write_path, size)
    out = Path(args.out) if args.out else None
    stats = Path(args.stats) if args.stats else (out.parent if out else Path(args.frames_dir)) / "render_stats.json"
    streamer = BlockStreamer.open(store, cfg)
    if not args.json:
        estimate = estimate_frame_s(streamer, path, size)
        print(f"rendering {len(path)} frames ({size[0]}x{size[1]}, {len(path) / path.fps:.1f} s of video, {cfg.renderer} renderer); "
              f"estimated {_duration(estimate * len(path))} ({estimate:.3f} s per frame, from one probe frame)", flush=True)
    result = render_flythrough(
        streamer, path, size=size, video=out, frames_dir=args.frames_dir, stats_path=stats,
        progress=not (args.quiet or args.json), config=to_dict(settings),
    )
    s = result.summary
    if args.json:
        print(json.dumps({"video": None if out is None else str(out), "frames_dir": args.frames_dir, "stats": str(stats), **s}, indent=2))
        return 0
    blocks = ", ".join(f"{b['id']} v{b['version']}" for b in s["blocks_used"])
    cache = s["cache"]
    print(f"rendered {s['frames']} frames ({size[0]}x{size[1]}) in {s['wall_s']:.1f} s ({s['frames_per_s']:.2f} frames/s)")
    print(f"blocks used: {blocks} ({s['blocks_per_frame_mean']:.2f} per frame)")
    print(
        f"cache: {cache['hits']} hits, {cache['misses']} misses, {cache['evictions']} evictions, "
        f"{cache['prefetch_hits']} prefetched hits; peak {format_bytes(s['peak_cache_bytes'])} of "
        f"{format_bytes(s['budget_bytes'])}; load ms median {s['load_ms_median']}, p95 {s['load_ms_p95']}"
    )
    for target in (out, args.frames_dir):
        if target:
            print(f"wrote {target}")
    print(f"stats: {stats}")
    if s.get("prefetch_errors"):
        print(f"blocknerf render: warning: prefetch failed: {s['prefetch_errors'][0]}", file=sys.stderr)
    return 0


def estimate_frame_s(streamer: Any, path: Any, size: tuple[int, int]) -> float:
    """Seconds one frame of ``path`` takes: the middle frame rendered once (its blocks loaded
    first, so that the figure is rendering, not loading; they stay cached for the real run)."""
    import time

    from streaming.compositor import Compositor

    compositor = Compositor(streamer)
    view = path.view(len(path) // 2, size)
    compositor.render(view)  # loads the blocks
    started = time.perf_counter()
    compositor.render(view)
    return time.perf_counter() - started


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
