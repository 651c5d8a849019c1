"""``blocknerf info S.zarr``: blocks, their versions and quality; GeoJSON and map export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "list a store's blocks with versions and quality; export GeoJSON footprints and the block map"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL)")
    p.add_argument("--geojson", metavar="FILE", help="write block footprints as GeoJSON (WGS84)")
    p.add_argument("--map", metavar="PNG", help="draw the block map")
    p.add_argument("--json", action="store_true", help="print everything as JSON")


def block_records(store: Any) -> list[dict[str, Any]]:
    """Per block: plan summary + published version + every complete version's history."""
    from blocknerf.geojson import block_rows

    manifest = store.manifest()
    rows = block_rows(store.plan)
    for row in rows:
        published = manifest.version_of(row["id"])
        row["version"] = published
        row["versions"] = [
            {
                "version": v.version,
                "created": v.created,
                "published": v.version == published,
                "reason": v.attrs.get("reason", "train"),
                "caused_by": v.attrs.get("caused_by", []),
                "steps": v.attrs.get("train", {}).get("steps"),
                "psnr": v.attrs.get("eval", {}).get("psnr"),
                "ssim": v.attrs.get("eval", {}).get("ssim"),
                "checksum": v.checksum,
            }
            for v in store.versions(row["id"])
        ]
    return rows


def run(args: argparse.Namespace) -> int:
    from blocknerf.blockmap import draw_block_map
    from blocknerf.cli.tables import BLOCK_COLUMNS, format_table
    from blocknerf.errors import InputError
    from blocknerf.geojson import plan_to_geojson
    from blocknerf.store import BlockStore

    store = BlockStore.open(args.store)
    plan = store.plan
    rows = block_records(store)
    if args.geojson:
        if plan.geo_origin is None:
            raise InputError(args.store, "the capture has no geo origin, so there is no GeoJSON (lat/lon) to write")
        Path(args.geojson).write_text(json.dumps(plan_to_geojson(plan), indent=1))
    if args.map:
        draw_block_map(plan, store.capture.camera_arrays(), Path(args.map), title=f"{Path(args.store).name}: {len(plan)} blocks")
    if args.json:
        doc = {
            "store": store.url,
            "geo_origin": store.geo_origin,
            "strategy": plan.strategy,
            "manifest_serial": store.manifest().serial,
            "blocks": rows,
        }
        print(json.dumps(doc, indent=2))
        return 0

    def published(r: dict[str, Any]) -> str | None:
        v = next((x for x in r["versions"] if x["published"]), None)
        return None if v is None else f"v{v['version']} ({v['created'][:16].replace('T', ' ')})"

    def quality(r: dict[str, Any]) -> str | None:
        v = next((x for x in r["versions"] if x["published"]), None)
        return None if v is None or v["psnr"] is None else f"{v['psnr']:.2f} dB / {v['ssim']:.3f}"

    columns = BLOCK_COLUMNS + [
        ("published", published),
        ("versions", lambda r: len(r["versions"]) or None),
        ("held-out PSNR/SSIM", quality),
    ]
    print(format_table(rows, columns))
    history = [(r["id"], v) for r in rows for v in r["versions"] if v["reason"] != "train" or v["caused_by"]]
    if history:
        print("\nversion history:")
        for block_id, v in history:
            cause = f" from {len(v['caused_by'])} new frames" if v["caused_by"] else ""
            print(f"  {block_id} v{v['version']}  {v['created']}  {v['reason']}{cause}{'  (published)' if v['published'] else ''}")
    if args.geojson:
        print(f"GeoJSON: {args.geojson}")
    if args.map:
        print(f"block map: {args.map}")
    return 0
