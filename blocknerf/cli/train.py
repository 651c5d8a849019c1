"""``blocknerf train S.zarr``: train blocks in parallel (local dask cluster or a scheduler), resumable.

The training flags, the progress board and the per-block result lines are shared with the
commands that retrain blocks (``blocknerf update``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from blocknerf.cli.guards import add_outside_paths_argument, add_wait_argument, check_store_images, writer_lease
from blocknerf.cli.settings import add_config_argument

HELP = "train the blocks of a store in parallel (local dask cluster, or --scheduler ADDRESS), resumable"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL reachable by every worker)")
    add_config_argument(p)
    p.add_argument("--blocks", metavar="ID[,ID]", help="only these blocks (default: all)")
    add_training_arguments(p, steps_help="training steps per block")
    p.add_argument("--force", action="store_true", help="retrain blocks that are already up to date")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_wait_argument(p)
    add_outside_paths_argument(p)


def add_training_arguments(p: argparse.ArgumentParser, *, steps_help: str) -> None:
    """The flags of every command that trains blocks: steps, time budget and where blocks train."""
    p.add_argument("--steps", type=int, metavar="N", help=steps_help)
    p.add_argument("--time-budget", type=float, metavar="S", help="stop each block after S seconds of training")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: what the cores allow)")
    p.add_argument("--threads-per-worker", type=int, metavar="T", help="torch threads per worker")
    p.add_argument("--scheduler", metavar="ADDRESS", help="connect to a running dask scheduler instead of a local cluster")
    p.add_argument("--in-process", action="store_true", help="train one block after another in this process (no dask)")


def training_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Settings overrides (dotted keys) of where blocks train; --steps and --time-budget are left
    to each command (``train`` stores them as the city's settings, ``update`` uses them for its
    own runs only)."""
    return {
        "cluster.workers": args.workers,
        "cluster.threads_per_worker": args.threads_per_worker,
        "cluster.scheduler": args.scheduler,
        "cluster.in_process": True if args.in_process else None,
    }


def progress_board(total_blocks: int, *, quiet: bool) -> tuple[Any, Callable[[str, object], None]]:
    """A progress board for training events and the ``on_cluster`` callback that prints where
    the dask dashboard is and how many workers joined (both silent when ``quiet``)."""
    from blocknerf.progress import TrainBoard

    board = TrainBoard(total_blocks, disable=quiet)

    def on_cluster(kind: str, info: object) -> None:
        if quiet:
            return
        if kind == "dashboard":
            board.overall.write(f"dask dashboard: {info}", file=sys.stderr)
        elif kind == "workers":
            board.overall.write(f"dask workers: {info}", file=sys.stderr)

    return board, on_cluster


def trained_line(block_id: str, version: int, stats: dict[str, Any], *, verb: str = "published") -> str:
    """One line about a newly trained block: its version and held-out quality when measured."""
    ev = stats.get("eval", {}) if stats else {}
    quality = f", held-out PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f} ({ev['views']} views)" if ev.get("views") else ""
    return f"{block_id}: {verb} v{version}{quality}"


def run(args: argparse.Namespace) -> int:
    from blocknerf.store import BlockStore

    store = BlockStore.open(args.store, writable=True)
    check_store_images(store, args)
    with writer_lease(store, args):
        return _train(store, args)


def _train(store: Any, args: argparse.Namespace) -> int:
    from blocknerf.cli.settings import resolve, storable
    from blocknerf.training.cluster import train_blocks

    settings = resolve(
        args,
        {"train.steps": args.steps, "train.time_budget_s": args.time_budget, **training_flags(args)},
        stored=store.config,
        where_stored=f"{args.store} (stored config)",
    )
    store.set_config(storable(settings))
    block_ids = [b.strip() for b in args.blocks.split(",") if b.strip()] if args.blocks else None
    board, on_cluster = progress_board(len(block_ids or store.plan.ids), quiet=args.json)
    try:
        report = train_blocks(
            store.url, block_ids, settings.model, settings.train, settings.cluster,
            force=args.force, sink=board, on_cluster=on_cluster,
        )
    finally:
        board.close()
    if args.json:
        print(json.dumps({"trained": report.trained, "skipped": report.skipped, "failed": report.failed,
                          "seconds": round(report.seconds, 2), "timeline": report.timeline,
                          "stats": report.stats}, indent=2, default=str))
    else:
        for block_id, why in report.skipped.items():
            print(f"{block_id}: skipped, {why}")
        for block_id, version in report.trained.items():
            print(trained_line(block_id, version, report.stats.get(block_id, {})))
        for block_id, error in report.failed.items():
            print(f"{block_id}: FAILED: {error}")
        print(f"{len(report.trained)} trained, {len(report.skipped)} skipped, {len(report.failed)} failed in {report.seconds:.0f} s")
    if report.failed:
        print(f"blocknerf train: {len(report.failed)} of {len(report.trained) + len(report.failed)} blocks failed", file=sys.stderr)
        return 1
    return 0
