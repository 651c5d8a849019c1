"""Confinement: what a store may name (block ids) and where a command may read images from.

A store is data someone may send you, so nothing in it may lead a command outside the places it
was meant to touch:

- **Block ids** become store keys (``blocks/<id>/v<k>``); every id is checked against
  ``partitioning.BLOCK_ID_PATTERN`` when planned, when a version is written and when a store is
  opened, so ``../x`` never reaches a path.
- **Image paths**: a capture's ``file_path`` must resolve inside its directory
  (``blocknerf.capture.transforms.read_capture``). A store's capture record names absolute
  image paths (its root, and the captures an update merged in); a command reads an image through
  a store only when a capture on disk vouches for it: some directory above the image (after
  resolving symbolic links) holds a ``transforms.json`` that lists the image (or depth map) by its
  path relative to that directory. A store naming ``/`` as its root, or ``../../etc/...`` images,
  is refused in one line unless the command is given ``--allow-outside-paths``.
"""

from __future__ import annotations

import os
from pathlib import Path

from blocknerf.capture.frames import Capture
from blocknerf.errors import StoreError
from partitioning import block_id_problem

__all__ = ["check_capture_images", "require_block_id", "vouched"]


def require_block_id(url: str, block_id: object) -> str:
    """``block_id`` when it matches the block-id pattern; else StoreError (one line, naming the store)."""
    problem = block_id_problem(block_id)
    if problem:
        raise StoreError(url, problem)
    return str(block_id)


def _listed(transforms: Path, cache: dict[Path, frozenset[str] | None]) -> frozenset[str] | None:
    """The normalised file paths a transforms.json lists (images and depth maps), or None."""
    if transforms not in cache:
        import json
        import posixpath

        try:
            doc = json.loads(transforms.read_text())
            entries = doc["frames"] if isinstance(doc, dict) else []
            paths: set[str] = set()
            for entry in entries if isinstance(entries, list) else []:
                for key in ("file_path", "depth_file_path"):
                    if isinstance(entry, dict) and isinstance(entry.get(key), str):
                        paths.add(posixpath.normpath(entry[key].replace("\\", "/")))
            cache[transforms] = frozenset(paths)
        except (OSError, ValueError, OverflowError, KeyError, TypeError):
            cache[transforms] = None
    return cache[transforms]


def vouched(path: str | os.PathLike[str], cache: dict[Path, frozenset[str] | None], *, levels: int = 6) -> bool:
    """Whether a capture on disk lists ``path``: a ``transforms.json`` at most ``levels``
    directories above the resolved path names it by its relative path (with or without suffix)."""
    target = Path(path).resolve()
    for depth, parent in enumerate(target.parents):
        if depth >= levels:
            break
        listed = _listed(parent / "transforms.json", cache) if (parent / "transforms.json").is_file() else None
        if listed:
            rel = target.relative_to(parent).as_posix()
            if rel in listed or str(Path(rel).with_suffix("")) in listed:
                return True
    return False


def check_capture_images(store_url: str, capture: Capture, *, allow_outside: bool = False) -> None:
    """StoreError naming the first image (or depth map) of a store's capture record that no capture
    on disk vouches for (see the module docstring), unless ``allow_outside``. Images that do not
    exist are left to the command (they are skipped or reported as missing)."""
    if allow_outside:
        return
    cache: dict[Path, frozenset[str] | None] = {}
    for frame in capture.frames:
        for path in (frame.image_path, frame.depth_path):
            if path is None or not Path(path).exists():
                continue
            if not vouched(path, cache):
                raise StoreError(
                    store_url,
                    f"its capture record reads {path}, which no transforms.json above it lists (frame {frame.id!r}); "
                    "refusing to read it (pass --allow-outside-paths to read it anyway)",
                )
