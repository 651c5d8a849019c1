"""What commands share to stay inside their bounds: the writer lease and the path-confinement flags.

Not a command (no ``HELP``): imported by the commands that write a store or read images.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any


def add_outside_paths_argument(p: argparse.ArgumentParser) -> None:
    """``--allow-outside-paths``: read images outside the capture directory / the allowed places."""
    p.add_argument(
        "--allow-outside-paths", action="store_true",
        help="read images whose file_path leads outside the capture directory, or that a store's capture record "
        "names without a transforms.json on disk listing them (refused by default)",
    )


def add_wait_argument(p: argparse.ArgumentParser) -> None:
    """``--no-wait``: fail at once when another writer holds the store's lease."""
    p.add_argument("--no-wait", action="store_true", help="fail at once if another command is writing to the store (default: wait)")


def check_store_images(store: Any, args: argparse.Namespace) -> None:
    """Refuse, in one line, a store whose capture record would make this command read images
    that no capture on disk lists (``blocknerf.store.confinement``), unless --allow-outside-paths."""
    from blocknerf.store.confinement import check_capture_images

    check_capture_images(store.url, store.capture, allow_outside=bool(getattr(args, "allow_outside_paths", False)))


@contextlib.contextmanager
def writer_lease(store: Any, args: argparse.Namespace) -> Iterator[Any]:
    """Hold the store's writer lease for the command's run: wait for it with one message, or fail
    with one line when --no-wait is given."""
    import time

    lease = store.writer_lease(args.command)

    def waiting(holder: Any) -> None:
        print(f"blocknerf {args.command}: waiting for the store's writer lease, held by {holder.describe(time.time())}",
              file=sys.stderr, flush=True)

    lease.acquire(wait=not getattr(args, "no_wait", False), on_wait=waiting)
    try:
        yield lease
    finally:
        lease.release()
