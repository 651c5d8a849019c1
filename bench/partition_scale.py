"""Plan blocks for a synthetic street-level capture of a million frames (poses only).

Target (issue "Partitioning"): under 60 s and under 4 GB of peak memory on 2 cores. Prints frames
per second and peak memory and writes ``bench/results/partition_scale.json``.

    python bench/partition_scale.py [--frames N] [--workers W] [--strategy grid|trajectory|clusters]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from partitioning import PartitionConfig, plan_blocks  # noqa: E402
from partitioning.layouts import street_grid  # noqa: E402

RESULT = ROOT / "bench" / "results" / "partition_scale.json"


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def city_for(frames: int, n_blocks: int) -> tuple[float, int]:
    """Camera step along the streets of an ``n_blocks`` x ``n_blocks`` city that gives ``frames``."""
    pitch, street = 80.0, 20.0
    length = n_blocks * pitch + street
    streets = 2 * (n_blocks + 1)
    stops_per_street = math.ceil(frames / (4 * streets))
    return length / (stops_per_street - 1) * (1.0 - 1e-9), n_blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--city-blocks", type=int, default=31, help="city blocks per side of the street grid")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--strategy", default="grid", choices=["grid", "trajectory", "clusters"])
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)

    step, n_blocks = city_for(args.frames, args.city_blocks)
    t0 = time.perf_counter()
    cameras, _ = street_grid(n_blocks, step_m=step, headings=4, max_frames=args.frames)
    t_poses = time.perf_counter() - t0
    if len(cameras) != args.frames:
        raise SystemExit(f"generated {len(cameras)} frames, wanted {args.frames}")
    cfg = PartitionConfig(strategy=args.strategy)

    t1 = time.perf_counter()
    plan = plan_blocks(cameras, cfg, workers=args.workers)
    seconds = time.perf_counter() - t1
    peak = peak_rss_mb()
    assigned = sum(len(b.frames) for b in plan.blocks)
    # Not part of the target: what storing the plan as JSON costs at this size.
    t2 = time.perf_counter()
    plan_json = json.dumps(plan.to_dict())
    t_json = time.perf_counter() - t2

    result = {
        "frames": len(cameras),
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(peak, 1),
        "frames_per_s": round(len(cameras) / seconds, 1),
        "blocks": len(plan.blocks),
        "dropped": len(plan.dropped),
        "assignments": assigned,
        "strategy": args.strategy,
        "spacing_m": cfg.spacing_m,
        "rays_per_frame": cfg.rays_per_frame,
        "workers": args.workers,
        "pose_generation_s": round(t_poses, 3),
        "plan_json_mb": round(len(plan_json) / 2**20, 1),
        "plan_json_s": round(t_json, 3),
        "peak_rss_mb_after_json": round(peak_rss_mb(), 1),
        "city": f"{n_blocks}x{n_blocks} blocks of 60 m, 20 m streets, a stop every {step:.3f} m, 4 headings",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "targets": {"seconds": 60, "peak_rss_mb": 4096},
    }
    print(
        f"planned {len(cameras):,} frames into {len(plan.blocks)} blocks ({len(plan.dropped)} dropped, "
        f"{assigned:,} frame-block assignments) in {seconds:.1f} s: {len(cameras) / seconds:,.0f} frames/s, "
        f"peak RSS {peak:,.0f} MiB (workers={args.workers}, poses generated in {t_poses:.1f} s)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    ok = seconds < 60 and peak < 4096
    print(f"targets (< 60 s, < 4096 MiB): {'met' if ok else 'MISSED'}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
