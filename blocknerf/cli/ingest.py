"""``blocknerf ingest PHOTOS OUT``: photos -> SfM -> a geo-registered capture (or import a COLMAP model)."""

from __future__ import annotations

import argparse

HELP = "turn a folder of photos (EXIF GPS + structure from motion) or a COLMAP model into a capture"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="PHOTOS_DIR OUT_DIR",
                   help="the photo folder and the output folder; with --colmap only OUT_DIR")
    p.add_argument("--colmap", metavar="SPARSE_DIR", help="import this COLMAP model (binary or text) instead of running SfM")
    p.add_argument("--images", metavar="DIR", help="with --colmap: the folder of the model's images")
    p.add_argument("--max-size", type=int, default=1600, metavar="PX", help="longer side of the copies (default 1600)")
    p.add_argument("--matcher", choices=("auto", "exhaustive", "sequential", "spatial"), default="auto",
                   help="image pairs to match (default auto: exhaustive up to 150 images, else spatial with GPS, else sequential)")
    p.add_argument("--camera-model", default="SIMPLE_RADIAL",
                   choices=("SIMPLE_RADIAL", "RADIAL", "OPENCV", "PINHOLE", "SIMPLE_PINHOLE"),
                   help="COLMAP camera model shared by all photos (default SIMPLE_RADIAL)")
    p.add_argument("--test-every", type=int, default=8, metavar="N", help="hold out every Nth image (default 8; 0: none)")
    p.add_argument("--focal", type=float, metavar="MM",
                   help="35 mm equivalent focal length, overriding the EXIF (default from EXIF, else 1.2 x the longer side)")
    p.add_argument("--threads", type=int, default=-1, metavar="N", help="CPU threads for SfM (default all)")
    p.add_argument("--seed", type=int, default=0, help="random seed of SfM (default 0)")


def run(args: argparse.Namespace) -> int:
    from blocknerf.errors import InputError
    from blocknerf.ingest.ingestion import IngestConfig, ingest_colmap, ingest_photos
    from blocknerf.ingest.sfm import SfmConfig

    config = IngestConfig(
        max_size=args.max_size, test_every=args.test_every, focal_35mm=args.focal,
        sfm=SfmConfig(matcher=args.matcher, camera_model=args.camera_model, threads=args.threads, seed=args.seed),
    )
    if args.test_every < 0:
        raise InputError(None, f"--test-every must be >= 0, got {args.test_every}")
    if args.colmap:
        if len(args.inputs) != 1 or not args.images:
            raise InputError(None, "usage: blocknerf ingest --colmap SPARSE_DIR --images DIR OUT_DIR")
        report = ingest_colmap(args.colmap, args.images, args.inputs[0], config)
        out = args.inputs[0]
    else:
        if len(args.inputs) != 2:
            raise InputError(None, "usage: blocknerf ingest PHOTOS_DIR OUT_DIR (or --colmap SPARSE_DIR --images DIR OUT_DIR)")
        report = ingest_photos(args.inputs[0], args.inputs[1], config)
        out = args.inputs[1]
    print(report.format())
    print(f"capture: {out}/transforms.json  report: {out}/ingest.json  map: {out}/ingest_map.png")
    return 0
