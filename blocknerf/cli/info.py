"""``blocknerf info S.zarr``: blocks, their versions (dates, why they were made) and quality;
GeoJSON and map export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HELP = "list a store's blocks with versions and quality; export GeoJSON footprints and the block map"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL)")
    p.add_argument("--geojson", metavar="FILE", help="write block footprints as GeoJSON (WGS84)")
    p.add_argument("--map", metavar="PNG", help="draw the block map")
    p.add_argument("--json", action="store_true", help="print everything as JSON")


_NO_INFO = SimpleNamespace(attrs={})


def block_records(store: Any) -> list[dict[str, Any]]:
    """Per block: plan summary, the published ``version`` (None before training), whether it is
    ``baked`` and its ``baked_bytes`` (stored bytes of the bake), and every
    complete version: its date, why it was made (``reason``: train, update or rollback), what
    caused it (``caused_by``: the capture and its new frames, or the version rolled back to),
    whether it was ever published, its steps, warm start, quality and checksum."""
    from blocknerf.presentation.geojson import block_rows

    manifest = store.manifest()
    rows = block_rows(store.plan)
    for row in rows:
        entry = manifest.blocks.get(row["id"])
        history = set() if entry is None else set(store.published_history(row["id"], entry))
        row["version"] = None if entry is None else entry.version
        row["published_at"] = None if entry is None else entry.published_at
        baked = None if entry is None else (store.version_info(row["id"], entry.version) or _NO_INFO).attrs.get("baked")
        row["baked"] = baked is not None
        row["baked_bytes"] = None if baked is None else int(baked["nbytes"])
        row["versions"] = [
            {
                "version": v.version,
                "created": v.created,
                "published": entry is not None and v.version == entry.version,
                "was_published": v.version in history,
                "reason": v.attrs.get("reason", "train"),
                "caused_by": v.attrs.get("caused_by"),
                "steps": v.attrs.get("train", {}).get("steps"),
                "warm_start": (v.attrs.get("train", {}).get("warm_start") or {}).get("version"),
                "psnr": v.attrs.get("eval", {}).get("psnr"),
                "ssim": v.attrs.get("eval", {}).get("ssim"),
                "baked": "baked" in v.attrs,
                "checksum": v.checksum,
            }
            for v in store.versions(row["id"])
        ]
    return rows


def describe_cause(version: dict[str, Any]) -> str:
    """A short account of why a version exists, e.g. ``update: 12 new frames (3 superseded) from X``."""
    cause = version.get("caused_by") or {}
    if version["reason"] == "bake":
        return f"bake: v{cause.get('baked_from', '?')} with a baked grid"
    if version["reason"] == "rollback":
        return f"rollback: copy of v{cause.get('rollback_to', '?')}, replacing v{cause.get('replaced', '?')}"
    if version["reason"] == "update":
        superseded = len(cause.get("superseded", []))
        extra = f" ({superseded} superseded)" if superseded else ""
        warm = f", warm start from v{version['warm_start']}" if version.get("warm_start") else ""
        return f"update: {cause.get('count', 0)} new frames{extra} from {cause.get('capture', '?')}{warm}"
    return version["reason"]


def run(args: argparse.Namespace) -> int:
    from dask.utils import format_bytes

    from blocknerf.presentation.blockmap import draw_block_map
    from blocknerf.cli.tables import BLOCK_COLUMNS, format_table
    from blocknerf.errors import InputError
    from blocknerf.composition.edits import object_rows, objects_to_features
    from blocknerf.presentation.geojson import plan_to_geojson
    from blocknerf.store import BlockStore

    store = BlockStore.open(args.store)
    plan = store.plan
    rows = block_records(store)
    if args.geojson:
        if plan.geo_origin is None:
            raise InputError(args.store, "the capture has no geo origin, so there is no GeoJSON (lat/lon) to write")
        collection = plan_to_geojson(plan)
        collection["features"] += objects_to_features(store.manifest(), plan)
        Path(args.geojson).write_text(json.dumps(collection, indent=1))
    if args.map:
        draw_block_map(plan, store.capture.camera_arrays(), Path(args.map), title=f"{Path(args.store).name}: {len(plan)} blocks")
    if args.json:
        doc = {
            "store": store.url,
            "geo_origin": store.geo_origin,
            "strategy": plan.strategy,
            "manifest_serial": store.manifest().serial,
            "records": store.manifest().records,
            "blocks": rows,
            "objects": object_rows(store.manifest()),
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
        ("baked", lambda r: None if r["version"] is None else (format_bytes(r["baked_bytes"]) if r["baked"] else "no")),
    ]
    print(format_table(rows, columns))
    history = [(r["id"], v) for r in rows for v in r["versions"] if len(r["versions"]) > 1]
    if history:
        print("\nversions:")
        for block_id, v in history:
            state = "  (published)" if v["published"] else "  (published before)" if v["was_published"] else "  (never published)"
            print(f"  {block_id} v{v['version']}  {v['created'].replace('T', ' ')}  {describe_cause(v)}{state}")
    objects = object_rows(store.manifest())
    if objects:
        print("\nobjects (`blocknerf compose S list`):")
        for o in objects:
            where = ", ".join(f"{v:.1f}" for v in o["position"])
            what = f"erased box {'x'.join(f'{v:g}' for v in o['size_m'])} m" if o["kind"] == "erase" else f"object v{o['version']} from {o['source']}"
            print(f"  {o['name']}  at ({where}), heading {o['heading_deg']:g}: {what}")
    if args.geojson:
        print(f"GeoJSON: {args.geojson}")
    if args.map:
        print(f"block map: {args.map}")
    return 0
