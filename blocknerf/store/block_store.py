"""The block store: a zarr v3 hierarchy of versioned, immutable blocks behind an atomic manifest.

Layout::

    city.zarr/
      zarr.json                   attrs: format, created, geo origin, resolved config, manifest
      capture/zarr.json           attrs: the first capture record (transforms.json document + root)
      plan/                       the first block plan (attrs + frame-assignment arrays)
      records/r<k>/capture, plan  later revisions of both, written by updates; the attrs of
                                  records/r<k> say complete, digest, created
      blocks/<id>/v<k>/           one trained version: arrays (weights, hash tables, occupancy,
                                  appearance codes) + attrs (complete, checksum, stats, frames, ...)
      blocks/<id>/checkpoints/s<step>/   training checkpoints (arrays + attrs), newest kept
      objects/<name>/v<k>/        a placed object's arrays, copied from its source block; its
                                  pose record (placement) lives in the manifest entry

Readers resolve everything through the manifest: per block the published version (and the
versions published before it), and the records revision (capture record + plan) in use. Anything
new -- a version, a records revision -- is written completely first, under a name no reader uses,
and marked complete last; then the manifest (the root group's attributes) is replaced in a single
atomic write (zarr's local store writes a temporary file and renames it; object stores replace
objects atomically). A crash at any point therefore leaves the previous manifest, and everything
it names, intact. Only one process publishes at a time (the command that trains or updates);
workers write versions and checkpoints of distinct blocks, which never share keys.

``BlockStore`` is assembled from parts that each hold one concern: ``records`` (capture records
and plans), ``versions`` (block versions, checksums, gc), ``checkpoints``, ``documents`` and ``objects`` (placed objects and erased regions); this
module holds opening, the stored settings and the manifest swap. ``faults`` holds the fault points
of the crash-safety tests.

No pickle: everything is numeric arrays plus JSON attributes, so a store is safe to open.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zarr

from blocknerf.capture.frames import Capture
from blocknerf.errors import StoreError
from blocknerf.store.backend import is_local, local_path, reason, utc_now
from blocknerf.store.checkpoints import CheckpointsPart
from blocknerf.store.confinement import require_block_id
from blocknerf.store.documents import DocumentsPart
from blocknerf.store.faults import armed, fault_point, leave_torn_write
from blocknerf.store.lease import DEFAULT_TTL_S, WriterLease, read_holder
from blocknerf.store.manifest import MANIFEST_SCHEMA, Manifest, PublishedBlock
from blocknerf.store.conditional import StoreObjects, store_objects
from blocknerf.store.objects import ObjectsPart
from blocknerf.store.records import RecordsPart, records_digest
from blocknerf.store.versions import VersionsPart
from partitioning import BlockPlan

__all__ = ["FORMAT_VERSION", "BlockStore"]

FORMAT_VERSION = 1


class BlockStore(RecordsPart, VersionsPart, CheckpointsPart, DocumentsPart, ObjectsPart):
    """A city's block store on a local path or any fsspec URL that zarr can open."""

    def __init__(self, url: str, root: zarr.Group, *, writable: bool) -> None:
        self.url = url
        self._root = root
        self.writable = writable
        self._known_versions: dict[tuple[str, int], Any] = {}
        """Complete versions' infos, remembered by a read-only store (a complete version's
        attributes never change; a streaming reader asks for them at every load)."""

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        url: str | os.PathLike[str],
        *,
        plan: BlockPlan,
        capture: Capture,
        config: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> BlockStore:
        """Create a new store holding ``plan`` and the capture record; refuses to overwrite unless ``force``."""
        url = str(url)
        if is_local(url):
            path = Path(url)
            if path.exists() and not force:
                raise StoreError(url, "store already exists (use --force to overwrite it)")
            if path.exists() and not (path / "zarr.json").exists() and any(path.iterdir()):
                raise StoreError(url, "exists and is not a zarr store; refusing to overwrite it")
        try:
            root = zarr.open_group(url, mode="w" if force else "w-", zarr_format=3)
        except FileExistsError:
            raise StoreError(url, "store already exists (use --force to overwrite it)") from None
        except (PermissionError, OSError) as exc:
            raise StoreError(url, f"cannot create store ({reason(exc)})") from None
        store = cls(url, root, writable=True)
        store._write_capture_into(root.require_group("capture"), capture, digest=records_digest(capture, plan))
        store._write_plan_into(root.require_group("plan"), plan)
        # The root attributes come last: until they exist, `open` refuses the store.
        root.attrs.update(
            {
                "blocknerf": {"format": FORMAT_VERSION, "created": utc_now()},
                "geo_origin": None if capture.geo_origin is None else capture.geo_origin.to_dict(),
                "config": dict(config or {}),
                "manifest": Manifest().to_dict(),
            }
        )
        return store

    @classmethod
    def open(cls, url: str | os.PathLike[str], *, writable: bool = False) -> BlockStore:
        """Open an existing store; raises StoreError when it is missing, not ours, or not writable."""
        url = str(url)
        if is_local(url):
            path = Path(url)
            if not path.exists():
                raise StoreError(url, "store not found (create it with `blocknerf partition`)")
            if not (path / "zarr.json").exists():
                raise StoreError(url, "not a zarr store (no zarr.json)")
            if writable and not os.access(path, os.W_OK):
                raise StoreError(url, "store is read-only (no write permission)")
        try:
            root = zarr.open_group(url, mode="r+" if writable else "r")
        except FileNotFoundError:
            raise StoreError(url, "store not found") from None
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(url, f"cannot open store ({reason(exc)})") from None
        meta = root.attrs.get("blocknerf")
        if not isinstance(meta, dict) or "format" not in meta:
            raise StoreError(url, "not a blocknerf store (zarr.json has no 'blocknerf' attribute)")
        try:
            newer = int(meta["format"]) > FORMAT_VERSION
        except (TypeError, ValueError, OverflowError):
            raise StoreError(url, f"store format {str(meta['format'])[:40]!r} is not a number") from None
        if newer:
            raise StoreError(url, f"store format {meta['format']} is newer than this blocknerf ({FORMAT_VERSION})")
        store = cls(url, root, writable=writable)
        # Every id a store names becomes a key: refuse the whole store, in one line, if one is bad.
        for block_id in (*store.plan.ids, *store.manifest().blocks):
            require_block_id(url, block_id)
        return store

    def _fresh_root(self) -> zarr.Group:
        """Re-open the root so attributes written by another process are seen."""
        return zarr.open_group(self.url, mode="r+" if self.writable else "r")

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(self.url, "store was opened read-only")

    # -- the writer lease ---------------------------------------------------------------------------
    def conditional_keys(self) -> StoreObjects:
        """Compare-and-swap access to the store's small objects (lease, version claims)."""
        return store_objects(self.url)

    def writer_lease(self, command: str, *, ttl_s: float = DEFAULT_TTL_S) -> WriterLease:
        """The store's writer lease for ``command``, not yet taken: ``lease.acquire(wait=...)``, or
        ``with store.writer_lease("bake"):`` to wait for it. Every command that writes takes it."""
        self._require_writable()
        return WriterLease(self.conditional_keys(), self.url, command=command, ttl_s=ttl_s)

    def _refuse_if_leased_elsewhere(self) -> None:
        """StoreError when a live writer lease is held by another process."""
        import time

        holder, _ = read_holder(self.conditional_keys())
        if holder is not None and holder.is_live(time.time()) and not holder.is_this_process():
            raise StoreError(self.url, f"another writer holds the store's lease: {holder.describe(time.time())}; not writing")

    # -- store-level records -------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration the store was created (or last updated) with."""
        return dict(self._fresh_root().attrs.get("config", {}))

    def set_config(self, config: Mapping[str, Any]) -> None:
        self._require_writable()
        self._write_root_attrs({"config": dict(config)})

    @property
    def geo_origin(self) -> dict[str, float] | None:
        return self._root.attrs.get("geo_origin")

    # -- manifest ------------------------------------------------------------------------------
    def manifest(self) -> Manifest:
        """The manifest as stored now (re-read on every call, so readers see new publications)."""
        try:
            manifest = Manifest.from_dict(self._fresh_root().attrs.get("manifest", {}))
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise StoreError(self.url, f"malformed manifest ({type(exc).__name__}: {str(exc)[:80]})") from None
        if manifest.schema_version > MANIFEST_SCHEMA:
            raise StoreError(self.url, f"manifest schema {manifest.schema_version} is newer than this blocknerf ({MANIFEST_SCHEMA})")
        return manifest

    def publish(
        self,
        versions: Mapping[str, int],
        *,
        records: int | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Atomically point the manifest at complete versions (block id -> version) and, when given,
        at a complete records revision; ``config`` replaces the stored configuration in the same
        write. Readers see all of it or none of it."""
        self._require_writable()
        current = self.manifest()
        blocks = dict(current.blocks)
        now = utc_now()
        for block_id, version in versions.items():
            info = self.version_info(block_id, version)
            if info is None:
                raise StoreError(self.url, f"block {block_id} version {version} is not complete; not publishing it")
            old = blocks.get(block_id)
            if old is not None and old.version == version:
                continue
            history = () if old is None else (*self.published_history(block_id, old), old.version)
            blocks[block_id] = PublishedBlock(version=version, published_at=now, checksum=info.checksum, history=history)
        if records is not None and records not in self.records_revisions():
            raise StoreError(self.url, f"records revision {records} is not complete; not publishing it")
        new = Manifest(
            blocks=blocks, objects=current.objects, serial=current.serial + 1,
            records=current.records if records is None else records,
        )
        changes: dict[str, Any] = {"manifest": new.to_dict()}
        if config is not None:
            changes["config"] = dict(config)
        self._write_root_attrs(changes)
        return new

    def published_history(self, block_id: str, entry: PublishedBlock) -> tuple[int, ...]:
        """Versions of a block published before ``entry``, oldest first. For manifests that did not
        record it, every complete version older than the published one counts."""
        if entry.history is not None:
            return entry.history
        return tuple(v.version for v in self.versions(block_id) if v.version < entry.version)

    def _write_root_attrs(self, changes: Mapping[str, Any]) -> None:
        # One write of the whole zarr.json: atomic, so readers see all of it or none of it.
        self._refuse_if_leased_elsewhere()
        root = self._fresh_root()
        attrs = dict(root.attrs)
        attrs.update(changes)
        if armed("during_manifest_swap") and "manifest" in changes:
            if is_local(self.url):
                leave_torn_write(local_path(self.url), attrs)
            # On object storage the PUT of zarr.json replaces the object whole or not at all: dying
            # here is dying at any moment before the PUT completes.
            fault_point("during_manifest_swap")
        try:
            root.attrs.put(attrs)
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write ({reason(exc)})") from None
