"""Listing and deleting groups of a store so that a kill at any moment leaves nothing a reader trips over.

``del group[name]`` removes files in whatever order the file system lists them: a process killed
halfway leaves a version (or records revision, or checkpoint) whose metadata still says complete
while chunks are gone (zarr reads missing chunks as fill values), or a directory without
``zarr.json``, which zarr warns about on every listing of its parent. So:

- ``child_groups`` lists the child groups of a group and skips, silently, entries that are not zarr
  nodes (left by a killed write: a half-made directory, a ``*.partial`` temporary file);
- ``delete_group`` first replaces the group's ``zarr.json`` by a tombstone (``complete: false``,
  one atomic write: from then on every reader skips it), then, on a local disk, renames its
  directory into ``<store>/.trash/`` (one atomic rename: it leaves its parent's listing at once) and
  removes it there; on an object store it deletes every object under the group, the ``zarr.json``
  objects last and deepest first, so a kill leaves a tombstoned group that the next gc deletes;
- ``purge_trash`` removes what killed deletions left in ``.trash`` (gc runs it).
"""

from __future__ import annotations

import shutil
import uuid
from typing import Any

import zarr

from blocknerf.store.backend import is_local, local_path

__all__ = ["TOMBSTONE", "TRASH", "child_groups", "delete_group", "is_tombstone", "purge_trash"]

TRASH = ".trash"
"""Where a local store's deleted groups go before they are removed (never listed by readers)."""
TOMBSTONE = {"complete": False, "deleting": True}
"""The attributes of a group being deleted."""


def is_tombstone(attrs: Any) -> bool:
    """Whether a group's attributes say it is being deleted."""
    return bool(attrs.get("deleting"))


def child_groups(group: zarr.Group) -> list[str]:
    """Names of the child groups of ``group`` as stored now (never a cached listing), sorted;
    entries that are not zarr groups are skipped."""
    from zarr.core.sync import sync

    fs = getattr(group.store, "fs", None)  # an object store's file system caches listings:
    if fs is not None:  # what another process wrote since this one last listed would be missed
        fs.invalidate_cache(f"{group.store.path.rstrip('/')}/{group.path}".rstrip("/"))

    async def names() -> list[str]:
        return [key async for key in group.store.list_dir(group.path)]

    found = []
    for name in sorted(sync(names())):
        if name == "zarr.json" or name.startswith(".") or name.endswith(".partial"):
            continue
        try:
            node = group[name]
        except KeyError:
            continue  # a directory or prefix without zarr.json: left by a killed write
        if isinstance(node, zarr.Group):
            found.append(name)
    return found


def delete_group(url: str, parent: zarr.Group, name: str) -> None:
    """Delete the child group ``name`` of ``parent`` (a group of the store at ``url``), tombstone first."""
    try:
        node = parent[name]
    except KeyError:
        return
    node.attrs.put(dict(TOMBSTONE))
    path = f"{parent.path}/{name}".strip("/")
    if is_local(url):
        root = local_path(url)
        trash = root / TRASH
        trash.mkdir(exist_ok=True)
        target = trash / uuid.uuid4().hex
        (root / path).rename(target)
        shutil.rmtree(target, ignore_errors=True)
        return
    import fsspec

    fs, base = fsspec.core.url_to_fs(url)
    prefix = f"{base.rstrip('/')}/{path}"
    keys = fs.find(prefix)
    data = [k for k in keys if not k.endswith("/zarr.json")]
    meta = sorted((k for k in keys if k.endswith("/zarr.json")), key=lambda k: -k.count("/"))
    if data:
        fs.rm(data)
    for key in meta:
        fs.rm_file(key)
    fs.invalidate_cache()


def purge_trash(url: str, *, dry_run: bool = False) -> list[str]:
    """What killed deletions left in a local store's ``.trash`` (removed unless ``dry_run``)."""
    if not is_local(url):
        return []
    trash = local_path(url) / TRASH
    if not trash.is_dir():
        return []
    left = sorted(p.name for p in trash.iterdir())
    if not dry_run:
        for name in left:
            target = trash / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    return [f"{TRASH}/{name}" for name in left]
