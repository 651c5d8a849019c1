"""Streaming at scale: memory, cache, load times and frame rates for cities of 1, 16 and 64 blocks.

    python bench/stream.py [--budget 200MB] [--frames 60] [--out bench/results/stream.json]
    python bench/stream.py quality --store city.zarr [--views 12]     # a trained store (see below)
    python bench/stream.py lod [--frames 40] [--budget 200MB]          # levels of detail (see below)

Cities: square grids of 1, 4x4 and 8x8 blocks, 80 m apart with 50 % overlap (radius 80 m), of
*untrained* blocks of the full default size (ModelConfig(): 16 levels x 2^18 x 2 float32 hash
tables, 128^3 occupancy: about 34 MB each in memory). All blocks of a store share one freshly
initialised field (the arrays are still written, stored and loaded once per block). Untrained
fields cost the same to evaluate as trained ones; what sets the cost is the number of samples per
ray, so the occupancy grid is a shell (the cells with 0.5 <= |u|_inf <= 0.6 in normalised block
coordinates, like a ring of facades 8 m deep at 40-48 m from the centre), through which every ray
from inside passes once: about 50 samples per ray, in the range of a trained Instant-NGP block.

Each city runs in its own process (so peak RSS, read from VmHWM, is its own): the same flythrough
of ``--frames`` frames, 8 m apart on a serpentine path (the same length in every city), rendered
at 64x48 with the prefetcher on and a fixed ``--budget``. Frames per second are measured at
320x240 in a separate process on the 64-block city: standing at a block centre (one block in
range) and at a point where three blocks are blended, after a warm-up frame (blocks loaded).

``quality`` measures a trained store: composite vs best single block held-out PSNR
(``streaming.evaluation``), and the frame-to-frame change at block switches along a drive between
the two nearest neighbouring blocks (blended and, for contrast, one block at a time). Run it on
the trained synthetic 2x2 city (``blocknerf demo`` or synth + partition + train) and it adds a
``quality`` section to the results file.

``lod`` compares levels of detail with whole blocks over the same flythrough of a 64-block city of
*baked* blocks (the colour heads of the untrained field, and a bake at 256^3 with four levels,
32^3 .. 256^3, of a textured shell like the one above: opaque facades whose features vary at
wavelengths of 4 to 64 voxels), every block within twice its radius blended (``max_blocks: null``,
``range_factor: 2``) in both modes: bytes loaded
and peak bytes resident, the PSNR of each block's render at the level it drew against its finest
level per distance band (band 0: the block the camera is in) and of the whole composite, the time
to the first frame after a jump across the city (no prefetcher; each jump lands where nothing is
loaded), and peak RSS of the LoD flythrough in a 16- and a 64-block city. It adds a ``lod`` object
to the results file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "stream.json"
SPACING_M = 80.0
CITY_SIDES = {1: 1, 16: 4, 64: 8}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- writing the cities -------------------------------------------------------------------------------
def shell_occupancy(resolution: int, inner: float = 0.5, outer: float = 0.6) -> np.ndarray:
    """(G, G, G) bool: cells whose centre has inner <= |u|_inf <= outer (normalised coordinates)."""
    c = (np.arange(resolution) + 0.5) / resolution * 4.0 - 2.0  # contracted coordinate of cell centres
    m = np.maximum(np.maximum(np.abs(c)[:, None, None], np.abs(c)[None, :, None]), np.abs(c)[None, None, :])
    return (m >= inner) & (m <= outer)


def write_city(path: Path, blocks: int) -> dict[str, Any]:
    """A store of ``blocks`` untrained full-size blocks on a square grid; returns facts about it."""
    import torch

    from blocknerf.model.block import BlockModel
    from blocknerf.capture.frames import Capture, Frame, Intrinsics
    from blocknerf.model.bounds import BlockBounds
    from blocknerf.model.config import ModelConfig
    from blocknerf.model.field import BlockField
    from blocknerf.store import BlockStore
    from partitioning import BlockPlan, BlockSpec, PartitionConfig

    side = CITY_SIDES[blocks]
    offsets = (np.arange(side) - 0.5 * (side - 1)) * SPACING_M
    centres = [(float(x), float(y)) for x in offsets for y in offsets]
    ids = [f"b{i:03d}_{j:03d}" for i in range(side) for j in range(side)]
    specs = []
    for b, (x, y) in zip(ids, centres):
        near = tuple(o for o, (ox, oy) in zip(ids, centres) if o != b and math.hypot(ox - x, oy - y) < 2 * SPACING_M - 1e-6)
        specs.append(BlockSpec(b, (x, y, 20.0), SPACING_M, 0.0, 40.0, neighbors=near, frames=("f0",), shares=(1.0,)))
    plan = BlockPlan(tuple(specs), "grid", PartitionConfig(spacing_m=SPACING_M), SPACING_M, n_frames=1)
    k = Intrinsics.from_fov(320, 240, math.radians(85.0))
    capture = Capture(path.parent, (Frame("f0", path.parent / "f0.png", k, np.eye(4), 0),))
    store = BlockStore.create(path, plan=plan, capture=capture, force=True)

    cfg = ModelConfig()
    torch.manual_seed(0)
    fld = BlockField(cfg, num_images=1, with_exposure=False)
    occupied = torch.from_numpy(shell_occupancy(cfg.occupancy.resolution))
    t0 = time.perf_counter()
    versions = {}
    nbytes = 0
    for spec in specs:
        bounds = BlockBounds.from_spec(spec.center, spec.radius_m, spec.z_min, spec.z_max)
        model = BlockModel(spec.id, bounds, cfg, fld, occupied, ("f0",))
        nbytes = model.nbytes
        arrays, attrs = model.to_record()
        versions[spec.id] = store.write_version(spec.id, arrays, attrs)
    store.publish(versions)
    return {"blocks": blocks, "write_s": round(time.perf_counter() - t0, 2), "block_nbytes": nbytes,
            "occupied_fraction": round(float(occupied.float().mean()), 4)}


def serpentine(frames: int, step_m: float) -> np.ndarray:
    """(frames, 3) positions 2 m up, ``step_m`` apart, east along a row of block centres + 20 m,
    north 80 m, west, ... starting at the south-west of a 4x4 city (the same path in every city)."""
    start = np.array([-1.5 * SPACING_M, -1.5 * SPACING_M + 20.0])
    pts, pos, heading, run = [], start.copy(), np.array([1.0, 0.0]), 0.0
    row_len = 3.0 * SPACING_M
    for _ in range(frames):
        pts.append([pos[0], pos[1], 2.0])
        pos = pos + step_m * heading
        run += step_m
        if heading[1] == 0.0 and run >= row_len - 1e-9:
            heading, run = np.array([0.0, 1.0]), 0.0
        elif heading[1] == 1.0 and run >= SPACING_M - 1e-9:
            heading = np.array([-1.0 if pos[0] > 0 else 1.0, 0.0])
            run = 0.0
    return np.array(pts)


# -- the child processes -------------------------------------------------------------------------------
def child_flythrough(store: str, budget: str, frames: int, step_m: float, threads: int) -> dict[str, Any]:
    import torch

    if threads:
        torch.set_num_threads(threads)

    from blocknerf.store import BlockStore
    from partitioning.layouts import heading_poses
    from streaming.camera_path import CameraPath
    from streaming.config import StreamConfig, parse_bytes
    from streaming.flythrough import render_flythrough
    from streaming.streamer import BlockStreamer

    rss_start = peak_rss_mb()
    positions = serpentine(frames, step_m)
    heading = np.diff(positions, axis=0, append=positions[-1:] + (positions[-1:] - positions[-2:-1]))
    c2w = heading_poses(positions, np.arctan2(heading[:, 1], heading[:, 0]), math.radians(5.0))
    path = CameraPath(c2w, np.full(frames, 60.0), fps=10.0)
    cfg = StreamConfig(memory_budget_mb=parse_bytes(budget) / 1e6, device="cpu")
    streamer = BlockStreamer.open(BlockStore.open(store), cfg)
    result = render_flythrough(streamer, path, size=(64, 48), progress=False)
    s = result.summary
    return {
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_imports_mb": round(rss_start, 1),
        "frames": s["frames"],
        "frames_per_s_64x48": s["frames_per_s"],
        "blocks_used": len(s["blocks_used"]),
        "blocks_per_frame_mean": s["blocks_per_frame_mean"],
        "cache": s["cache"],
        "budget_bytes": s["budget_bytes"],
        "peak_cache_bytes": s["peak_cache_bytes"],
        "over_budget_bytes": max(0, s["peak_cache_bytes"] - s["budget_bytes"], s["over_budget_bytes"]),
        "load_ms": streamer.cache.load_times_ms(),
        "torch_threads": torch.get_num_threads(),
    }


def child_fps(store: str, repeats: int, threads: int) -> dict[str, Any]:
    import torch

    if threads:
        torch.set_num_threads(threads)

    from blocknerf.capture.frames import Intrinsics
    from blocknerf.model.marching import march
    from blocknerf.capture.rays import image_rays
    from blocknerf.store import BlockStore
    from partitioning.layouts import heading_poses
    from streaming.compositor import Compositor
    from streaming.config import StreamConfig
    from streaming.protocol import CameraView
    from streaming.streamer import BlockStreamer

    cfg = StreamConfig(memory_budget_mb=1000.0, device="cpu", prefetch=False)
    streamer = BlockStreamer.open(BlockStore.open(store), cfg)
    compositor = Compositor(streamer)
    k = Intrinsics.from_fov(320, 240, math.radians(85.0))

    def at(x: float, y: float) -> CameraView:
        return CameraView(heading_poses(np.array([[x, y, 2.0]]), np.array([0.3]), math.radians(5.0))[0], k)

    def third_weight(x: float, y: float) -> float:
        sel = streamer.select(np.array([x, y, 2.0]))
        w = sorted((s.weight for s in sel), reverse=True)
        return w[2] / sum(w) if len(w) == 3 else 0.0

    # A block centre (its neighbours sit exactly at the edge of its range), and the point of a
    # cell where three blocks blend most evenly.
    one = (SPACING_M / 2, SPACING_M / 2)
    grid = [(float(x), float(y)) for x in np.arange(40.0, 80.0, 2.0) for y in np.arange(40.0, 80.0, 2.0)]
    three = max(grid, key=lambda p: third_weight(*p))
    out: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    for name, (x, y) in (("1_block", one), ("3_blocks", three)):
        view = at(x, y)
        compositor.render(view)  # warm-up: blocks loaded
        t0 = time.perf_counter()
        for _ in range(repeats):
            frame = compositor.render(view)
        seconds = (time.perf_counter() - t0) / repeats
        out[f"fps_{name}"] = round(1.0 / seconds, 3)
        out[f"frame_ms_{name}"] = round(1e3 * seconds, 1)
        out[f"blended_{name}"] = len(frame.used)
        out[f"position_{name}"] = [float(x), float(y)]
    # Samples per ray of one block at 320x240 (after occupancy skipping, before early termination).
    key = streamer.select(np.array([*one, 2.0]))[0].key
    with streamer.cache.lease(key) as block:
        o, d, _ = image_rays(np.array(at(*one).c2w), k)
        on, dn = block.bounds.normalize_rays(o, d)
        samples = march(on, dn, block.renderer.edges, block.occupied, max_per_ray=block.model_cfg.sampler.max_samples_per_ray)
        out["samples_per_ray"] = round(len(samples) / len(o), 1)
    return out


def run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the quality measurement on a trained store ---------------------------------------------------------
def quality(store_url: str, views: int, threads: int | None) -> dict[str, Any]:
    import torch

    from blocknerf.config import replace
    from blocknerf.store import BlockStore
    from partitioning.layouts import heading_poses
    from streaming.camera_path import CameraPath
    from streaming.config import StreamConfig
    from streaming.evaluation import evaluate_composite
    from streaming.flythrough import render_flythrough
    from streaming.streamer import BlockStreamer

    if threads:
        torch.set_num_threads(threads)
    store = BlockStore.open(store_url)
    cfg = replace(StreamConfig(), store.config.get("stream", {}))
    t0 = time.perf_counter()
    comp = evaluate_composite(store, cfg, max_views=views)
    comp.pop("per_view", None)
    plan = store.plan
    published = set(store.manifest().blocks)
    pairs = [(a, b) for a in plan.blocks for b in plan.blocks if a.id < b.id and a.id in published and b.id in published and b.id in a.neighbors]
    pops: dict[str, Any] = {}
    if pairs:
        a, b = min(pairs, key=lambda p: np.linalg.norm(p[0].center_xy - p[1].center_xy))
        span = b.center_xy - a.center_xy
        direction = span / np.linalg.norm(span)
        xy = a.center_xy - 0.3 * span + np.outer(np.arange(0.0, 1.6 * np.linalg.norm(span), 1.0), direction)
        z = float(np.median(store.capture.positions()[:, 2]))
        c2w = heading_poses(np.column_stack([xy, np.full(len(xy), z)]), np.full(len(xy), math.atan2(direction[1], direction[0])), math.radians(8.0))
        path = CameraPath(c2w, np.full(len(xy), 60.0), fps=30.0)
        for name, max_blocks in (("blended", cfg.max_blocks), ("one_block", 1)):
            streamer = BlockStreamer.open(store, replace(cfg, {"max_blocks": max_blocks}))
            pops[name] = render_flythrough(streamer, path, size=(160, 120), progress=False).summary["pop"]
        pops["drive"] = {"from": a.id, "to": b.id, "frames": len(xy), "step_m": 1.0}
    return {"store": store_url, "composite": comp, "pop": pops, "seconds": round(time.perf_counter() - t0, 1)}


# -- levels of detail ---------------------------------------------------------------------------------
LOD_RESOLUTION = 256


def textured_shell(x01: "Any", features: int) -> tuple["Any", "Any"]:
    """Density (opaque in the shell 0.5 <= |u|_inf <= 0.6) and ``features`` channels of sines of
    wavelengths 4 to 64 voxels of the finest level (u = 4 x - 2, one voxel 1/64 of u)."""
    import torch

    u = x01 * 4.0 - 2.0
    m = u.abs().amax(dim=-1)
    sigma = torch.where((m >= 0.5) & (m <= 0.6), torch.full_like(m, 60.0), torch.zeros_like(m))
    cycles = (1.0, 2.0, 4.0, 8.0, 16.0)  # per unit of u: 64 .. 4 voxels per wavelength
    chans = [torch.sin(2.0 * math.pi * cycles[i % 5] * u[:, i % 3] + 0.7 * i) for i in range(features)]
    return sigma, torch.stack(chans, dim=-1)


def write_lod_city(path: Path, blocks: int) -> dict[str, Any]:
    """A store of ``blocks`` baked blocks (heads + four levels; no hash tables) on the grid of
    ``write_city``; all share one bake, written once per block."""
    import torch

    from blocknerf.capture.frames import Capture, Frame, Intrinsics
    from blocknerf.model.bake import bake_levels, heads_nbytes, levels_record
    from blocknerf.model.baked_block import HEAD_ARRAYS
    from blocknerf.model.block import BlockModel
    from blocknerf.model.bounds import BlockBounds
    from blocknerf.model.config import BakeConfig, ModelConfig
    from blocknerf.model.field import BlockField
    from blocknerf.store import BlockStore
    from partitioning import BlockPlan, BlockSpec, PartitionConfig

    side = CITY_SIDES[blocks]
    offsets = (np.arange(side) - 0.5 * (side - 1)) * SPACING_M
    centres = [(float(x), float(y)) for x in offsets for y in offsets]
    ids = [f"b{i:03d}_{j:03d}" for i in range(side) for j in range(side)]
    specs = [BlockSpec(b, (x, y, 20.0), SPACING_M, 0.0, 40.0, neighbors=(), frames=("f0",), shares=(1.0,)) for b, (x, y) in zip(ids, centres)]
    plan = BlockPlan(tuple(specs), "grid", PartitionConfig(spacing_m=SPACING_M), SPACING_M, n_frames=1)
    k = Intrinsics.from_fov(320, 240, math.radians(85.0))
    capture = Capture(path.parent, (Frame("f0", path.parent / "f0.png", k, np.eye(4), 0),))
    store = BlockStore.create(path, plan=plan, capture=capture, force=True)
    cfg = ModelConfig()
    torch.manual_seed(0)
    fld = BlockField(cfg, num_images=1, with_exposure=False)
    nfeat = int(fld.density(torch.rand(2, 3))[1].shape[-1])
    t0 = time.perf_counter()
    occupied = torch.from_numpy(shell_occupancy(cfg.occupancy.resolution))
    bake_cfg = BakeConfig(max_resolution=LOD_RESOLUTION, levels=4)
    grids = bake_levels(lambda x: textured_shell(x, nfeat), LOD_RESOLUTION, bake_cfg, occupied=occupied)
    baked, levels = levels_record(grids)
    bake_s = time.perf_counter() - t0
    versions = {}
    for spec in specs:
        bounds = BlockBounds.from_spec(spec.center, spec.radius_m, spec.z_min, spec.z_max)
        model = BlockModel(spec.id, bounds, cfg, fld, occupied, ("f0",))
        arrays, attrs = model.to_record()
        heads = {n: a for n, a in arrays.items() if HEAD_ARRAYS.match(n)}
        attrs["baked"] = {"resolution": LOD_RESOLUTION, "brick": bake_cfg.brick, "bricks": levels[-1]["bricks"],
                          "nbytes": int(sum(a.nbytes for a in baked.values())), "heads_nbytes": heads_nbytes(model), "levels": levels}
        versions[spec.id] = store.write_version(spec.id, {**heads, **baked}, attrs)
    store.publish(versions)
    return {"blocks": blocks, "bake_s": round(bake_s, 2), "write_s": round(time.perf_counter() - t0, 2),
            "levels": [{k: lv[k] for k in ("resolution", "bricks", "nbytes")} for lv in levels]}


LOD_RANGE_FACTOR = 2.0
"""Blocks within twice their radius blend (about 12 on this grid): what levels of detail make
affordable, and what whole blocks pay full detail for."""


def _lod_config(budget: str, lod: bool, prefetch: bool = True) -> Any:
    from streaming.config import StreamConfig, parse_bytes

    return StreamConfig(memory_budget_mb=parse_bytes(budget) / 1e6, device="cpu", lod=lod, max_blocks=None,
                        visibility_threshold=0.0, prefetch=prefetch, range_factor=LOD_RANGE_FACTOR)


def child_lod(store: str, budget: str, frames: int, lod: bool, size: int, jumps: int, threads: int) -> dict[str, Any]:
    """One city, one mode: the flythrough's bytes, then (LoD) per-band PSNR, then cold jumps."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from blocknerf.evaluation.metrics import psnr
    from blocknerf.store import BlockStore
    from partitioning.layouts import heading_poses
    from streaming.camera_path import CameraPath
    from streaming.compositor import Compositor
    from streaming.flythrough import render_flythrough
    from streaming.streamer import BlockStreamer

    rss_start = peak_rss_mb()
    positions = serpentine(frames, 8.0)
    heading = np.diff(positions, axis=0, append=positions[-1:] + (positions[-1:] - positions[-2:-1]))
    c2w = heading_poses(positions, np.arctan2(heading[:, 1], heading[:, 0]), math.radians(5.0))
    path = CameraPath(c2w, np.full(frames, 60.0), fps=10.0)
    wh = (size, size * 3 // 4)
    opened = BlockStore.open(store)
    streamer = BlockStreamer.open(opened, _lod_config(budget, lod))
    result = render_flythrough(streamer, path, size=wh, progress=False)
    c = streamer.cache.counters()
    out: dict[str, Any] = {"loaded_bytes": c.loaded_bytes, "peak_resident_bytes": c.peak_bytes, "over_budget_bytes": c.over_budget_bytes,
                           "lod_summary": result.summary["lod"], "frames_per_s": result.summary["frames_per_s"],
                           "blocks_per_frame_mean": result.summary["blocks_per_frame_mean"]}
    out["peak_rss_mb_flythrough"] = round(peak_rss_mb(), 1)
    if lod:
        # Quality: each block at the level the settled view draws vs its finest, per distance band.
        whole = Compositor(BlockStreamer.open(opened, _lod_config("4GB", False, prefetch=False)))
        comp = Compositor(BlockStreamer.open(opened, _lod_config(budget, True, prefetch=False)))
        bands: dict[str, list[float]] = {}
        composite = []
        for i in range(0, frames, max(1, frames // 8)):
            view = path.view(i, wh)
            settled = comp.render(view, settled=True)
            full = whole.render(view)
            composite.append(float(psnr(torch.from_numpy(settled.rgb), torch.from_numpy(full.rgb))))
            for u in settled.used:
                band = "0" if u.distance_m <= min(b.distance_m for b in settled.used) else str(1 + int(u.distance_m // SPACING_M))
                key = (u.block_id, u.version)
                a = comp.render_block(key, view, level=u.level).rgb
                b = whole.render_block(key, view).rgb
                bands.setdefault(band, []).append(min(99.0, float(psnr(a, b))))
        out["psnr_by_band_db"] = {k: round(float(np.min(v)), 2) for k, v in sorted(bands.items())}
        out["psnr_by_band_mean_db"] = {k: round(float(np.mean(v)), 2) for k, v in sorted(bands.items())}
        out["psnr_composite_min_db"] = round(min(composite), 2)
    # Cold jumps: a fresh streamer, no prefetcher; each jump goes to the far side of the city.
    jumper = Compositor(BlockStreamer.open(opened, _lod_config(budget, lod, prefetch=False)))
    rng = np.random.default_rng(0)
    extent = 0.5 * (CITY_SIDES[64 if "64" in Path(store).name else 16] - 1) * SPACING_M
    first_ms = []
    x, y = -extent, -extent
    for _ in range(jumps):
        x, y = -np.sign(x) * extent * rng.uniform(0.6, 1.0), -np.sign(y) * extent * rng.uniform(0.6, 1.0)
        view = CameraPath(heading_poses(np.array([[x, y, 2.0]]), np.array([rng.uniform(0, 2 * np.pi)]), math.radians(5.0)),
                          np.array([60.0]), fps=10.0).view(0, wh)
        t0 = time.perf_counter()
        jumper.render(view)
        first_ms.append(1e3 * (time.perf_counter() - t0))
        jumper.streamer.cache.clear()  # the next jump lands cold, as across a city it would
    out["first_frame_ms"] = [round(v, 1) for v in first_ms]
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["rss_after_imports_mb"] = round(rss_start, 1)
    return out


def lod_section(args: argparse.Namespace) -> dict[str, Any]:
    """Write the 16- and 64-block baked cities, run the children, gather the ``lod`` object."""
    work = args.workdir or Path(tempfile.mkdtemp(prefix="blocknerf-lod-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    common = [args.budget, str(args.frames), str(args.size), str(args.jumps), str(args.threads)]
    try:
        cities = {n: write_lod_city(work / f"lod{n}.zarr", n) for n in (16, 64)}
        print(f"wrote baked cities: {cities[64]}", flush=True)
        runs = {mode: run_child(["_lod", str(work / "lod64.zarr"), mode, *common]) for mode in ("lod", "whole")}
        rss16 = run_child(["_lod", str(work / "lod16.zarr"), "lod", *common])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    lod, whole = runs["lod"], runs["whole"]
    return {
        "bytes_loaded_ratio": round(whole["loaded_bytes"] / max(1, lod["loaded_bytes"]), 2),
        "peak_resident_ratio": round(whole["peak_resident_bytes"] / max(1, lod["peak_resident_bytes"]), 2),
        "psnr_near_db": lod["psnr_by_band_db"].get("0"),
        "first_frame_ms_median": round(float(np.median(lod["first_frame_ms"])), 1),
        "first_frame_ms_median_whole": round(float(np.median(whole["first_frame_ms"])), 1),
        "psnr_by_band_db": lod["psnr_by_band_db"],
        "psnr_composite_min_db": lod["psnr_composite_min_db"],
        "peak_rss_mb": {"16": rss16["peak_rss_mb_flythrough"], "64": lod["peak_rss_mb_flythrough"]},
        "rss_growth_16_to_64": round(lod["peak_rss_mb_flythrough"] / rss16["peak_rss_mb_flythrough"] - 1.0, 4),
        "details": {"budget": args.budget, "frames": args.frames, "size": [args.size, args.size * 3 // 4], "jumps": args.jumps,
                    "city": cities[64], "lod": lod, "whole": whole, "lod_16": rss16,
                    "load_average_1m": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count()},
        "targets": {"bytes_loaded_ratio": 4.0, "peak_resident_ratio": 4.0, "psnr_near_db": 35.0, "first_frame_ms_median": 200.0,
                    "rss_growth_16_to_64": 0.10},
    }


# -- main ------------------------------------------------------------------------------------------------
def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_flythrough":
        print(json.dumps(child_flythrough(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_fps":
        print(json.dumps(child_fps(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_lod":
        a = sys.argv[2:]
        print(json.dumps(child_lod(a[0], a[2], int(a[3]), a[1] == "lod", int(a[4]), int(a[5]), int(a[6]))))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "lod":
        p = argparse.ArgumentParser(prog="bench/stream.py lod")
        p.add_argument("lod")
        p.add_argument("--budget", default="200MB")
        p.add_argument("--frames", type=int, default=40)
        p.add_argument("--size", type=int, default=128, help="frame width (height 3/4 of it)")
        p.add_argument("--jumps", type=int, default=7)
        p.add_argument("--threads", type=int, default=0)
        p.add_argument("--workdir", type=Path)
        p.add_argument("--keep", action="store_true")
        p.add_argument("--out", type=Path, default=DEFAULT_OUT)
        args = p.parse_args()
        result = lod_section(args)
        print(json.dumps({k: v for k, v in result.items() if k != "details"}, indent=2))
        doc = json.loads(args.out.read_text()) if args.out.exists() else {}
        doc["lod"] = result
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        t = result["targets"]
        ok = all(result[k] >= t[k] for k in ("bytes_loaded_ratio", "peak_resident_ratio", "psnr_near_db")) and \
            result["first_frame_ms_median"] <= t["first_frame_ms_median"] and result["rss_growth_16_to_64"] <= t["rss_growth_16_to_64"]
        print(f"LoD targets: {'met' if ok else 'MISSED'}; wrote {args.out}")
        return 0 if ok else 1
    if len(sys.argv) > 1 and sys.argv[1] == "quality":
        p = argparse.ArgumentParser(prog="bench/stream.py quality")
        p.add_argument("quality")
        p.add_argument("--store", required=True)
        p.add_argument("--views", type=int, default=12)
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--out", type=Path, default=DEFAULT_OUT)
        args = p.parse_args()
        result = quality(args.store, args.views, args.threads)
        print(json.dumps(result, indent=2))
        doc = json.loads(args.out.read_text()) if args.out.exists() else {}
        doc["quality"] = result
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        return 0

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="200MB", help="memory budget of every flythrough")
    p.add_argument("--frames", type=int, default=60, help="flythrough frames (8 m apart)")
    p.add_argument("--repeats", type=int, default=3, help="timed 320x240 frames per position")
    p.add_argument("--threads", type=int, default=0, help="torch threads in the measuring processes (0: torch's default)")
    p.add_argument("--workdir", type=Path, help="where to write the stores (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the stores")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="blocknerf-stream-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        cities = {}
        for n in CITY_SIDES:
            cities[n] = write_city(work / f"city{n}.zarr", n)
            print(f"wrote {n} blocks in {cities[n]['write_s']} s", flush=True)
        runs = {}
        for n in CITY_SIDES:
            runs[n] = run_child(["_flythrough", str(work / f"city{n}.zarr"), args.budget, str(args.frames), "8.0", str(args.threads)])
            r = runs[n]
            print(f"{n:>2} blocks: peak RSS {r['peak_rss_mb']} MiB, {r['blocks_used']} blocks used, "
                  f"{r['cache']['misses']} misses / {r['cache']['prefetch_loads']} prefetched / {r['cache']['evictions']} evictions, "
                  f"peak cache {r['peak_cache_bytes'] / 1e6:.1f} of {r['budget_bytes'] / 1e6:.0f} MB", flush=True)
        fps = run_child(["_fps", str(work / "city64.zarr"), str(args.repeats), str(args.threads)])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    loads = [ms for n in (16, 64) for ms in runs[n]["load_ms"]]
    growth = runs[64]["peak_rss_mb"] / runs[16]["peak_rss_mb"] - 1.0
    result = {
        "peak_rss_mb": {str(n): runs[n]["peak_rss_mb"] for n in CITY_SIDES},
        "rss_growth_16_to_64": round(growth, 4),
        "cache_over_budget_bytes": max(r["over_budget_bytes"] for r in runs.values()),
        "load_ms_median": round(float(np.median(loads)), 2),
        "load_ms_p95": round(float(np.percentile(loads, 95)), 2),
        "fps_1_block": fps["fps_1_block"],
        "fps_3_blocks": fps["fps_3_blocks"],
        "details": {
            "budget": args.budget,
            "flythrough": {"frames": args.frames, "step_m": 8.0, "length_m": 8.0 * (args.frames - 1), "size": [64, 48]},
            "cities": {str(n): {**cities[n], **{k: v for k, v in runs[n].items() if k != "load_ms"}, "loads": len(runs[n]["load_ms"])} for n in CITY_SIDES},
            "fps_320x240": fps,
            "loads_measured": len(loads),
            "occupancy": "shell 0.5 <= |u|_inf <= 0.6 of the 128^3 grid",
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "targets": {"rss_growth_16_to_64": 0.10, "cache_over_budget_bytes": 0},
    }
    print(
        f"peak RSS 1/16/64 blocks: {result['peak_rss_mb']} MiB, growth 16->64 {100 * growth:.1f} %; "
        f"cache over budget {result['cache_over_budget_bytes']} B; load ms median {result['load_ms_median']}, "
        f"p95 {result['load_ms_p95']} ({len(loads)} loads); 320x240 frames/s: {fps['fps_1_block']} with 1 block, "
        f"{fps['fps_3_blocks']} with {fps['blended_3_blocks']} blended ({fps['samples_per_ray']} samples/ray, "
        f"{fps['torch_threads']} torch threads)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    for section in ("quality", "lod"):
        if section in previous:
            result[section] = previous[section]
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    ok = growth <= 0.10 and result["cache_over_budget_bytes"] == 0
    print(f"targets (RSS growth <= 10 %, cache never over budget): {'met' if ok else 'MISSED'}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
