"""``blocknerf gc S.zarr --keep K``: delete unpublished and old block and object versions, and old records."""

from __future__ import annotations

import argparse
import json

from blocknerf.cli.guards import add_wait_argument, writer_lease

HELP = "delete block versions no reader needs: never published, or older than the K most recently published"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL); run gc while no train or update writes to it")
    p.add_argument("--keep", type=int, default=2, metavar="K",
                   help="versions to keep per block: the published one and the K-1 published before it (default 2)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_wait_argument(p)


def run(args: argparse.Namespace) -> int:
    from blocknerf.store import BlockStore

    store = BlockStore.open(args.store, writable=True)
    with writer_lease(store, args):
        result = store.gc(args.keep, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "versions": [list(v) for v in result.versions],
                          "records": list(result.records), "temporary_files": list(result.temporary),
                          "objects": [list(v) for v in result.objects]}, indent=2))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for block_id, version in result.versions:
        print(f"{verb} {block_id} v{version}")
    for revision in result.records:
        print(f"{verb} records revision {revision}")
    for name, version in result.objects:
        print(f"{verb} object {name} v{version}")
    for path in result.temporary:
        print(f"{verb} {path} (left by a killed write)")
    print(f"{verb} {len(result.versions)} versions, {len(result.objects)} object versions and {len(result.records)} records revisions; "
          "published versions kept")
    return 0
