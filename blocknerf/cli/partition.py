"""``blocknerf partition CAPTURE --store S.zarr``: plan blocks, create the store, draw the map."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from blocknerf.cli.guards import add_outside_paths_argument
from blocknerf.cli.settings import add_config_argument

HELP = "split a capture into overlapping blocks, create the block store and draw the block map"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("capture", help="transforms.json or the directory holding it")
    p.add_argument("--store", required=True, help="block store to create (a path, or an fsspec URL)")
    add_config_argument(p)
    p.add_argument("--strategy", choices=("grid", "trajectory", "clusters"), help="block placement")
    p.add_argument("--spacing", type=float, metavar="M", help="distance between block centres (world units)")
    p.add_argument("--overlap", type=float, metavar="F", help="overlap between neighbours (fraction of a diameter)")
    p.add_argument("--map", metavar="PNG", help="block map image (default: map.png beside the store)")
    p.add_argument("--force", action="store_true", help="overwrite an existing store")
    p.add_argument("--json", action="store_true", help="print the plan summary as JSON")
    add_outside_paths_argument(p)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from blocknerf.presentation.blockmap import draw_block_map
    from blocknerf.capture.transforms import read_capture
    from blocknerf.cli.settings import resolve, storable
    from blocknerf.cli.tables import BLOCK_COLUMNS, format_table
    from blocknerf.presentation.geojson import block_rows
    from blocknerf.store import BlockStore
    from partitioning import plan_blocks
    from partitioning.config import PartitionConfig

    settings = resolve(
        args, {"partition.strategy": args.strategy, "partition.spacing_m": args.spacing, "partition.overlap": args.overlap}
    )
    capture = read_capture(args.capture, allow_outside_paths=args.allow_outside_paths)
    if capture.extra.get("ingest", {}).get("units") == "sfm" and settings.partition.spacing_m == PartitionConfig().spacing_m:
        # Poses from SfM without GPS have no scale: a spacing in metres means nothing there.
        settings = dataclasses.replace(settings, partition=dataclasses.replace(settings.partition, spacing_m="auto"))
        print("partition: the capture is in SfM units (ingested without GPS): spacing auto")
    cameras = capture.camera_arrays()
    geo = capture.geo_origin
    with tqdm(total=len(cameras), desc="assigning frames", unit="frame", leave=False, disable=args.json) as bar:
        plan = plan_blocks(
            cameras, settings.partition, geo_origin=None if geo is None else (geo.lat, geo.lon, geo.alt),
            progress=lambda done, total: bar.update(done - bar.n),
        )
    store = BlockStore.create(args.store, plan=plan, capture=capture, config=storable(settings), force=args.force)
    map_path = Path(args.map) if args.map else Path(str(args.store).rstrip("/")).parent / "map.png"
    if "://" not in str(map_path):
        draw_block_map(plan, cameras, map_path, title=f"{Path(str(args.store)).name}: {len(plan)} blocks ({plan.strategy})")
    rows = block_rows(plan)
    if args.json:
        print(json.dumps({"store": store.url, "map": str(map_path), "blocks": rows, "dropped": [list(d) for d in plan.dropped]}, indent=2))
        return 0
    print(format_table(rows, BLOCK_COLUMNS))
    for block_id, reason in plan.dropped:
        print(f"dropped {block_id}: {reason}")
    print(f"\n{len(plan)} blocks from {len(capture)} frames -> {store.url}\nblock map: {map_path}")
    return 0
