"""Versions of blocks: writing, reading, checksums, deleting, and garbage collection."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from blocknerf.errors import StoreError
from blocknerf.store.backend import is_local, local_path, read_arrays, reason, utc_now, write_arrays
from blocknerf.store.confinement import require_block_id
from blocknerf.store.deletion import TRASH, child_groups, delete_group, purge_trash
from blocknerf.store.faults import fault_point
from blocknerf.store.manifest import Manifest
from blocknerf.store.parts import StoreParts

__all__ = ["GcResult", "VersionInfo", "VersionsPart", "checksum_arrays"]

_VERSION_RE = re.compile(r"^v(\d+)$")
_RECORDS_RE = re.compile(r"^r(\d+)$")


@dataclass(frozen=True)
class VersionInfo:
    """A complete (written, checksummed) version of a block; published or not."""

    block_id: str
    version: int
    attrs: Mapping[str, Any]

    @property
    def checksum(self) -> str:
        return str(self.attrs["checksum"])

    @property
    def created(self) -> str:
        return str(self.attrs.get("created", ""))



@dataclass(frozen=True)
class GcResult:
    """What ``BlockStore.gc`` deleted."""

    versions: tuple[tuple[str, int], ...] = ()
    """(block id, version) pairs."""
    records: tuple[int, ...] = ()
    """Records revisions (capture record + plan) that no manifest names any more."""
    temporary: tuple[str, ...] = ()
    """Half-written temporary files that killed writes left (local stores; paths in the store)."""
    objects: tuple[tuple[str, int], ...] = ()
    """(object name, version) pairs: arrays of placed objects no kept manifest entry names."""


def checksum_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays`` in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


class VersionsPart(StoreParts):
    """Block versions and garbage collection (a part of ``BlockStore``)."""

    def block_ids(self) -> tuple[str, ...]:
        """Ids of the blocks in the plan."""
        return self.plan.ids

    def versions(self, block_id: str) -> list[VersionInfo]:
        """Complete versions of a block, oldest first (incomplete leftovers are ignored)."""
        group = self._block_group(block_id)
        if group is None:
            return []
        out = []
        for name in child_groups(group):
            m = _VERSION_RE.match(name)
            if m:
                attrs = dict(group[name].attrs)
                if attrs.get("complete"):
                    out.append(VersionInfo(block_id, int(m.group(1)), attrs))
        return sorted(out, key=lambda v: v.version)

    def version_info(self, block_id: str, version: int) -> VersionInfo | None:
        known = self._known_versions.get((block_id, version))
        if known is not None:
            return known
        group = self._block_group(block_id)
        if group is None or f"v{version}" not in group:
            return None
        attrs = dict(group[f"v{version}"].attrs)
        if not attrs.get("complete"):
            return None
        info = VersionInfo(block_id, version, attrs)
        if not self.writable:
            self._known_versions[(block_id, version)] = info
        return info

    def write_version(self, block_id: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> int:
        """Write a new complete version of a block (not yet published) and return its number."""
        self._require_writable()
        require_block_id(self.url, block_id)
        try:
            group = self._root.require_group(f"blocks/{block_id}")
            version = self._claim_version(block_id, group)
            target = group[f"v{version}"]
            write_arrays(target, arrays)
            fault_point("during_version_write")
            target.attrs.put(
                {**dict(attrs), "block_id": block_id, "version": version, "created": utc_now(),
                 "checksum": checksum_arrays(arrays),
                 "array_checksums": {name: checksum_arrays({name: a}) for name, a in arrays.items()}, "complete": True}
            )
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write block {block_id} ({reason(exc)})") from None
        return version

    def _claim_version(self, block_id: str, group: zarr.Group) -> int:
        """Allocate the next version number atomically: the version's group metadata is created
        with an exclusive (conditional) write, so two writers never get the same number."""
        existing = [int(m.group(1)) for m in map(_VERSION_RE.match, child_groups(group)) if m]
        version = max(existing, default=0) + 1
        objects = self.conditional_keys()
        claim = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"complete": False}}).encode()
        while objects.create(f"blocks/{block_id}/v{version}/zarr.json", claim) is None:
            version += 1
        return version

    def read_version(
        self, block_id: str, version: int, *, verify: bool = True, names: Callable[[str], bool] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and attrs of one complete version; reads only that block's arrays, and of those
        only the ones ``names`` accepts when given (a baked block skips the hash tables).

        ``verify`` checks what was read against the stored checksums: the whole version's, or each
        read array's own (``array_checksums``) when only some are read; a version written before
        per-array checksums existed is then read whole to verify it."""
        info = self.version_info(block_id, version)
        if info is None:
            raise StoreError(self.url, f"block {block_id} has no complete version {version}")
        per_array = info.attrs.get("array_checksums")
        if verify and names is not None and not isinstance(per_array, Mapping):
            names = None
        try:
            group = self._root[f"blocks/{block_id}/v{version}"]
            if isinstance(per_array, Mapping):  # the version names its arrays: fetch those wanted together
                arrays = read_arrays(group, [name for name in per_array if names is None or names(name)])
            else:
                arrays = {name: np.asarray(arr[...]) for name, arr in group.arrays() if names is None or names(name)}
        except Exception as exc:  # noqa: BLE001 - any failure to decode stored bytes is corruption
            raise StoreError(self.url, f"block {block_id} version {version} is corrupt (unreadable: {type(exc).__name__})") from None
        if verify:
            if names is None:
                intact = checksum_arrays(arrays) == info.checksum
            else:
                intact = all(per_array.get(name) == checksum_arrays({name: a}) for name, a in arrays.items())
            if not intact:
                raise StoreError(self.url, f"block {block_id} version {version} is corrupt (fails its checksum)")
        return arrays, dict(info.attrs)

    def read_published(self, block_id: str, manifest: Manifest | None = None) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]:
        """The published version of a block: (version, arrays, attrs)."""
        manifest = manifest or self.manifest()
        version = manifest.version_of(block_id)
        if version is None:
            raise StoreError(self.url, f"block {block_id} has no published version (train it first)")
        arrays, attrs = self.read_version(block_id, version)
        return version, arrays, attrs

    def version_nbytes(self, block_id: str, version: int, names: Callable[[str], bool] | None = None) -> int:
        """Bytes the version's arrays (those ``names`` accepts, when given) take in memory once
        loaded (from metadata; reads no data)."""
        group = self._root[f"blocks/{block_id}/v{version}"]
        return int(sum(arr.nbytes for name, arr in group.arrays() if names is None or names(name)))

    def delete_version(self, block_id: str, version: int) -> None:
        """Delete one version; refuses to delete the published one."""
        self._require_writable()
        if self.manifest().version_of(block_id) == version:
            raise StoreError(self.url, f"block {block_id} version {version} is published; not deleting it")
        group = self._block_group(block_id)
        if group is not None:
            delete_group(self.url, group, f"v{version}")

    def gc(self, keep: int, *, dry_run: bool = False) -> GcResult:
        """Delete what no reader needs; keep, per block, the published version and the ``keep - 1``
        versions published most recently before it.

        Deleted: older published versions, versions never published (left by a run that failed or
        was killed before publishing; rerunning it would have reused them), incomplete leftovers,
        every records revision but the published one, and the temporary files of killed writes. The published version of a block is
        never deleted. Placed objects are kept the same way: per object the version it renders
        and those of the ``keep - 1`` entries before it (what ``rollback`` can restore); the
        arrays of removed objects go. Run it while no training or update is writing to the store. ``dry_run``:
        only say what would be deleted.
        """
        self._require_writable()
        self._refuse_if_leased_elsewhere()
        if keep < 1:
            raise StoreError(self.url, "gc --keep must be at least 1")
        manifest = self.manifest()
        deleted: list[tuple[str, int]] = []
        for block_id in self._stored_block_ids():
            entry = manifest.blocks.get(block_id)
            kept: set[int] = set()
            if entry is not None:
                history = self.published_history(block_id, entry)
                kept = {entry.version, *(history[len(history) - (keep - 1):] if keep > 1 else ())}
            deleted += [(block_id, v) for v in self._delete_versions(self._root[f"blocks/{block_id}"], kept, dry_run=dry_run)]
        records: list[int] = []
        if "records" in self._root:
            group = self._root["records"]
            for name in child_groups(group):
                m = _RECORDS_RE.match(name)
                if m and int(m.group(1)) != manifest.records:
                    if not dry_run:
                        delete_group(self.url, group, name)
                    records.append(int(m.group(1)))
        if manifest.records != 0 and ("plan" in self._root or "capture" in self._root):
            # The plan first: while it exists (not tombstoned), revision 0 exists.
            for name in ("plan", "capture"):
                if not dry_run:
                    delete_group(self.url, self._root, name)
            records.append(0)
        temporary: list[str] = []
        if is_local(self.url):
            root = local_path(self.url)
            for leftover in sorted(p for p in root.rglob("*.partial") if TRASH not in p.relative_to(root).parts):
                if not dry_run:
                    leftover.unlink(missing_ok=True)
                temporary.append(leftover.relative_to(root).as_posix())
        temporary += purge_trash(self.url, dry_run=dry_run)
        objects = self._collect_objects(manifest, keep, dry_run=dry_run)
        return GcResult(versions=tuple(deleted), records=tuple(sorted(records)), temporary=tuple(temporary), objects=objects)

    def _collect_objects(self, manifest: Manifest, keep: int, *, dry_run: bool) -> tuple[tuple[str, int], ...]:
        """gc's part for object versions (see ``gc``): the (name, version) pairs deleted. Groups
        whose names are not object names are never touched."""
        from blocknerf.store.objects import NAME_PATTERN

        if "objects" not in self._root:
            return ()
        deleted: list[tuple[str, int]] = []
        root = self._root["objects"]
        for name in (n for n in child_groups(root) if NAME_PATTERN.match(n)):
            entry = manifest.objects.get(name)
            kept: set[int] = set()
            if entry is not None:
                entries = [*(e for e in entry.history[len(entry.history) - (keep - 1):] if keep > 1), entry.to_dict(with_history=False)]
                kept = {int(e.get("version", 0)) for e in entries if e.get("kind") == "field"}
            deleted += [(name, v) for v in self._delete_versions(root[name], kept, dry_run=dry_run)]
        return tuple(deleted)

    def _delete_versions(self, group: zarr.Group, kept: set[int], *, dry_run: bool) -> list[int]:
        """Delete the ``v<k>`` groups of ``group`` whose k is not in ``kept``; the ks deleted (or
        that would be, with ``dry_run``)."""
        gone = []
        for name in child_groups(group):
            m = _VERSION_RE.match(name)
            if m and int(m.group(1)) not in kept:
                if not dry_run:
                    delete_group(self.url, group, name)
                gone.append(int(m.group(1)))
        return gone

    def _block_group(self, block_id: str) -> zarr.Group | None:
        require_block_id(self.url, block_id)
        try:
            return self._root[f"blocks/{block_id}"]
        except KeyError:
            return None

    def _stored_block_ids(self) -> Iterable[str]:
        """Block groups in the store whose names are valid block ids (others are never touched)."""
        from partitioning import block_id_problem

        try:
            return [b for b in child_groups(self._root["blocks"]) if block_id_problem(b) is None]
        except KeyError:
            return []

