"""``blocknerf demo [OUT] [--quick]``: the whole pipeline on the synthetic city, and its report."""

from __future__ import annotations

import argparse

HELP = "run the whole pipeline on a synthetic city (synth, partition, train, eval, flythrough, baked vs neural, update, compose) and write report.html"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", nargs="?", default="demo_out", help="output directory (default: ./demo_out; an earlier demo there is replaced)")
    p.add_argument("--quick", action="store_true", help="a 1x1 city and short training: about 3 minutes instead of 15")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: what the cores allow)")


def run(args: argparse.Namespace) -> int:
    from blocknerf.cli.main import main
    from blocknerf.presentation.demo import DemoPreset, run_demo

    run_demo(args.out, command=main, preset=DemoPreset.load("quick" if args.quick else "full"), workers=args.workers)
    return 0
