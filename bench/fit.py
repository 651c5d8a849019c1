"""Held-out quality of one block against training time (and render time of a frame).

    python bench/fit.py --data ../shared/data/fox_8x --config configs/fox.yaml
    python bench/fit.py --synthetic [--grid 2x2] [--block b000_000]

Trains one block in this process for ``--minutes`` of training time (evaluation pauses the clock),
evaluates held-out views at the marks, then times the render of one full frame. Prints the curve
and writes bench/results/fit_<name>.json with keys ``psnr_at_s`` (seconds -> dB),
``render_s_per_frame``, ``peak_rss_mb`` and the samples a ray costs: ``train_samples_per_ray``
(marched: density evaluated; kept: still visible) averaged over the steps, and
``render_samples_per_ray`` (marched, coloured) over the held-out views.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blocknerf.model.block import BlockModel, load_block  # noqa: E402
from blocknerf.capture import Frame  # noqa: E402
from blocknerf.capture.transforms import read_capture  # noqa: E402
from blocknerf.cli.settings import Settings  # noqa: E402
from blocknerf.config import read_yaml, replace, to_dict  # noqa: E402
from blocknerf.errors import CaptureWarning  # noqa: E402
from blocknerf.evaluation import evaluate_views  # noqa: E402
from blocknerf.model.renderer import Rays  # noqa: E402
from blocknerf.capture.rays import image_rays  # noqa: E402
from blocknerf.store import BlockStore  # noqa: E402
from blocknerf.training.trainer import train_block  # noqa: E402
from partitioning import plan_blocks  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="capture directory (transforms.json); held-out views are its test split")
    src.add_argument("--synthetic", action="store_true", help="synthesise a city and fit one of its blocks")
    p.add_argument("--grid", default="2x2", help="synthetic city grid")
    p.add_argument("--block", help="block id (default: the block with the most training frames)")
    p.add_argument("--config", help="YAML settings overrides")
    p.add_argument("--minutes", type=float, default=10.0, help="training time")
    p.add_argument("--marks", default="60,120,300,600", help="seconds of training at which to evaluate")
    p.add_argument("--eval-views", type=int, default=24, help="at most this many held-out views (evenly spread)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", help="result name (default from the data)")
    p.add_argument("--out", help="result JSON (default bench/results/fit_<name>.json)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", CaptureWarning)
    settings = Settings()
    if args.config:
        settings = replace(settings, read_yaml(args.config), where=args.config)
    work = Path(tempfile.mkdtemp(prefix="blocknerf-fit-"))
    if args.synthetic:
        from blocknerf.synth import synthesize

        nx, ny = (int(v) for v in args.grid.lower().split("x"))
        synth_cfg = replace(settings.synth, {"grid": [nx, ny]})
        capture = synthesize(work / "city", synth_cfg, progress=False)
        name = args.name or f"synthetic_{args.grid}"
    else:
        capture = read_capture(args.data)
        name = args.name or Path(args.data).resolve().name
    budget = args.minutes * 60.0
    marks = sorted(float(m) for m in args.marks.split(",") if float(m) <= budget + 1e-6)
    train_cfg = replace(settings.train, {"steps": 10**9, "time_budget_s": budget, "eval_views": 0, "checkpoint_every_s": 1e9})

    cameras = capture.camera_arrays()
    geo = capture.geo_origin
    plan = plan_blocks(cameras, settings.partition, geo_origin=None if geo is None else (geo.lat, geo.lon, geo.alt))
    by_id = {f.id: f for f in capture.frames}
    if args.block:
        spec = plan.block(args.block)
    else:
        spec = max(plan.blocks, key=lambda b: sum(by_id[f].is_train for f in b.frames))
    tests = [by_id[f] for f in spec.frames if by_id[f].split == "test"]
    if len(tests) > args.eval_views:
        step = len(tests) / args.eval_views
        tests = [tests[int(i * step)] for i in range(args.eval_views)]
    store = BlockStore.create(work / "fit.zarr", plan=plan, capture=capture, config={"train": to_dict(train_cfg)})
    print(f"{name}: block {spec.id} (radius {spec.radius_m:.1f}), "
          f"{sum(by_id[f].is_train for f in spec.frames)} training frames, {len(tests)} held-out views, {budget:.0f} s", flush=True)

    curve: dict[str, float] = {}
    rows: list[dict[str, float]] = []
    pending = list(marks)

    def probe(step: int, seconds: float, snapshot) -> None:  # noqa: ANN001
        while pending and seconds >= pending[0]:
            mark = pending.pop(0)
            t0 = time.perf_counter()
            result = evaluate_views(snapshot(), tests)
            curve[str(int(mark))] = result["psnr"]
            rows.append({"mark_s": mark, "train_s": round(seconds, 1), "step": step, "psnr": result["psnr"],
                         "ssim": result["ssim"], "eval_s": round(time.perf_counter() - t0, 1)})
            print(f"  {mark:5.0f} s  step {step:6d}  held-out PSNR {result['psnr']:6.2f} dB  SSIM {result['ssim']:.3f}"
                  f"  (eval {time.perf_counter() - t0:.0f} s)", flush=True)

    began = time.perf_counter()
    costs = SampleCosts()
    result = train_block(spec, capture, settings.model, train_cfg, store, far_m=plan.far_m, probe=probe, progress=costs)

    block = load_block(store, spec.id, version=result.version)
    final = evaluate_views(block, tests)
    view = tests[0]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        block.render_view(view.c2w, view.intrinsics, exposure=view.exposure)
        times.append(time.perf_counter() - t0)
    render_s = sorted(times)[1]
    render_costs = render_samples_per_ray(block, tests)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {
        "name": name,
        "block": spec.id,
        "psnr_at_s": curve,
        "final_psnr": final["psnr"],
        "final_ssim": final["ssim"],
        "render_s_per_frame": round(render_s, 3),
        "frame_size": [view.intrinsics.width, view.intrinsics.height],
        "peak_rss_mb": round(peak_mb, 1),
        "train_samples_per_ray": costs.means(),
        "render_samples_per_ray": render_costs,
        "steps": result.stats["steps"],
        "rays": result.stats["rays"],
        "train_seconds": result.stats["train_seconds"],
        "wall_seconds": round(time.perf_counter() - began, 1),
        "held_out_views": len(tests),
        "curve": rows,
        "threads": args.threads,
        "config": Path(args.config).name if args.config else None,
    }
    print(f"samples per ray: training {costs.means()}, rendering {render_costs}")
    print(f"final held-out PSNR {final['psnr']:.2f} dB, SSIM {final['ssim']:.3f}; render {render_s:.2f} s/frame "
          f"({view.intrinsics.width}x{view.intrinsics.height}); peak RSS {peak_mb:.0f} MB; {result.stats['steps']} steps")
    path = Path(args.out) if args.out else ROOT / "bench" / "results" / f"fit_{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


class SampleCosts:
    """A TrainProgress that averages the samples per ray of the training steps."""

    def __init__(self) -> None:
        self.marched: list[float] = []
        self.kept: list[float] = []

    def start(self, block_id: str, total_steps: int, resumed_from: int) -> None:
        pass

    def update(self, block_id: str, step: int, metrics: Mapping[str, float]) -> None:
        self.marched.append(metrics["marched_per_ray"])
        self.kept.append(metrics["samples_per_ray"])

    def finish(self, block_id: str, stats: Mapping[str, Any]) -> None:
        pass

    def means(self) -> dict[str, float]:
        """Mean marched and kept samples per ray over all steps and over the last quarter."""
        n = len(self.kept)
        tail = slice(3 * n // 4, n)
        mean = lambda v: round(sum(v) / max(len(v), 1), 2)  # noqa: E731
        return {"marched": mean(self.marched), "kept": mean(self.kept),
                "marched_last_quarter": mean(self.marched[tail]), "kept_last_quarter": mean(self.kept[tail])}


def render_samples_per_ray(block: BlockModel, frames: list[Frame]) -> dict[str, float]:
    """Mean samples per ray that rendering ``frames`` whole marches and colours."""
    marched = colored = rays = 0
    for f in frames:
        origins, dirs, _ = image_rays(f.c2w, f.intrinsics, block.device)
        m, c = block.renderer.sample_counts(block.field, block.occupied, Rays(origins, dirs))
        marched, colored, rays = marched + m, colored + c, rays + origins.shape[0]
    return {"marched": round(marched / max(rays, 1), 2), "colored": round(colored / max(rays, 1), 2)}


if __name__ == "__main__":
    sys.exit(main())
