"""Baked vs neural rendering of a trained synthetic city: frame rates, quality, bytes, load times.

    python bench/render.py --store city.zarr            # a trained store (e.g. the demo's city.zarr)
    python bench/render.py                              # builds one: synth 2x2 city, partition, train
    python bench/render.py --quick                      # a small run that checks the script works
                                                        # (frame sizes / 4, 10 auto frames)

Figures (written to ``--out``, default bench/results/render.json):

* frames/s (wall) and CPU seconds per frame at 320x240 and 640x360, baked vs neural, through the
  streaming compositor (``--size-divisor`` shrinks both for a preliminary run): standing at the centre of the first block with ``max_blocks`` 1 (one block) and at the point nearest to three
  block centres with ``max_blocks`` 3 (three blended blocks; fewer where the city has fewer), after
  a settled warm-up frame (every block loaded at the level the view plans for it: the steady state
  of a camera at rest, not the refinement of a cold one);
* held-out PSNR/SSIM of the baked and the neural render of the same views of the same blocks (each
  block on its own held-out frames, up to ``--views``), and the difference;
* stored bytes of each block's bake vs its network arrays;
* block load time from the store, median and p95, baked vs neural (``--loads`` loads per block);
* wall time of ``blocknerf render S --auto --size 640x360 --frames N`` (baked), N = ``--frames``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "render.json"
SIZES = ((320, 240), (640, 360))


def build_store(root: Path, *, grid: str, size: str, steps: int, tiny: bool) -> Path:
    """synth + partition + train (+ bake) a city into ``root``; the store's path."""
    from blocknerf.cli.main import main

    city, store = root / "city", root / "city.zarr"
    config = root / "bench.yaml"
    train = {"steps": steps, "eval_views": 0, "checkpoint_every_s": 3600.0}
    doc: dict[str, Any] = {"train": train}
    if tiny:
        from blocknerf.config import read_preset

        doc = read_preset("tiny")
        doc["train"] = {**doc.get("train", {}), **train}
    config.write_text(json.dumps(doc))
    for argv in (
        ["synth", str(city), "--grid", grid, "--size", size, "--quiet"],
        ["partition", str(city), "--store", str(store), "--config", str(config)],
        ["train", str(store), "--workers", "1"],
    ):
        print("blocknerf", " ".join(argv), flush=True)
        assert main(argv) == 0, argv
    return store


def frame_rates(store: Any, renderer: str, frames: int, sizes: tuple[tuple[int, int], ...] = SIZES) -> dict[str, Any]:
    """Frames/s per size with one block and with (up to) three blended blocks."""
    import dataclasses

    from blocknerf.capture.frames import Intrinsics
    from streaming.compositor import Compositor
    from streaming.config import StreamConfig
    from streaming.protocol import CameraView
    from streaming.streamer import BlockStreamer

    plan = store.plan
    centers = np.asarray(plan.centers, dtype=np.float64)
    spot3 = centers[np.argsort(np.linalg.norm(centers - centers.mean(0), axis=1))[:3]].mean(0)
    ref = store.capture.frames[0]
    out: dict[str, Any] = {}
    for blocks, spot in ((1, centers[0]), (3, spot3)):
        cfg = dataclasses.replace(StreamConfig(), renderer=renderer, max_blocks=blocks, prefetch=False, device="cpu")
        streamer = BlockStreamer.open(store, cfg)
        compositor = Compositor(streamer)
        for w, h in sizes:
            k = ref.intrinsics
            s = w / k.width
            intr = Intrinsics(k.fx * s, k.fx * s, w / 2, h / 2, w, h)
            c2w = np.array(ref.c2w, dtype=np.float64)
            c2w[:3, 3] = spot + np.array([0.0, 0.0, 0.0])
            c2w[2, 3] = ref.c2w[2, 3]
            view = CameraView(c2w, intr)
            # Warm-up: every block at the level this view plans for it, loaded now (a cold frame
            # draws coarse levels first and refines over the next frames, loading as it goes).
            first = compositor.render(view, settled=True)
            compositor.render(view)
            began, cpu_began = time.perf_counter(), time.process_time()
            for _ in range(frames):
                compositor.render(view)
            dt = (time.perf_counter() - began) / frames
            cpu = (time.process_time() - cpu_began) / frames
            # CPU seconds per frame (all threads) stay meaningful on a shared, loaded machine, where
            # wall time does not: cores / cpu_s is the frame rate a quiet machine would reach at
            # perfect parallel efficiency.
            out[f"{blocks}block_{w}x{h}"] = {"frames_per_s": round(1.0 / dt, 3), "cpu_s_per_frame": round(cpu, 4), "blocks_used": len(first.used)}
            print(f"  {renderer:<6} {blocks} block(s) {w}x{h}: {1.0 / dt:8.3f} frames/s, {cpu:7.3f} CPU s/frame ({len(first.used)} blended)", flush=True)
    return out


def quality(store: Any, views: int) -> dict[str, Any]:
    """Held-out PSNR/SSIM of baked vs neural renders of the same views of each block."""
    from blocknerf.evaluation.views import evaluate_views
    from blocknerf.model.loading import load_renderable

    capture, manifest = store.capture, store.manifest()
    by_id = {f.id: f for f in capture.frames}
    rows = {}
    for block_id, entry in sorted(manifest.blocks.items()):
        frames = [by_id[f] for f in store.plan.block(block_id).frames if f in by_id and by_id[f].split == "test"][:views]
        if not frames:
            continue
        r = {kind: evaluate_views(load_renderable(store, block_id, entry.version, renderer=kind), frames) for kind in ("baked", "neural")}
        rows[block_id] = {
            "views": len(frames),
            "baked_psnr": r["baked"]["psnr"], "neural_psnr": r["neural"]["psnr"],
            "baked_ssim": r["baked"]["ssim"], "neural_ssim": r["neural"]["ssim"],
            "psnr_drop_db": round(r["neural"]["psnr"] - r["baked"]["psnr"], 3),
        }
        print(f"  {block_id}: neural {r['neural']['psnr']:.2f} dB / {r['neural']['ssim']:.3f}, "
              f"baked {r['baked']['psnr']:.2f} dB / {r['baked']['ssim']:.3f}", flush=True)
    return rows


def sizes_and_loads(store: Any, loads: int) -> dict[str, Any]:
    """Stored bytes (bake vs network) and load times per renderer."""
    from blocknerf.model.baked_grid import PREFIX
    from blocknerf.model.loading import load_renderable

    manifest = store.manifest()
    out: dict[str, Any] = {"bytes": {}, "load_ms": {}}
    times: dict[str, list[float]] = {"baked": [], "neural": []}
    for block_id, entry in sorted(manifest.blocks.items()):
        v = entry.version
        out["bytes"][block_id] = {
            "baked": store.version_nbytes(block_id, v, names=lambda n: n.startswith(PREFIX)),
            "neural": store.version_nbytes(block_id, v, names=lambda n: not n.startswith(PREFIX)),
        }
        for kind in times:
            for _ in range(loads):
                began = time.perf_counter()
                load_renderable(store, block_id, v, renderer=kind)
                times[kind].append((time.perf_counter() - began) * 1000.0)
    for kind, ms in times.items():
        out["load_ms"][kind] = {"median": round(float(np.median(ms)), 2), "p95": round(float(np.percentile(ms, 95)), 2)}
    return out


def auto_render(store_path: Path, frames: int, root: Path) -> dict[str, Any]:
    """Wall time of ``blocknerf render S --auto --size 640x360 --frames N`` (baked)."""
    from blocknerf.cli.main import main

    argv = ["render", str(store_path), "--auto", "--size", "640x360", "--frames", str(frames), "--out", str(root / "auto.mp4"), "--quiet"]
    print("blocknerf", " ".join(argv), flush=True)
    began = time.perf_counter()
    assert main(argv) == 0
    return {"frames": frames, "wall_s": round(time.perf_counter() - began, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, help="a trained store (default: build one)")
    p.add_argument("--quick", action="store_true", help="small everything: checks that the script works")
    p.add_argument("--frames", type=int, help="frames of the timed --auto render (default 300; quick 10; 0: skip it)")
    p.add_argument("--views", type=int, default=4, help="held-out views per block for the quality comparison")
    p.add_argument("--loads", type=int, default=5, help="loads per block and renderer for the load times")
    p.add_argument("--size-divisor", type=int, help="divide the frame sizes by this (default 1; quick 4): a preliminary run")
    p.add_argument("--threads", type=int, help="torch (and kernel) threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()

    import torch

    from blocknerf.store import BlockStore

    if args.threads:
        torch.set_num_threads(args.threads)
    frames = args.frames if args.frames is not None else (10 if args.quick else 300)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = args.store or build_store(root, grid="1x1" if args.quick else "2x2", size="64x48" if args.quick else "160x120",
                                         steps=80 if args.quick else 2000, tiny=args.quick)
        store = BlockStore.open(path)
        results: dict[str, Any] = {
            "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
            "store": path.name if args.store else "built",
            "blocks": len(store.manifest().blocks),
            "quick": args.quick,
        }
        fps_frames = 2 if args.quick else 5
        print("frame rates (compositor, warm cache):", flush=True)
        div = args.size_divisor or (4 if args.quick else 1)
        sizes = tuple((w // div, h // div) for w, h in SIZES)
        results["frame_sizes"] = [f"{w}x{h}" for w, h in sizes]
        results["frames_per_s"] = {kind: frame_rates(store, kind, fps_frames if kind == "baked" else 1, sizes) for kind in ("baked", "neural")}
        speedups = {k: round(results["frames_per_s"]["baked"][k]["frames_per_s"] / results["frames_per_s"]["neural"][k]["frames_per_s"], 1)
                    for k in results["frames_per_s"]["baked"]}
        results["speedup"] = speedups
        results["speedup_cpu"] = {k: round(results["frames_per_s"]["neural"][k]["cpu_s_per_frame"] / max(results["frames_per_s"]["baked"][k]["cpu_s_per_frame"], 1e-9), 1)
                                  for k in results["frames_per_s"]["baked"]}
        print("speed-up baked/neural:", speedups, "in CPU time:", results["speedup_cpu"], flush=True)
        print("quality (held-out, same views):", flush=True)
        results["quality"] = quality(store, args.views)
        results.update(sizes_and_loads(store, args.loads))
        print("bytes:", results["bytes"], "\nload ms:", results["load_ms"], flush=True)
        if frames > 0:
            results["auto_render_640x360"] = auto_render(path, frames, root)
            print("auto render:", results["auto_render_640x360"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
