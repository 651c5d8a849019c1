"""Viewer latency: from a camera move in the browser to the new frame on the page.

    python bench/viewer.py [--store city.zarr] [--width 320] [--moves 20] [--screenshot docs/viewer.png]

Starts ``blocknerf view`` on a trained store, opens it in headless Chromium (Debian's package via
Playwright, as the browser test does: ``tests/viewer_harness.py``) in an 800x600 window, so the
view is 4:3 (``--width 320``: 320x240 full frames). Each move waits until the view has settled
(a full-resolution frame and no new frame for 0.5 s), then drags the mouse a little on the canvas
(orbit). The latency of a move is measured in the page with its own clock: from the first mouse
event of the drag to the moment the statistics of the first new frame appear on the page (they
are sent right after the frame's image). Without ``--store`` the script builds the trained
synthetic 2x2 city first (``blocknerf synth --grid 2x2 --size 64x48``, partition and train with the
tiny preset; several minutes), in a temporary folder.

Prints the figures and writes ``bench/results/viewer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

DEFAULT_OUT = ROOT / "bench" / "results" / "viewer.json"


def build_city(folder: Path, steps: int) -> Path:
    """The trained synthetic 2x2 city (tiny preset) in ``folder``; its store path."""
    from blocknerf.config import read_preset

    config = folder / "tiny.yaml"
    preset = read_preset("tiny")
    preset.setdefault("train", {})["steps"] = steps
    import yaml

    config.write_text(yaml.safe_dump(preset))
    store = folder / "city.zarr"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for cmd in (
        ["synth", str(folder / "city"), "--grid", "2x2", "--size", "64x48", "--quiet"],
        ["partition", str(folder / "city"), "--store", str(store), "--config", str(config)],
        ["train", str(store), "--workers", "1", "--threads-per-worker", "2", "--quiet"],
    ):
        print("$ blocknerf " + " ".join(cmd), flush=True)
        subprocess.run([sys.executable, "-m", "blocknerf", *cmd], check=True, env=env, stdout=subprocess.DEVNULL)
    return store


def measure(store: Path, *, width: int, moves: int, screenshot: Path | None) -> dict[str, object]:
    """Latencies of ``moves`` camera moves (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    from viewer_harness import ViewerPage, ViewerProcess

    latencies: list[float] = []
    widths: list[str] = []
    missing = 0
    with ViewerProcess(store, args=("--width", str(width))) as server, sync_playwright() as pw:
        with ViewerPage(pw, server.url, viewport=(800, 600)) as view:
            t0 = time.monotonic()
            first = view.wait_settled(timeout_s=600)
            first_frame_s = time.monotonic() - t0
            for i in range(moves):
                view.wait_settled(timeout_s=600)
                since = view.now_ms()
                view.drag(30 if i % 2 == 0 else -30, 0, steps=3)
                view.wait_frame(after=view.frame().n, full=False, timeout_s=600)  # type: ignore[union-attr]
                measured = view.latency_ms(since)
                if measured is None:
                    missing += 1
                    continue
                latencies.append(measured[0])
                widths.append(f"{measured[1]['w']}x{measured[1]['h']} {'full' if measured[1]['full'] else 'moving'}")
            settled = view.wait_settled(timeout_s=600)
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                view.page.screenshot(path=str(screenshot))
    lat = np.array(latencies)
    return {
        "store": Path(store).name,
        "full_size": [settled.width, settled.height],
        "first_full_frame_s": round(first_frame_s, 2),
        "first_frame": first.n,
        "moves": moves,
        "measured": len(latencies),
        "missing": missing,
        "latency_ms": [round(float(v), 1) for v in lat],
        "latency_ms_median": round(float(np.median(lat)), 1) if len(lat) else None,
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        "first_frames": widths,
        "render_errors": [line for line in server.output if "warning" in line],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, help="a trained store (default: build the synthetic 2x2 city)")
    p.add_argument("--steps", type=int, default=300, help="training steps per block when building the city")
    p.add_argument("--width", type=int, default=320, help="full-resolution frame width (4:3 window)")
    p.add_argument("--moves", type=int, default=20, help="camera moves to time")
    p.add_argument("--screenshot", type=Path, help="also save a screenshot of the page at the end")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_viewer_") as tmp:
        store = args.store or build_city(Path(tmp), args.steps)
        result = measure(store, width=args.width, moves=args.moves, screenshot=args.screenshot)
    result.update(
        {
            "command": "python bench/viewer.py " + " ".join(Path(a).name if a in (str(args.store), str(args.screenshot)) else a for a in sys.argv[1:]),
            "cpus": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(),
            "targets": {"latency_ms_median": 100, "latency_ms_p95": 250, "full_size": [320, 240]},
        }
    )
    print(json.dumps({k: v for k, v in result.items() if k != "latency_ms"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
