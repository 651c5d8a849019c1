"""Throughput of the hash-grid encoding: fused native CPU kernel vs the plain torch reference.

Forward+backward (the table gradient, as in training) and forward-only samples per second, for
the default HashGridConfig (16 levels, F=2, T=2^18), on ``--threads`` torch threads (default 2),
with uniformly random points (the worst case for cache locality: real ray samples are coherent).
Warm-up iterations are excluded; each figure is measured for ``--seconds``. Writes a JSON summary
(``--out``, default bench/results/hashgrid.json).

    python bench/hashgrid.py [--samples 65536] [--seconds 3] [--out bench/results/hashgrid.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocknerf.model.config import HashGridConfig  # noqa: E402
from blocknerf.model.hashgrid import HashGridEncoding, hash_encode_fast, hash_encode_reference  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "hashgrid.json"


def measure(step, samples: int, seconds: float, warmup: int = 2) -> dict[str, float]:
    """Run ``step`` for about ``seconds`` after ``warmup`` calls; samples/s over the timed calls."""
    for _ in range(warmup):
        step()
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= seconds and len(times) >= 3:
            break
    total = sum(times)
    times.sort()
    return {
        "samples_per_s": samples * len(times) / total,
        "iterations": len(times),
        "median_ms": 1e3 * times[len(times) // 2],
        "best_ms": 1e3 * times[0],
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2**16, help="points per batch (default 65536)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON summary (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = HashGridConfig(backend="fast")
    enc = HashGridEncoding(cfg)
    table, res = enc.table, enc.resolutions
    x = torch.rand(args.samples, 3)
    grad_out = torch.randn(args.samples, enc.output_dim)
    load_before = os.getloadavg()

    def train_step(fn):
        def step():
            (grad,) = torch.autograd.grad(fn(x, table, res), table, grad_out)
            return grad

        return step

    def forward_step(fn):
        def step():
            with torch.no_grad():
                return fn(x, table, res)

        return step

    paths = {"fast": hash_encode_fast, "reference": hash_encode_reference}
    results: dict[str, dict[str, dict[str, float]]] = {"train": {}, "forward": {}}
    for name, fn in paths.items():
        results["train"][name] = measure(train_step(fn), args.samples, args.seconds)
        results["forward"][name] = measure(forward_step(fn), args.samples, args.seconds)
    load_after = os.getloadavg()

    print(f"hash grid: L={cfg.levels} F={cfg.features_per_level} T=2^{cfg.log2_table_size} "
          f"res {res[0]}..{res[-1]}, batch {args.samples}, {torch.get_num_threads()} threads")
    print(f"{'pass':<18}{'path':<11}{'samples/s':>14}{'median ms':>12}{'best ms':>10}{'iters':>7}")
    for kind, label in (("train", "forward+backward"), ("forward", "forward only")):
        for name in paths:
            r = results[kind][name]
            print(f"{label:<18}{name:<11}{r['samples_per_s']:>14,.0f}{r['median_ms']:>12.2f}{r['best_ms']:>10.2f}"
                  f"{r['iterations']:>7}")
        speedup = results[kind]["fast"]["samples_per_s"] / results[kind]["reference"]["samples_per_s"]
        print(f"{label:<18}{'speedup':<11}{speedup:>13.1f}x")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")

    train, fwd = results["train"], results["forward"]
    summary = {
        "reference_samples_per_s": train["reference"]["samples_per_s"],
        "fast_samples_per_s": train["fast"]["samples_per_s"],
        "speedup": train["fast"]["samples_per_s"] / train["reference"]["samples_per_s"],
        "forward_reference_samples_per_s": fwd["reference"]["samples_per_s"],
        "forward_fast_samples_per_s": fwd["fast"]["samples_per_s"],
        "forward_speedup": fwd["fast"]["samples_per_s"] / fwd["reference"]["samples_per_s"],
        "batch_size": args.samples,
        "threads": torch.get_num_threads(),
        "seconds_per_measurement": args.seconds,
        "config": asdict(cfg),
        "resolutions": list(res),
        "details": results,
        "load_average_before": load_before[0],
        "load_average_after": load_after[0],
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
