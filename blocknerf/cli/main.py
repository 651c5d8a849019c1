"""The ``blocknerf`` command: subcommand dispatch, logging of warnings, and one-line errors."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

from blocknerf.errors import BlockNerfError, one_line

# Every module of this package that defines HELP, add_arguments(parser) and run(args) -> int is a
# subcommand named after the module. They import heavy dependencies (torch, zarr, dask) inside run(),
# so building the parser stays fast. This order is the pipeline's; others follow alphabetically.
ORDER = ("synth", "ingest", "inspect", "partition", "info", "train", "bake", "eval", "match", "render", "view", "compose", "update", "rollback", "gc", "fsck", "demo")


def commands() -> dict[str, ModuleType]:
    """Subcommand name -> its module, in pipeline order."""
    found = {}
    for info in pkgutil.iter_modules(_package_path()):
        module = importlib.import_module(f"blocknerf.cli.{info.name}")
        if hasattr(module, "HELP") and hasattr(module, "run"):
            found[info.name] = module
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blocknerf",
        description="City-scale NeRF as overlapping hash-grid blocks: partition, train in parallel, stream.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in commands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        try:
            return int(args._run(args) or 0)
        except BlockNerfError as exc:
            if args.debug:
                raise
            print(f"blocknerf {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"blocknerf {args.command}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # The reader of our output went away (``blocknerf info S --json | head``): not an error.
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except Exception as exc:  # noqa: BLE001 - the last line of defence for a CLI
            if args.debug:
                raise
            print(
                f"blocknerf {args.command}: internal error: {type(exc).__name__}: {exc} "
                "(rerun with --debug for the traceback)",
                file=sys.stderr,
            )
            return 1


def _package_path() -> list[str]:
    import blocknerf.cli

    return list(blocknerf.cli.__path__)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"blocknerf: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
