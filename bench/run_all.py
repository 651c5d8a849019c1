"""Run every benchmark one after another (``make bench``) and print the headline figures.

    python bench/run_all.py [--only fit_fox,stream] [--quick]

Each benchmark is its own script (run it alone for its options) that prints its figures and writes
``bench/results/<name>.json``. They run one at a time: each measures speed, and two at once on the
same cores would measure each other. The fit benchmarks need ../shared/data/fox_8x (skipped with a
note when it is absent). ``--quick`` runs the shortest settings each script has: a smoke test of
the scripts, not figures to quote.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FOX = ROOT.parent / "shared" / "data" / "fox_8x"

# name -> (arguments, --quick arguments, result file, headline keys)
BENCHES: dict[str, tuple[list[str], list[str], str, list[str]]] = {
    "hashgrid": (["bench/hashgrid.py"], ["bench/hashgrid.py", "--seconds", "0.5"], "hashgrid.json", []),
    "partition_scale": (["bench/partition_scale.py"], ["bench/partition_scale.py", "--frames", "20000", "--city-blocks", "5"], "partition_scale.json", []),
    "fit_fox": (["bench/fit.py", "--data", str(FOX), "--config", "configs/fox.yaml", "--name", "fox_8x"],
                ["bench/fit.py", "--data", str(FOX), "--config", "configs/fox.yaml", "--minutes", "0.5", "--marks", "30", "--eval-views", "2",
                 "--out", "/dev/null"],
                "fit_fox_8x.json", ["psnr_at_s", "render_s_per_frame"]),
    "fit_city": (["bench/fit.py", "--synthetic", "--name", "city_block"],
                 ["bench/fit.py", "--synthetic", "--grid", "1x1", "--minutes", "0.5", "--marks", "30", "--eval-views", "2", "--out", "/dev/null"],
                 "fit_city_block.json", ["psnr_at_s", "render_s_per_frame"]),
    "train_scaling": (["bench/train_scaling.py"], ["bench/train_scaling.py", "--quick"], "train_scaling.json", ["seconds_1_worker", "seconds_2_workers", "speedup"]),
    "update": (["bench/update.py"], ["bench/update.py", "--steps", "20", "--out", "/dev/null"], "update.json", ["full_train_s", "update_s", "ratio"]),
    "fidelity": (["bench/fidelity.py"], ["bench/fidelity.py", "--seconds", "5", "--views", "1", "--out", "/dev/null"],
                 "fidelity.json", ["seam_psnr", "interior_psnr", "train_s"]),
    "stream": (["bench/stream.py"], ["bench/stream.py", "--frames", "6", "--repeats", "1"], "stream.json", []),
    "viewer": (["bench/viewer.py"], ["bench/viewer.py", "--steps", "20", "--width", "64", "--moves", "3", "--out", "/dev/null"], "viewer.json",
               ["latency_ms_median", "latency_ms_p95"]),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated names: " + ", ".join(BENCHES))
    p.add_argument("--quick", action="store_true", help="shortest settings (checks the scripts run; figures not to quote)")
    args = p.parse_args()
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failed = []
    for name in names:
        full, quick, result, keys = BENCHES[name]
        if name.startswith("fit_fox") and not FOX.is_dir():
            print(f"== {name}: skipped ({FOX.relative_to(ROOT.parent)} is absent)")
            continue
        argv = quick if args.quick else full
        print(f"== {name}: {' '.join(argv)}", flush=True)
        began = time.perf_counter()
        code = subprocess.run([sys.executable, *argv], cwd=ROOT, check=False).returncode
        print(f"== {name}: exit {code} after {time.perf_counter() - began:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
        elif keys and not args.quick and (RESULTS / result).exists():
            doc = json.loads((RESULTS / result).read_text())
            print("   " + ", ".join(f"{k} = {doc.get(k)}" for k in keys))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
