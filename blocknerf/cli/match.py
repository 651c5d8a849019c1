"""``blocknerf match S.zarr``: match appearance codes across neighbouring blocks (Block-NeRF)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from blocknerf.cli.guards import add_outside_paths_argument, add_wait_argument, check_store_images, writer_lease
from blocknerf.cli.settings import add_config_argument

HELP = "match neighbouring blocks' appearance codes so that seams keep their colour; stored for render and eval"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (writable)")
    add_config_argument(p)
    p.add_argument("--root", metavar="ID", help="block whose appearance is kept (default: the most central one)")
    p.add_argument("--steps", type=int, metavar="N", help="optimisation steps per block")
    p.add_argument("--views", type=int, metavar="N", help="overlap views per pair of blocks")
    p.add_argument("--width", type=int, metavar="W", help="width in pixels of the match renders")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to render (default: stream.device)")
    p.add_argument("--json", action="store_true", help="print the matched table as JSON")
    add_wait_argument(p)
    add_outside_paths_argument(p)


def run_matching(store: Any, cfg: Any, *, root: str | None, quiet: bool) -> Any:
    """Match every published block of a writable store, save the table and return it."""
    from tqdm import tqdm

    from blocknerf.model.block import pick_device
    from streaming.appearance import match_appearance

    total = len(store.manifest().blocks)
    with tqdm(total=total, desc="matching", unit="block", disable=quiet) as bar:

        def report(block_id: str, result: Any) -> None:
            if not quiet:
                if result.reference:
                    bar.write(
                        f"{block_id} v{result.version}: matched to {', '.join(result.reference)} "
                        f"(weighted MSE {_fmt(result.loss_before)} -> {_fmt(result.loss_after)}, {result.views} views)"
                    )
                else:
                    bar.write(f"{block_id} v{result.version}: root (zero code kept)")
            bar.update(1)

        table = match_appearance(store, cfg.match, root=root, device=pick_device(cfg.device), progress=report)
    table.save(store)
    return table


def run(args: argparse.Namespace) -> int:
    from blocknerf.cli.settings import resolve
    from blocknerf.store import BlockStore

    store = BlockStore.open(args.store, writable=True)
    settings = resolve(
        args,
        {"stream.match.steps": args.steps, "stream.match.views": args.views, "stream.match.width": args.width, "stream.device": args.device},
        stored=store.config,
        where_stored=f"{args.store} (stored config)",
    )
    check_store_images(store, args)
    with writer_lease(store, args):
        table = run_matching(store, settings.stream, root=args.root, quiet=args.json)
    if args.json:
        print(json.dumps(table.to_dict(), indent=2))
    else:
        print(f"matched {len(table.codes)} blocks (roots: {', '.join(table.roots) or '-'}); stored in {store.url} (docs/{table.DOCUMENT})")
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.5f}"
