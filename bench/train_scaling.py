"""Training throughput against worker count: 4 small synthetic blocks on 1 worker, then on 2.

    python bench/train_scaling.py            # the measurement: 2x2 city, 4 blocks x 500 steps
    python bench/train_scaling.py --quick    # a smoke run: 1x1 city, 4 blocks x 20 steps

Synthesises a small city (``blocknerf synth``), plans it into 4 overlapping blocks (``blocknerf
partition``, k-means clusters) with a small model, and trains all of them twice, each time from the
same untrained store, with ``blocknerf train --workers N --threads-per-worker 1 --json`` (a local
dask cluster of N worker processes), N = 1 then 2: the same blocks and the same steps per block, so
the total work is the same. ``seconds`` is the wall time of the whole command (starting the cluster
included: what a user waits for).

Prints the per-block timeline of each run (which worker trained which block, from when to when,
as a bar on a common time axis) so that idle workers show, and writes
bench/results/train_scaling.json (``--quick``: the temporary directory's
blocknerf_train_scaling_quick.json, unless ``--out`` is given)
with keys ``seconds_1_worker``, ``seconds_2_workers``, ``speedup`` and ``runs`` (timelines, per-block
statistics, the load average before each run). Run it on a quiet machine: other processes take
cores away from the workers, and the load average recorded beside each run says whether they did.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_OUT = ROOT / "bench" / "results" / "train_scaling.json"
BLOCKS = 4
# The tiny preset (the tests' small model: a step costs tens of milliseconds on one core, so that a
# block is a task of tens of seconds and four of them fit a few minutes), in BLOCKS blocks.
OVERRIDES: dict[str, Any] = {"partition": {"strategy": "clusters", "clusters": BLOCKS}}
BAR_WIDTH = 50


def config_document() -> dict[str, Any]:
    """The settings of the run (the tiny preset and OVERRIDES, resolved) as a ``--config`` file."""
    from blocknerf.cli.settings import Settings, storable
    from blocknerf.config import read_preset, replace

    tiny = replace(Settings(), read_preset("tiny"), where="preset tiny")
    return storable(replace(tiny, OVERRIDES, where="bench/train_scaling.py"))


def blocknerf(*args: str) -> list[str]:
    """The argv of a ``blocknerf`` command run by this interpreter."""
    return [sys.executable, "-m", "blocknerf", *args]


def make_city(work: Path, grid: str, size: str) -> Path:
    """Synthesise the city and plan it into BLOCKS blocks; the untrained store's path."""
    city, store, config = work / "city", work / "untrained.zarr", work / "settings.yaml"
    config.write_text(yaml.safe_dump(config_document()))
    subprocess.run(blocknerf("synth", str(city), "--grid", grid, "--size", size, "--quiet"), check=True)
    done = subprocess.run(
        blocknerf("partition", str(city), "--store", str(store), "--config", str(config), "--map", str(work / "map.png"), "--json"),
        check=True, capture_output=True, text=True,
    )
    plan = json.loads(done.stdout)
    if len(plan["blocks"]) != BLOCKS:
        raise SystemExit(f"the plan has {len(plan['blocks'])} blocks, not {BLOCKS}")
    frames = ", ".join(f"{row['id']} {row['frames']}" for row in plan["blocks"])
    print(f"city {grid} at {size}: {len(plan['blocks'])} blocks (frames: {frames})", flush=True)
    return store


def train(untrained: Path, work: Path, workers: int, threads: int, steps: int) -> dict[str, Any]:
    """Train every block of a fresh copy of ``untrained`` with ``workers`` local workers."""
    store = work / f"trained_{workers}w.zarr"
    shutil.copytree(untrained, store)
    command = blocknerf("train", str(store), "--workers", str(workers), "--threads-per-worker", str(threads),
                        "--steps", str(steps), "--json")
    load = os.getloadavg()
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"blocknerf train --workers {workers} failed ({done.returncode})")
    report = json.loads(done.stdout)
    if report["failed"] or len(report["trained"]) != BLOCKS:
        raise SystemExit(f"--workers {workers}: trained {sorted(report['trained'])}, failed {report['failed']}")
    timeline = sorted(report["timeline"], key=lambda row: (str(row["worker"]), row["start_s"]))
    busy: dict[str, float] = {}
    for row in timeline:
        busy[str(row["worker"])] = busy.get(str(row["worker"]), 0.0) + row["end_s"] - row["start_s"]
    stats = report["stats"]
    return {
        "workers": workers,
        "threads_per_worker": threads,
        "seconds": round(seconds, 2),
        # From the first block's start to the last block's end: without starting the cluster.
        "train_span_s": round(max(r["end_s"] for r in timeline) - min(r["start_s"] for r in timeline), 2),
        "train_blocks_seconds": report["seconds"],
        "load_average_before": [round(x, 2) for x in load],
        "timeline": timeline,
        "busy_s": {w: round(s, 2) for w, s in busy.items()},
        "idle_s": {w: round(seconds - s, 2) for w, s in busy.items()},
        "blocks": {
            b: {"steps": s["steps"], "train_seconds": s["train_seconds"], "step_ms": round(1000.0 * s["train_seconds"] / s["steps"], 1),
                "train_frames": s["train_frames"]}
            for b, s in sorted(stats.items())
        },
    }


def print_timeline(run: dict[str, Any], axis_s: float) -> None:
    """One line per block: its worker, start and end, and a bar on a time axis of ``axis_s``."""
    print(f"\n{run['workers']} worker(s) x {run['threads_per_worker']} thread(s): {run['seconds']:.1f} s "
          f"(load average before: {run['load_average_before'][0]:.2f})")
    right = f"{axis_s:.0f} s"
    print(f"  {'worker':<8}{'block':<12}{'start_s':>8}{'end_s':>8}  |0 s{right:>{BAR_WIDTH - 3}}|")
    for row in run["timeline"]:
        a = int(round(row["start_s"] / axis_s * BAR_WIDTH))
        b = max(a + 1, int(round(row["end_s"] / axis_s * BAR_WIDTH)))
        bar = " " * a + "#" * (b - a) + " " * (BAR_WIDTH - b)
        print(f"  {str(row['worker']):<8}{row['block']:<12}{row['start_s']:>8.1f}{row['end_s']:>8.1f}  |{bar}|")
    idle = ", ".join(f"worker {w} {s:.1f} s" for w, s in run["idle_s"].items())
    steps = ", ".join(f"{b} {s['step_ms']:.0f}" for b, s in run["blocks"].items())
    print(f"  idle: {idle}; ms per step: {steps}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: 1x1 city, 20 steps per block")
    p.add_argument("--grid", help="synthetic city grid (default 2x2; --quick 1x1)")
    p.add_argument("--size", default="64x48", help="image size of the synthetic city")
    p.add_argument("--steps", type=int, help="steps per block (default 500; --quick 20)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="torch threads of each worker")
    p.add_argument("--workdir", type=Path, help="where to write the city and stores (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--out", type=Path, help=f"result JSON (default {DEFAULT_OUT.relative_to(ROOT)}; --quick: in the temporary directory)")
    args = p.parse_args()

    grid = args.grid or ("1x1" if args.quick else "2x2")
    steps = args.steps or (20 if args.quick else 500)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="blocknerf-train-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    # A smoke run's numbers mean nothing: they do not replace the measurement in bench/results.
    out = args.out or (Path(tempfile.gettempdir()) / "blocknerf_train_scaling_quick.json" if args.quick else DEFAULT_OUT)
    try:
        untrained = make_city(work, grid, args.size)
        runs = [train(untrained, work, n, args.threads_per_worker, steps) for n in (1, 2)]
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    axis = max(r["seconds"] for r in runs)
    for run in runs:
        print_timeline(run, axis)
    one, two = runs
    speedup = one["seconds"] / two["seconds"]
    result = {
        "seconds_1_worker": one["seconds"],
        "seconds_2_workers": two["seconds"],
        "speedup": round(speedup, 3),
        "speedup_train_span": round(one["train_span_s"] / two["train_span_s"], 3),
        "blocks": BLOCKS,
        "steps_per_block": steps,
        "grid": grid,
        "size": args.size,
        "runs": runs,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "quick": args.quick,
    }
    print(f"\n1 worker {one['seconds']:.1f} s, 2 workers {two['seconds']:.1f} s: speedup {speedup:.2f}x "
          f"({result['speedup_train_span']:.2f}x from the first block's start to the last one's end)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
