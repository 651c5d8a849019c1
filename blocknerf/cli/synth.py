"""``blocknerf synth OUT``: write the capture of the built-in synthetic city."""

from __future__ import annotations

import argparse
import re
from typing import Any

HELP = "write a synthetic city capture (images, depth, transforms.json with GPS and held-out views), or with --object a 360-degree object capture"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="output directory (new, empty, or an earlier synth output)")
    p.add_argument("--grid", metavar="NxM", help="driven city blocks east x north (default 2x2)")
    p.add_argument("--size", metavar="WxH", help="image size in pixels (default 160x120)")
    p.add_argument("--seed", metavar="S", help="random seed of the city, appearance and change (default 0)")
    p.add_argument(
        "--config", metavar="FILE", help="YAML file of setting overrides; this command uses its 'synth:' section"
    )
    p.add_argument(
        "--change", action="store_true",
        help="write the changed city instead (new building, construction) captured around the changes, later in time",
    )
    p.add_argument("--exif", action="store_true",
                   help="write JPEG photos with EXIF GPS, focal length and capture time (input for 'blocknerf ingest')")
    p.add_argument("--gps-noise", metavar="M", help="with --exif: GPS noise, metres per axis (default 0)")
    p.add_argument(
        "--object", metavar="KIND",
        help="write a 360-degree capture of one small object instead (kiosk or car) on a plain background, "
             "with ground-truth depth and its size in object.json; for `blocknerf compose`",
    )
    p.add_argument("--views", metavar="N", help="with --object: frames around it (default 64)")
    p.add_argument("--workers", metavar="N", help="render processes (default: one per CPU core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")


def run(args: argparse.Namespace) -> int:
    from blocknerf.cli.settings import resolve
    from blocknerf.errors import ConfigError
    from blocknerf.synth import synthesize
    from blocknerf.synth.writer import tune_malloc

    if args.object is not None:
        return _object(args)
    if args.views is not None:
        raise ConfigError(None, "--views applies to --object captures only")
    flags: dict[str, Any] = {}
    if args.grid is not None:
        flags["synth.grid"] = _pair(args.grid, "--grid", "NxM, e.g. 2x2")
    if args.size is not None:
        flags["synth.width"], flags["synth.height"] = _pair(args.size, "--size", "WxH, e.g. 160x120")
    if args.seed is not None:
        flags["synth.seed"] = _int(args.seed, "--seed")
    if args.workers is not None:
        flags["synth.workers"] = _int(args.workers, "--workers")
    if args.exif:
        flags["synth.exif"] = True
    if args.gps_noise is not None:
        flags["synth.gps_noise_m"] = _float(args.gps_noise, "--gps-noise")
    if args.change:
        flags["synth.change"] = True
    cfg = resolve(args, flags).synth
    tune_malloc()  # this process is ours: faster rendering when it renders inline
    synthesize(args.out, cfg, progress=not args.quiet)
    return 0


def _object(args: argparse.Namespace) -> int:
    """``synth OUT --object KIND``: the object capture (city flags do not apply)."""
    from blocknerf.errors import ConfigError
    from blocknerf.synth.objects import ObjectCaptureConfig, synthesize_object

    for flag in ("grid", "seed", "config"):
        if getattr(args, flag) is not None:
            raise ConfigError(None, f"--{flag} does not apply to --object captures")
    if args.change:
        raise ConfigError(None, "--change does not apply to --object captures")
    fields: dict[str, Any] = {"kind": args.object}
    if args.size is not None:
        fields["width"], fields["height"] = _pair(args.size, "--size", "WxH, e.g. 96x72")
    if args.views is not None:
        fields["views"] = _int(args.views, "--views")
    capture = synthesize_object(args.out, ObjectCaptureConfig(**fields))
    if not args.quiet:
        print(f"synth: {args.object}, {len(capture.frames)} images ({len(capture.test_frames)} held out) -> {args.out}")
    return 0


def _pair(text: str, flag: str, form: str) -> tuple[int, int]:
    from blocknerf.errors import ConfigError

    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise ConfigError(None, f"{flag} must be {form}, got '{text}'")
    a, b = int(m.group(1)), int(m.group(2))
    if a < 1 or b < 1:
        raise ConfigError(None, f"{flag} must be positive, got '{text}'")
    return a, b


def _int(text: str, flag: str) -> int:
    from blocknerf.errors import ConfigError

    try:
        return int(text)
    except ValueError:
        raise ConfigError(None, f"{flag} must be an integer, got '{text}'") from None


def _float(text: str, flag: str) -> float:
    from blocknerf.errors import ConfigError

    try:
        return float(text)
    except ValueError:
        raise ConfigError(None, f"{flag} must be a number, got '{text}'") from None
