"""Placed objects and erased regions: their arrays in versioned groups, their entries in the manifest.

An object's arrays (a trained block copied from its source store) are written once into
``objects/<name>/v<k>/``, completely and checksummed, before any manifest names them. Its pose
record (the placement: where, how turned, how scaled, which part of the source) is small JSON
and lives in the object's manifest entry, so placing, moving, removing and rolling back are each
one atomic manifest swap, exactly like publishing a block. An erased region has no arrays: its
entry (kind ``erase``, version 0) holds the box.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

from blocknerf.errors import StoreError
from blocknerf.store.backend import reason, utc_now, write_arrays
from blocknerf.store.manifest import OBJECT_KINDS, Manifest, PublishedObject
from blocknerf.store.parts import StoreParts
from blocknerf.store.versions import checksum_arrays

__all__ = ["NAME_PATTERN", "ObjectsPart"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Object names: letters, digits, ``_ . -``; they name a zarr group, so no slashes."""
_VERSION_RE = re.compile(r"^v(\d+)$")


class ObjectsPart(StoreParts):
    """Object versions and the objects of the manifest (a part of ``BlockStore``)."""

    def write_object_version(self, name: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> int:
        """Write a new complete version of an object's arrays (not yet published); its number."""
        self._require_writable()
        check_object_name(self.url, name)
        group = self._root.require_group(f"objects/{name}")
        existing = [int(m.group(1)) for m in map(_VERSION_RE.match, group.group_keys()) if m]
        version = max(existing, default=0) + 1
        try:
            target = group.create_group(f"v{version}")
            write_arrays(target, arrays)
            target.attrs.put(
                {**dict(attrs), "object": name, "version": version, "created": utc_now(),
                 "checksum": checksum_arrays(arrays), "complete": True}
            )
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write object {name} ({reason(exc)})") from None
        return version

    def read_object_version(self, name: str, version: int, *, verify: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and attrs of one complete version of an object."""
        group = self._object_group(name, version)
        attrs = {} if group is None else dict(group.attrs)
        if group is None or not attrs.get("complete"):
            raise StoreError(self.url, f"object {name} has no complete version {version}")
        arrays = {key: np.asarray(arr[...]) for key, arr in group.arrays()}
        if verify and checksum_arrays(arrays) != attrs["checksum"]:
            raise StoreError(self.url, f"object {name} version {version} fails its checksum")
        return arrays, attrs

    def object_version_nbytes(self, name: str, version: int) -> int:
        """Bytes an object version's arrays take once loaded (from metadata)."""
        group = self._object_group(name, version)
        return 0 if group is None else int(sum(arr.nbytes for _, arr in group.arrays()))

    def publish_objects(self, changes: Mapping[str, tuple[str, int, Mapping[str, Any]] | None]) -> Manifest:
        """Atomically place, move or remove objects: name -> (kind, version, placement), or None
        to remove it. The entry an object replaces goes onto its history; blocks are untouched."""
        self._require_writable()
        current = self.manifest()
        objects = dict(current.objects)
        now = utc_now()
        for name, change in changes.items():
            old = objects.get(name)
            if change is None:
                if old is None:
                    raise StoreError(self.url, f"no object {name} (see `blocknerf compose {self.url} list`)")
                del objects[name]
                continue
            kind, version, placement = change
            if kind not in OBJECT_KINDS:
                raise StoreError(self.url, f"object kind must be one of {', '.join(OBJECT_KINDS)}, got {kind!r}")
            checksum = ""
            if kind == "field":
                group = self._object_group(name, version)
                if group is None or not group.attrs.get("complete"):
                    raise StoreError(self.url, f"object {name} version {version} is not complete; not publishing it")
                checksum = str(group.attrs["checksum"])
            history = () if old is None else (*old.history, old.to_dict(with_history=False))
            objects[name] = PublishedObject(kind, int(version), dict(placement), now, checksum, history)
        return self._swap_objects(current, objects)

    def rollback_object(self, name: str) -> PublishedObject:
        """Publish again the entry an object had before its current one (its previous version and
        placement, with the history it had then); returns the restored entry."""
        current = self.manifest()
        entry = current.objects.get(name)
        if entry is None:
            raise StoreError(self.url, f"no object {name} to roll back")
        if not entry.history:
            raise StoreError(self.url, f"object {name}: nothing was published before its current placement")
        previous = PublishedObject.from_dict(entry.history[-1])
        if previous.kind == "field" and self._object_group(name, previous.version) is None:
            raise StoreError(self.url, f"object {name} version {previous.version} is gone; cannot roll back to it")
        restored = PublishedObject(
            previous.kind, previous.version, previous.placement, utc_now(), previous.checksum, entry.history[:-1]
        )
        self._swap_objects(current, {**current.objects, name: restored})
        return restored

    def _swap_objects(self, current: Manifest, objects: Mapping[str, PublishedObject]) -> Manifest:
        new = Manifest(blocks=current.blocks, objects=dict(objects), serial=current.serial + 1, records=current.records)
        self._write_root_attrs({"manifest": new.to_dict()})
        return new

    def _object_group(self, name: str, version: int) -> zarr.Group | None:
        try:
            return self._root[f"objects/{name}/v{version}"]
        except KeyError:
            return None


def check_object_name(url: str | None, name: str) -> None:
    """Raise StoreError unless ``name`` is a valid object name."""
    if not NAME_PATTERN.match(name):
        raise StoreError(url, f"object name {name!r} must be letters, digits, '_', '.' or '-' (at most 64)")
