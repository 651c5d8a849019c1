"""``blocknerf update S.zarr NEW_CAPTURE``: merge a re-capture, retrain only the blocks it changed,
publish them atomically. NEW_CAPTURE may be a folder of photos when the store's capture came from
``blocknerf ingest``: they are registered into its reconstruction first (``blocknerf.ingest.extend``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from blocknerf.cli.guards import add_outside_paths_argument, add_wait_argument, check_store_images, writer_lease
from blocknerf.cli.settings import add_config_argument
from blocknerf.cli.train import (
    add_training_arguments,
    progress_board,
    trained_line,
    training_flags,
)

HELP = "merge a new capture of part of the city into a store, retrain only the blocks it changed, publish atomically"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL reachable by every worker)")
    p.add_argument("capture", metavar="NEW_CAPTURE",
                   help="transforms.json of the new frames, the directory holding it, or a folder of new photos "
                   "(when the store's capture came from 'blocknerf ingest': registered into its reconstruction first)")
    add_config_argument(p)
    add_training_arguments(
        p, steps_help="steps of each retraining (default: train.warm_start_steps, or train.steps with --from-scratch); "
        "like --time-budget, it bounds this update's runs and does not change the store's settings",
    )
    p.add_argument(
        "--from-scratch", action="store_true", help="retrain affected blocks from a random start, not from their published versions"
    )
    p.add_argument("--force", action="store_true", help="retrain the affected blocks even if they are up to date")
    p.add_argument("--supersede-distance", type=float, metavar="M",
                   help="frames at most M apart (and looking the same way) are of the same place (default: 2%% of the median block radius)")
    p.add_argument("--supersede-angle", type=float, metavar="DEG", help="... and their viewing directions at most DEG apart (default 15)")
    p.add_argument("--work", metavar="DIR", help="with a folder of photos: write their registration here "
                   "(default: updates/<folder>-<digest> in the store's capture directory)")
    p.add_argument("--sfm-threads", type=int, default=-1, metavar="N", help="with a folder of photos: CPU threads for SfM (default all)")
    p.add_argument("--all", action="store_true",
                   help="retrain every block the new frames see, changed or not; default: only the blocks where the city "
                   "changed (each new frame is rendered from the store and compared after a colour fit), the other blocks "
                   "keep the new frames for their next retrain")
    p.add_argument("--renderer", choices=("baked", "neural"),
                   help="how change detection renders the new frames: from the blocks' bakes where they have one (fast), "
                   "or from their networks (slower; finer depth for placing the change) (default: stream.renderer)")
    p.add_argument("--dry-run", action="store_true",
                   help="say per block whether it would be retrained and why, write the change map; change nothing")
    p.add_argument("--change-dir", metavar="DIR",
                   help="write change_map.png and masks/ (per-frame changed pixels) here (default with --dry-run: ./change)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_wait_argument(p)
    add_outside_paths_argument(p)


def run(args: argparse.Namespace) -> int:
    from blocknerf.store import BlockStore

    store = BlockStore.open(args.store, writable=True)
    check_store_images(store, args)
    with writer_lease(store, args):
        return _update(store, args)


def _update(store: object, args: argparse.Namespace) -> int:
    from blocknerf.capture.transforms import read_capture, transforms_path
    from blocknerf.cli.settings import resolve, storable
    from blocknerf.errors import InputError
    from blocknerf.training.trainer import run_config
    from blocknerf.updating import StoreRenderer, prepare_update, run_update

    flags = {
        **training_flags(args),
        "update.supersede_distance_m": args.supersede_distance,
        "update.supersede_angle_deg": args.supersede_angle,
    }
    settings = resolve(args, flags, stored=store.config, where_stored=f"{args.store} (stored config)")
    update_cfg = settings.update
    overrides = {k: v for k, v in {"steps": args.steps, "time_budget_s": args.time_budget}.items() if v is not None}
    run_config(settings.train, warm=not args.from_scratch, overrides=overrides)  # bad values fail here, before any work
    if args.change_dir and args.all:
        raise InputError(None, "--change-dir draws what change detection found; --all retrains without detecting")
    registration = None
    if is_photo_folder(args.capture):
        registration = register_photo_folder(args, store.capture.root)
        args.capture = registration["work"]
    capture_path = str(transforms_path(args.capture).resolve())
    capture = read_capture(args.capture, allow_outside_paths=args.allow_outside_paths)
    prepared = prepare_update(
        store.url, capture, update_cfg, capture_path=capture_path, dry_run=args.dry_run,
        renderer=None if args.all else StoreRenderer(store, renderer=args.renderer or settings.stream.renderer),
    )
    merge = prepared.merge
    change_dir = args.change_dir or ("change" if args.dry_run else None)
    if prepared.change is not None and change_dir:
        _write_change_pictures(store, prepared, Path(change_dir), Path(capture_path).parent)
    if not args.json:
        print(
            f"{capture_path}: {len(capture)} frames, {len(merge.added)} new, {len(merge.known)} recorded before; "
            f"{len(merge.superseded)} frames superseded by newer ones of the same place"
        )
        for line in verdict_lines(prepared):
            print(line)
        if change_dir and prepared.change is not None:
            print(f"change map: {Path(change_dir) / 'change_map.png'}, masks: {Path(change_dir) / 'masks'}")
        print(f"blocks to retrain: {', '.join(prepared.affected) or 'none'}")
    if args.dry_run:
        if args.json:
            print(json.dumps(_dry_run_doc(prepared), indent=2, default=str))
        return 0
    board, on_cluster = progress_board(len(prepared.affected), quiet=args.json)
    try:
        report = run_update(
            prepared, settings.model, settings.train, settings.cluster,
            from_scratch=args.from_scratch, force=args.force, overrides=overrides,
            config=storable(settings), sink=board, on_cluster=on_cluster,
        )
    finally:
        board.close()
    if args.json:
        doc = report.to_dict() if registration is None else {**report.to_dict(), "registration": registration}
        print(json.dumps(doc, indent=2, default=str))
    else:
        for block_id, why in report.train.skipped.items():
            print(f"{block_id}: {why}")
        for block_id, version in report.train.trained.items():
            verb = "published" if block_id in report.published else "written, not published,"
            print(trained_line(block_id, version, report.train.stats.get(block_id, {}), verb=verb))
        for block_id, error in report.train.failed.items():
            print(f"{block_id}: FAILED: {error}")
        if report.manifest_serial is not None:
            print(f"published {len(report.published)} blocks (manifest serial {report.manifest_serial}) in {report.seconds:.0f} s")
        elif report.ok:
            print("nothing to publish: the store is up to date with this capture")
    if not report.ok:
        print(
            f"blocknerf update: {len(report.train.failed)} of {len(prepared.affected)} blocks failed; nothing was published "
            "(run the update again to retry: finished blocks are reused)",
            file=sys.stderr,
        )
        return 1
    return 0


def is_photo_folder(path: str) -> bool:
    """Whether ``path`` is a folder of photos rather than a capture (no transforms.json, images)."""
    from blocknerf.ingest.photos import PHOTO_SUFFIXES

    folder = Path(path)
    if not folder.is_dir() or (folder / "transforms.json").exists():
        return False
    return any(p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES for p in folder.rglob("*"))


def register_photo_folder(args: argparse.Namespace, capture_root: Path) -> dict:
    """Register the photos of ``args.capture`` into the ingest the store's capture came from;
    print the report (unless ``--json``); return it with ``work``, the new capture's directory."""
    from blocknerf.ingest.extend import register_photos
    from blocknerf.ingest.ingestion import IngestConfig
    from blocknerf.ingest.sfm import SfmConfig

    report, work = register_photos(args.capture, capture_root, args.work, IngestConfig(sfm=SfmConfig(threads=args.sfm_threads)))
    if not args.json:
        print(report.format())
        print(f"new capture: {work / 'transforms.json'}")
    return {**report.to_dict(), "work": str(work)}


def verdict_lines(prepared: Any) -> list[str]:
    """Per block the new frames see: whether it is retrained and why."""
    change = prepared.change
    lines = []
    for block_id in prepared.seen:
        if change is None:
            lines.append(f"{block_id}: retrain: the new frames see it (--all)")
            continue
        verdict = change.blocks[block_id]
        if verdict.retrain:
            lines.append(f"{block_id}: retrain: {verdict.reason}")
        else:
            lines.append(f"{block_id}: keep ({verdict.reason}); the new frames join its frame list for its next retrain")
    return lines


def _dry_run_doc(prepared: Any) -> dict[str, Any]:
    merge = prepared.merge
    return {
        "capture": prepared.capture_path,
        "added_frames": len(merge.added),
        "known_frames": len(merge.known),
        "superseded_frames": len(merge.superseded),
        "seen": list(prepared.seen),
        "affected": list(prepared.affected),
        "change": None if prepared.change is None else prepared.change.to_dict(),
    }


def _write_change_pictures(store: Any, prepared: Any, out: Path, capture_dir: Path) -> None:
    """change_map.png and masks/ in ``out``; the true change regions when the capture has a
    ``change.json`` (the synthetic city's)."""
    import numpy as np

    from blocknerf.presentation.changemap import draw_change_map, write_change_masks

    regions = []
    truth = capture_dir / "change.json"
    if truth.is_file():
        try:
            regions = [(tuple(r["centre_xy"]), float(r["radius_m"])) for r in json.loads(truth.read_text())["regions"]]
        except (ValueError, OverflowError, KeyError, TypeError):
            regions = []
    cameras = np.array([c.c2w[:3, 3] for c in prepared.change.frames]).reshape(-1, 3)[:, :2]
    draw_change_map(store.plan, prepared.change, out / "change_map.png", cameras_xy=cameras, regions=regions)
    write_change_masks(prepared.change, out / "masks")
