"""``blocknerf fsck S.zarr [--repair]``: check every published block version and record of a store."""

from __future__ import annotations

import argparse
import json

from blocknerf.cli.guards import add_wait_argument, writer_lease

HELP = "check every published block version (checksums, loading) and every capture record; --repair republishes intact versions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL)")
    p.add_argument("--repair", action="store_true",
                   help="republish the newest intact version of each damaged block (takes the writer lease)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_wait_argument(p)


def run(args: argparse.Namespace) -> int:
    from blocknerf.model.block import load_block
    from blocknerf.store import BlockStore
    from blocknerf.store.integrity import check_store, repair_store
    from blocknerf.updating import rollback_block

    store = BlockStore.open(args.store, writable=args.repair)
    report = check_store(store, load=load_block)
    if args.repair and not report.clean:
        with writer_lease(store, args):
            report = repair_store(
                store, check_store(store, load=load_block), load=load_block,
                republish=lambda s, block_id, version: rollback_block(s, block_id, version)[0],
            )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.repaired:
            print(f"repaired {line}")
        for problem in report.problems:
            print(f"PROBLEM {problem.message}")
        state = "clean" if report.clean else f"{len(report.problems)} problems"
        print(f"{args.store}: {report.versions_checked} published versions and {report.records_checked} records revisions checked: {state}")
    return 0 if report.clean else 1
