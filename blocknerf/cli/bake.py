"""``blocknerf bake S.zarr [--blocks IDS] [--force]``: bake published blocks for fast rendering."""

from __future__ import annotations

import argparse
import json
import time

from blocknerf.cli.guards import add_wait_argument, writer_lease
from blocknerf.cli.settings import add_config_argument

HELP = "bake published blocks into a render-only grid (a new version each), so they render in real time on a CPU"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL)")
    add_config_argument(p)
    p.add_argument("--blocks", metavar="ID[,ID]", help="only these blocks (default: all published blocks)")
    p.add_argument("--force", action="store_true", help="bake blocks that already have a bake again")
    p.add_argument("--max-resolution", type=int, metavar="N", help="most grid cells per axis (train.bake_grid.max_resolution)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_wait_argument(p)


def run(args: argparse.Namespace) -> int:
    from dask.utils import format_bytes

    from blocknerf.cli.settings import resolve
    from blocknerf.errors import ConfigError
    from blocknerf.store import BlockStore
    from blocknerf.updating import BakeOutcome, bake_store

    store = BlockStore.open(args.store, writable=True)
    settings = resolve(args, {"train.bake_grid.max_resolution": args.max_resolution}, stored=store.config,
                       where_stored=f"{args.store} (stored config)")
    try:
        settings.train.bake_grid.validate()
    except ValueError as exc:
        raise ConfigError(args.config, f"train.bake_grid: {exc}") from None
    block_ids = [b.strip() for b in args.blocks.split(",") if b.strip()] if args.blocks else None
    started = time.perf_counter()
    last = [started]

    def report(o: BakeOutcome) -> None:
        if args.quiet or args.json:
            return
        now = time.perf_counter()
        if o.version is None:
            print(f"{o.block_id}: v{o.baked_from} {o.note}")
        else:
            baked = store.version_info(o.block_id, o.version).attrs["baked"]
            print(f"{o.block_id}: v{o.baked_from} -> v{o.version}: {baked['resolution']}^3 grid, {baked['bricks']} bricks, "
                  f"{format_bytes(baked['nbytes'])} ({now - last[0]:.1f} s)")
        last[0] = now

    with writer_lease(store, args):
        outcomes = bake_store(store, settings.train.bake_grid, block_ids=block_ids, force=args.force, on_block=report)
    made = [o for o in outcomes if o.version is not None]
    if args.json:
        print(json.dumps([{"block": o.block_id, "baked_from": o.baked_from, "version": o.version, "note": o.note} for o in outcomes], indent=2))
    else:
        print(f"baked {len(made)} of {len(outcomes)} blocks in {time.perf_counter() - started:.1f} s; published {len(made)} new versions")
    return 0
