"""``blocknerf rollback S.zarr BLOCK [--to V]``: publish an older version of a block again."""

from __future__ import annotations

import argparse
import json

from blocknerf.cli.guards import add_wait_argument, writer_lease

HELP = "publish an older version of a block, or an object's previous placement, again (default: the one published before)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL)")
    p.add_argument("block", help="block id (see `blocknerf info`) or object name (see `blocknerf compose S list`)")
    p.add_argument("--to", type=int, metavar="V", help="version to publish again (default: the previously published one)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_wait_argument(p)


def run(args: argparse.Namespace) -> int:
    from blocknerf.errors import StoreError
    from blocknerf.store import BlockStore
    from blocknerf.updating import rollback_block

    store = BlockStore.open(args.store, writable=True)
    if args.block not in store.plan.ids and args.block in store.manifest().objects:
        if args.to is not None:
            raise StoreError(args.store, f"{args.block} is an object: it rolls back one placement at a time (no --to)")
        with writer_lease(store, args):
            entry = store.rollback_object(args.block)
        if args.json:
            print(json.dumps({"object": args.block, "kind": entry.kind, "version": entry.version, "placement": dict(entry.placement)}, indent=2))
        else:
            print(f"{args.block}: its previous placement is published again")
        return 0
    if args.block not in store.plan.ids:
        raise StoreError(args.store, f"no block {args.block} in the plan (blocks: {', '.join(store.plan.ids)})")
    with writer_lease(store, args):
        replaced = store.manifest().version_of(args.block)
        version, source = rollback_block(store, args.block, args.to)
    if args.json:
        print(json.dumps({"block": args.block, "version": version, "copy_of": source, "replaced": replaced}, indent=2))
    else:
        print(f"{args.block}: published v{version}, a copy of v{source} (replacing v{replaced})")
    return 0
