"""Confinement: what a store may name (block ids) and where a command may read images from.

A store is data someone may send you, so nothing in it may lead a command outside the places it
was meant to touch:

- **Block ids** become store keys (``blocks/<id>/v<k>``); every id is checked against
  ``partitioning.BLOCK_ID_PATTERN`` when planned, when a version is written and when a store is
  opened, so ``../x`` never reaches a path.
- **Image paths**: a capture's ``file_path`` must resolve inside its directory
  (``blocknerf.capture.transforms.read_capture``); a store's capture record names the directories
  its images lie in (its capture roots). A command that reads images through a store uses those
  roots only when each lies inside an *allowed place*: the directory that holds the store (a local
  store), or the working directory. Anything else is refused with one line unless the command is
  given ``--allow-outside-paths``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from blocknerf.capture.frames import Capture
from blocknerf.errors import StoreError
from blocknerf.store.backend import is_local, local_path
from partitioning import block_id_problem

__all__ = ["allowed_places", "capture_roots", "check_capture_roots", "require_block_id"]


def require_block_id(url: str, block_id: object) -> str:
    """``block_id`` when it matches the block-id pattern; else StoreError (one line, naming the store)."""
    problem = block_id_problem(block_id)
    if problem:
        raise StoreError(url, problem)
    return str(block_id)


def capture_roots(capture: Capture) -> tuple[Path, ...]:
    """The directories a capture's images are read from: its root, plus the directory of every
    image (or depth map) that lies outside it (frames merged from another capture by an update, or
    read with ``--allow-outside-paths``). Resolved, so ``..`` and symbolic links count where they lead."""
    root = Path(capture.root).resolve()
    roots = {root}
    for frame in capture.frames:
        for path in (frame.image_path, frame.depth_path):
            if path is None:
                continue
            where = Path(path).resolve()
            if not _inside(where, root):
                roots.add(where.parent)
    return tuple(sorted(roots))


def allowed_places(store_url: str, cwd: str | os.PathLike[str] | None = None) -> tuple[Path, ...]:
    """Where a store's capture roots may lie without ``--allow-outside-paths``: the directory
    holding a local store, and the working directory."""
    places = [Path(cwd or os.getcwd()).resolve()]
    if is_local(store_url):
        places.append(local_path(store_url).resolve().parent)
    return tuple(places)


def check_capture_roots(
    store_url: str, capture: Capture, *, allow_outside: bool = False, cwd: str | os.PathLike[str] | None = None
) -> tuple[Path, ...]:
    """The capture roots of a store's record, after checking each lies in an allowed place;
    StoreError naming the first that does not (unless ``allow_outside``)."""
    roots = capture_roots(capture)
    if allow_outside:
        return roots
    places = allowed_places(store_url, cwd)
    for root in roots:
        if not any(_inside(root, place) for place in places):
            raise StoreError(
                store_url,
                f"its capture record reads images from {root}, outside the store's directory and the working "
                "directory; run from a directory that holds the capture, or pass --allow-outside-paths to read it",
            )
    return roots


def _inside(path: Path, places: Path | Iterable[Path]) -> bool:
    if isinstance(places, Path):
        places = (places,)
    return any(path == p or p in path.parents for p in places)
