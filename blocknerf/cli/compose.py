"""``blocknerf compose S.zarr add|move|remove|erase|list``: place separately trained NeRFs into a
store's scene, move and remove them, and erase matter inside oriented boxes."""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any

from blocknerf.cli.guards import add_wait_argument, writer_lease

HELP = "place trained NeRFs (objects) into a store's scene, move or remove them, erase boxes of matter"

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NEGATIVE = re.compile(rf"^-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:,{_NUMBER})*$")
"""Values such as ``-28,8,0``: arguments, not options (argparse only knows plain negative numbers)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL) whose scene to edit")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="place a trained block of another store as an object", description="place a trained block of another store as an object")
    add.add_argument("source", metavar="SRC.zarr[:BLOCK]", help="store holding the object (a block trained from its own capture); BLOCK when it has several")
    add.add_argument("--name", required=True, help="object name (letters, digits, '_', '.', '-')")
    _pose_arguments(add, required=True)
    add.add_argument("--crop", nargs="+", metavar="ARG",
                     help="the part of the source that is the object, in source units: 'sphere X,Y,Z R' or 'box X,Y,Z SX,SY,SZ' "
                          "(default: the source block's region)")
    add.add_argument("--anchor", metavar="X,Y,Z", help="source point placed at --at/--at-enu (default: the crop's centre)")

    move = sub.add_parser("move", help="change an object's pose (only its pose record changes)", description="change an object's pose")
    move.add_argument("name", help="object name")
    _pose_arguments(move, required=False)

    remove = sub.add_parser("remove", help="take an object or erased box out of the scene", description="take an object or erased box out of the scene")
    remove.add_argument("name", help="object name")

    erase = sub.add_parser("erase", help="remove the matter inside an oriented box at render time (undo with remove)",
                           description="remove the matter inside an oriented box at render time (undo with remove)")
    erase.add_argument("--name", required=True, help="name of the edit")
    erase.add_argument("--box", nargs=3, required=True, metavar=("E,N,U", "SX,SY,SZ", "HEADING"),
                       help="box centre (ENU metres), size along its own axes (metres), heading (degrees clockwise from north)")

    for parser in (add, move, remove, erase):
        add_wait_argument(parser)
    for parser in (add, move, erase):
        parser._negative_number_matcher = _NEGATIVE  # argparse's hook for what counts as a negative number

    listing = sub.add_parser("list", help="list the scene's objects and erased boxes", description="list the scene's objects and erased boxes")
    listing.add_argument("--json", action="store_true", help="print as JSON")


def _pose_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    where = p.add_mutually_exclusive_group(required=required)
    where.add_argument("--at", metavar="LAT,LON,ALT", help="position in WGS84 (needs a geo-registered store)")
    where.add_argument("--at-enu", metavar="E,N,U", help="position in the store's world frame (ENU metres)")
    p.add_argument("--heading", metavar="DEG", help="turn, degrees clockwise from north (default 0)")
    p.add_argument("--pitch", metavar="DEG", help="nose up, degrees (default 0)")
    p.add_argument("--roll", metavar="DEG", help="roll, degrees (default 0)")
    p.add_argument("--scale", metavar="S", help="metres per source unit (default 1)")


def run(args: argparse.Namespace) -> int:
    from blocknerf.composition import edits
    from blocknerf.store import BlockStore

    if args.action == "list":
        store = BlockStore.open(args.store)
        rows = edits.object_rows(store.manifest())
        print(json.dumps(rows, indent=2) if args.json else _table(rows))
        return 0
    store = BlockStore.open(args.store, writable=True)
    with writer_lease(store, args):
        return _edit(store, args)


def _edit(store: Any, args: argparse.Namespace) -> int:
    """The actions that change the scene (under the store's writer lease)."""
    from blocknerf.composition import edits
    from blocknerf.composition.placement import EraseBox

    if args.action == "remove":
        edits.remove_object(store, args.name)
        print(f"{args.name}: removed from the scene")
        return 0
    if args.action == "erase":
        try:
            box = EraseBox(_floats(args.box[0], "--box centre", 3), _floats(args.box[1], "--box size", 3), _floats(args.box[2], "--box heading", 1)[0])
        except ValueError as exc:
            raise _error(f"--box: {exc}") from None
        edits.erase_region(store, args.name, box)
        print(f"{args.name}: erasing a {'x'.join(f'{v:g}' for v in box.size)} m box at {_point(box.center)}")
        return 0
    pose = _pose(args, store)
    if args.action == "add":
        entry = edits.add_object(
            store, args.source, name=args.name, crop=_crop(args.crop),
            anchor=None if args.anchor is None else _floats(args.anchor, "--anchor", 3),
            **{k: (0.0 if k != "scale" else 1.0) if v is None else v for k, v in pose.items()},
        )
        print(f"{args.name}: placed at {_point(entry.placement['position'])} (object v{entry.version})")
        return 0
    entry = edits.move_object(store, args.name, **pose)
    where = entry.placement.get("position", entry.placement.get("center"))
    print(f"{args.name}: moved to {_point(where)}")
    return 0


def _pose(args: argparse.Namespace, store: Any) -> dict[str, Any]:
    from blocknerf.composition.edits import position_from_lla

    position = None
    if args.at is not None:
        position = position_from_lla(store, _floats(args.at, "--at", 3))
    elif args.at_enu is not None:
        position = _floats(args.at_enu, "--at-enu", 3)
    scale = None if args.scale is None else _floats(args.scale, "--scale", 1)[0]
    if scale is not None and not scale > 0:
        raise _error(f"--scale must be positive, got {args.scale}")
    angles = {f"{k}_deg": None if getattr(args, k) is None else _floats(getattr(args, k), f"--{k}", 1)[0] for k in ("heading", "pitch", "roll")}
    return {"position": position, "scale": scale, **angles}


def _crop(values: list[str] | None) -> Any:
    from blocknerf.composition.placement import Crop

    if values is None:
        return None
    kind, rest = values[0], values[1:]
    try:
        if kind == "sphere" and len(rest) == 2:
            return Crop("sphere", _floats(rest[0], "--crop centre", 3), radius=_floats(rest[1], "--crop radius", 1)[0])
        if kind == "box" and len(rest) == 2:
            return Crop("box", _floats(rest[0], "--crop centre", 3), half_size=tuple(0.5 * v for v in _floats(rest[1], "--crop size", 3)))
    except ValueError as exc:
        raise _error(f"--crop: {exc}") from None
    raise _error(f"--crop must be 'sphere X,Y,Z R' or 'box X,Y,Z SX,SY,SZ', got '{' '.join(values)}'")


def _floats(text: str, flag: str, n: int) -> tuple[float, ...]:
    parts = [t.strip() for t in text.split(",")]
    if len(parts) != n or not all(re.fullmatch(_NUMBER, t) for t in parts):
        form = ",".join(["NUMBER"] * n)
        raise _error(f"{flag} must be {form}, got '{text}'")
    values = tuple(float(t) for t in parts)
    if not all(math.isfinite(v) for v in values):
        raise _error(f"{flag} must be finite, got '{text}'")
    return values


def _error(message: str) -> Exception:
    from blocknerf.errors import ConfigError

    return ConfigError(None, message)


def _point(p: Any) -> str:
    return "(" + ", ".join(f"{float(v):.2f}" for v in p) + ")"


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no objects (place one with `blocknerf compose S add SRC.zarr --name NAME --at-enu E,N,U`)"
    lines = []
    for r in rows:
        if r["kind"] == "erase":
            what = f"erase  box {'x'.join(f'{v:g}' for v in r['size_m'])} m, heading {r['heading_deg']:g}"
        else:
            what = f"object v{r['version']}  heading {r['heading_deg']:g}, scale {r['scale']:g}, radius {r['radius_m']:g} m, from {r['source']}"
        lines.append(f"{r['name']:<16} at {_point(r['position'])}  {what}  ({r['revisions']} revision{'s' * (r['revisions'] > 1)})")
    return "\n".join(lines)
