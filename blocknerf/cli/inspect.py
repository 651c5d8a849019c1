"""``blocknerf inspect CAPTURE``: check a capture and summarise it."""

from __future__ import annotations

import argparse
import json
import sys

from blocknerf.cli.guards import add_outside_paths_argument

HELP = "check a capture (transforms.json) and summarise frames, splits, intrinsics, extent and geo origin"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("capture", help="transforms.json or the directory holding it")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_outside_paths_argument(p)
    p.add_argument("--headers-only", action="store_true", help="read image headers only (fast; misses truncated files)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from blocknerf.capture.transforms import read_capture
    from blocknerf.capture.inspection import check_images, format_summary, summarize

    capture = read_capture(args.capture, allow_outside_paths=args.allow_outside_paths)
    # A bar only on a terminal: in a log or a pipe its carriage returns would bury the one-line error.
    quiet = args.json or not sys.stderr.isatty()
    with tqdm(total=len(capture.frames), desc="checking images", unit="img", disable=quiet, leave=False) as bar:
        check_images(capture, decode=not args.headers_only, progress=bar.update)
    summary = summarize(capture)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
