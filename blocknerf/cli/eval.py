"""``blocknerf eval S.zarr``: held-out PSNR/SSIM per block and for the streamed composite."""

from __future__ import annotations

import argparse
import json
from typing import Any

from blocknerf.cli.guards import add_outside_paths_argument, check_store_images
from blocknerf.cli.settings import add_config_argument

DEFAULT_VIEWS = 8
"""Held-out views per block and for the composite without --views: enough for a stable mean, and
with baked blocks the whole evaluation of a small city takes about a minute on 2 cores."""

HELP = "held-out PSNR/SSIM of each block and of the composite (blocks blended as when streaming)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store")
    add_config_argument(p)
    p.add_argument("--blocks", metavar="ID[,ID]", help="only these blocks")
    p.add_argument("--views", type=int, default=DEFAULT_VIEWS, metavar="N",
                   help=f"at most N held-out views per block and for the composite, spread evenly (0: all; default {DEFAULT_VIEWS})")
    p.add_argument("--renderer", choices=("baked", "neural"), help="render blocks from their bake where they have one, or from their network (default: stream.renderer)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-composite", action="store_true", help="skip the composite evaluation")
    p.add_argument(
        "--capture", metavar="DIR",
        help="score the composite on the held-out views of another capture (e.g. a re-capture, before `update`) instead of the store's; no per-block scores",
    )
    p.add_argument("--out", metavar="JSON", help="also write the results to this file")
    p.add_argument("--renders", metavar="DIR", help="write each composite view beside its captured image as PNG into DIR")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_outside_paths_argument(p)


def evaluate_blocks(store: Any, block_ids: list[str], views: int, *, renderer: str = "baked", progress: bool = False) -> dict[str, dict[str, Any]]:
    """Per published block: PSNR/SSIM on (at most ``views``, 0: all, spread evenly) held-out frames
    assigned to it, rendered from its bake or its network as ``renderer`` asks."""
    import numpy as np
    from tqdm import tqdm

    from blocknerf.evaluation.views import evaluate_views
    from blocknerf.model.block import pick_device
    from blocknerf.model.loading import load_renderable

    plan, capture, manifest = store.plan, store.capture, store.manifest()
    by_id = {f.id: f for f in capture.frames}
    out: dict[str, dict[str, Any]] = {}
    for block_id in tqdm(block_ids, desc="blocks", unit="block", disable=not progress):
        version = manifest.version_of(block_id)
        if version is None:
            out[block_id] = {"views": 0, "error": "not trained"}
            continue
        spec = plan.block(block_id)
        frames = [by_id[f] for f in spec.frames if f in by_id and by_id[f].split == "test"]
        if views and len(frames) > views:
            frames = [frames[int(i)] for i in np.unique(np.linspace(0, len(frames) - 1, views).round().astype(int))]
        block = load_renderable(store, block_id, version, renderer=renderer, device=pick_device())
        result = evaluate_views(block, frames, spec=spec, far_m=plan.far_m)
        result.pop("per_view_psnr", None)
        out[block_id] = {"version": version, "renderer": type(block).__name__, **result}
    return out


def run(args: argparse.Namespace) -> int:
    from blocknerf.cli.settings import resolve
    from blocknerf.errors import ConfigError
    from blocknerf.store import BlockStore

    store = BlockStore.open(args.store)
    if not args.capture:
        check_store_images(store, args)
    if args.views < 0:
        raise ConfigError(None, f"--views must be 0 (all) or positive, got {args.views}")
    settings = resolve(args, {"stream.renderer": args.renderer}, stored=store.config, where_stored=f"{args.store} (stored config)")
    progress = not (args.quiet or args.json)
    block_ids = [b.strip() for b in args.blocks.split(",")] if args.blocks else list(store.plan.ids)
    frames = None
    if args.capture:
        from blocknerf.capture.transforms import read_capture

        frames, block_ids = list(read_capture(args.capture, allow_outside_paths=args.allow_outside_paths).test_frames), []
    results: dict[str, Any] = {"blocks": evaluate_blocks(store, block_ids, args.views, renderer=settings.stream.renderer, progress=progress)}
    if not args.no_composite:
        from streaming.evaluation import evaluate_composite

        results["composite"] = evaluate_composite(
            store, settings.stream, max_views=args.views or None, save_dir=args.renders, frames=frames, single_blocks=frames is None,
            progress=progress,
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'block':<12} {'version':>7} {'views':>5} {'PSNR dB':>8} {'region dB':>9} {'SSIM':>6}")
    for block_id, r in results["blocks"].items():
        if not r.get("views"):
            print(f"{block_id:<12} {'-':>7} {0:>5}  {r.get('error', 'no held-out views')}")
            continue
        region = f"{r['psnr_region']:.2f}" if "psnr_region" in r else "-"
        print(f"{block_id:<12} {'v' + str(r['version']):>7} {r['views']:>5} {r['psnr']:>8.2f} {region:>9} {r['ssim']:>6.3f}")
    comp = results.get("composite")
    if comp and comp.get("views"):
        print(f"{'composite':<12} {'':>7} {comp['views']:>5} {comp['psnr']:>8.2f} {'':>9} {comp['ssim']:>6.3f}")
    return 0
