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

Readers resolve everything through the manifest: per block the published version (and the
versions published before it), and the records revision (capture record + plan) in use. Anything
new -- a version, a records revision -- is written completely first, under a name no reader uses,
and marked complete last; then the manifest (the root group's attributes) is replaced in a single
atomic write (zarr's local store writes a temporary file and renames it; object stores replace
objects atomically). A crash at any point therefore leaves the previous manifest, and everything
it names, intact. Only one process publishes at a time (the command that trains or updates);
workers write versions and checkpoints of distinct blocks, which never share keys.

Fault injection, for crash-safety tests only: when the environment variable ``BLOCKNERF_FAULT``
names one of ``FAULT_POINTS``, the process exits at once (``os._exit``, no cleanup, status
``FAULT_EXIT_CODE``) on reaching that point, leaving the store as a kill would. Unset -- the
default -- fault points do nothing.

No pickle: everything is numeric arrays plus JSON attributes, so a store is safe to open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from blocknerf.capture import Capture
from blocknerf.capture_io import capture_from_dict, capture_to_dict
from blocknerf.errors import StoreError
from partitioning import BlockPlan

FORMAT_VERSION = 1
MANIFEST_SCHEMA = 2
"""Version 2 added the records revision and each block's publication history."""
_VERSION_RE = re.compile(r"^v(\d+)$")
_CKPT_RE = re.compile(r"^s(\d+)$")
_RECORDS_RE = re.compile(r"^r(\d+)$")

FAULT_ENV = "BLOCKNERF_FAULT"
FAULT_EXIT_CODE = 86
FAULT_POINTS = ("during_training", "during_version_write", "during_manifest_swap")
"""Where ``BLOCKNERF_FAULT`` can stop a process: after a training step; with a version's arrays
written but not marked complete; halfway through writing the new manifest, every version complete
but unpublished (a torn temporary file is left)."""


def fault_point(name: str) -> None:
    """Exit the process at once when ``BLOCKNERF_FAULT`` names this point (crash-safety tests only)."""
    if os.environ.get(FAULT_ENV) == name:
        os._exit(FAULT_EXIT_CODE)


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (second precision)."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True, slots=True)
class PublishedBlock:
    """What the manifest says about one block: its published version and the ones before it."""

    version: int
    published_at: str
    checksum: str
    history: tuple[int, ...] | None = ()
    """Versions published earlier, oldest first; None in manifests written before it was recorded."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["history"] = None if self.history is None else list(self.history)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PublishedBlock:
        history = d.get("history")
        return cls(
            int(d["version"]), str(d["published_at"]), str(d["checksum"]),
            None if history is None else tuple(int(v) for v in history),
        )


@dataclass(frozen=True)
class Manifest:
    """Block id -> published version, and the records revision; ``serial`` grows with every publication."""

    blocks: Mapping[str, PublishedBlock] = field(default_factory=dict)
    serial: int = 0
    records: int = 0
    """Revision of the capture record and plan that readers use (0: the store's first)."""
    schema_version: int = MANIFEST_SCHEMA

    def version_of(self, block_id: str) -> int | None:
        entry = self.blocks.get(block_id)
        return None if entry is None else entry.version

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "serial": self.serial,
            "records": self.records,
            "blocks": {k: v.to_dict() for k, v in sorted(self.blocks.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        return cls(
            blocks={k: PublishedBlock.from_dict(v) for k, v in d.get("blocks", {}).items()},
            serial=int(d.get("serial", 0)),
            records=int(d.get("records", 0)),
            schema_version=int(d.get("schema_version", 1)),
        )


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
class Checkpoint:
    """A training checkpoint: arrays (weights, optimiser state, RNG) and JSON attributes."""

    step: int
    arrays: dict[str, np.ndarray]
    attrs: Mapping[str, Any]


@dataclass(frozen=True)
class GcResult:
    """What ``BlockStore.gc`` deleted."""

    versions: tuple[tuple[str, int], ...] = ()
    """(block id, version) pairs."""
    records: tuple[int, ...] = ()
    """Records revisions (capture record + plan) that no manifest names any more."""
    temporary: tuple[str, ...] = ()
    """Half-written temporary files that killed writes left (local stores; paths in the store)."""


def checksum_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays`` in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


class BlockStore:
    """A city's block store on a local path or any fsspec URL that zarr can open."""

    def __init__(self, url: str, root: zarr.Group, *, writable: bool) -> None:
        self.url = url
        self._root = root
        self.writable = writable

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
        if _is_local(url):
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
            raise StoreError(url, f"cannot create store ({_reason(exc)})") from None
        store = cls(url, root, writable=True)
        store._write_capture_into(root.require_group("capture"), capture, digest=_records_digest(capture, plan))
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
        if _is_local(url):
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
            raise StoreError(url, f"cannot open store ({_reason(exc)})") from None
        meta = root.attrs.get("blocknerf")
        if not isinstance(meta, dict) or "format" not in meta:
            raise StoreError(url, "not a blocknerf store (zarr.json has no 'blocknerf' attribute)")
        if int(meta["format"]) > FORMAT_VERSION:
            raise StoreError(url, f"store format {meta['format']} is newer than this blocknerf ({FORMAT_VERSION})")
        return cls(url, root, writable=writable)

    def _fresh_root(self) -> zarr.Group:
        """Re-open the root so attributes written by another process are seen."""
        return zarr.open_group(self.url, mode="r+" if self.writable else "r")

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(self.url, "store was opened read-only")

    # -- store-level records -------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration the store was created (or last updated) with."""
        return dict(self._fresh_root().attrs.get("config", {}))

    def set_config(self, config: Mapping[str, Any]) -> None:
        self._require_writable()
        self._write_root_attrs({"config": dict(config)})

    @property
    def plan(self) -> BlockPlan:
        """The published block plan."""
        return self.read_plan()

    @property
    def capture(self) -> Capture:
        """The published capture record (frames, poses, intrinsics); images are not checked."""
        return self.read_capture()

    def read_plan(self, records: int | None = None) -> BlockPlan:
        """The block plan of a records revision (default: the published one). Per-block frame
        lists come from arrays (they are large for big captures)."""
        group = self._records_group(records, "plan")
        doc = dict(group.attrs["plan"])
        ids = decode_strings(np.asarray(group["frame_ids_utf8"][...]), np.asarray(group["frame_ids_offsets"][...]))
        index = np.asarray(group["block_frames"][...])
        shares = np.asarray(group["block_shares"][...])
        offsets = np.asarray(group["block_offsets"][...])
        blocks = []
        for i, block in enumerate(doc["blocks"]):
            lo, hi = int(offsets[i]), int(offsets[i + 1])
            blocks.append({**block, "frames": [ids[j] for j in index[lo:hi]], "shares": shares[lo:hi].tolist()})
        return BlockPlan.from_dict({**doc, "blocks": blocks})

    def read_capture(self, records: int | None = None) -> Capture:
        """The capture record of a records revision (default: the published one)."""
        group = self._records_group(records, "capture")
        record = group.attrs
        return capture_from_dict(
            dict(record["transforms"]), root=Path(record["root"]), where=f"{self.url}/{group.path}", require_images=False
        )

    def write_records(self, capture: Capture, plan: BlockPlan) -> int:
        """Write a capture record and plan as a records revision, unpublished; return its number.

        When the published revision, or a complete unpublished one (left by an update that did not
        finish), holds the same content, that revision's number is returned and nothing is written.
        """
        self._require_writable()
        digest = _records_digest(capture, plan)
        published = self.manifest().records
        if self._records_digest_of(published) == digest:
            return published
        group = self._root.require_group("records")
        existing = sorted(int(m.group(1)) for m in map(_RECORDS_RE.match, group.group_keys()) if m)
        for revision in existing:
            attrs = group[f"r{revision}"].attrs
            if attrs.get("complete") and attrs.get("digest") == digest:
                return revision
        revision = max([published, *existing]) + 1
        try:
            target = group.create_group(f"r{revision}")
            self._write_capture_into(target.require_group("capture"), capture)
            self._write_plan_into(target.require_group("plan"), plan)
            target.attrs.put({"complete": True, "digest": digest, "created": utc_now()})
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write records revision {revision} ({_reason(exc)})") from None
        return revision

    def records_revisions(self) -> list[int]:
        """Complete records revisions, oldest first (0, the store's first, always exists)."""
        try:
            group = self._root["records"]
        except KeyError:
            return [0] if "plan" in self._root else []
        found = [int(m.group(1)) for m in map(_RECORDS_RE.match, group.group_keys()) if m]
        complete = [r for r in found if group[f"r{r}"].attrs.get("complete")]
        return sorted(([0] if "plan" in self._root else []) + complete)

    def _records_group(self, records: int | None, name: str) -> zarr.Group:
        revision = self.manifest().records if records is None else records
        if revision != 0 and revision not in self.records_revisions():
            raise StoreError(self.url, f"records revision {revision} is missing or incomplete")
        try:
            return self._root[_records_path(revision, name)]
        except KeyError:
            raise StoreError(self.url, f"records revision {revision} has no {name}") from None

    def _records_digest_of(self, revision: int) -> str | None:
        try:
            return self._root["capture" if revision == 0 else f"records/r{revision}"].attrs.get("digest")
        except KeyError:
            return None

    def _write_plan_into(self, group: zarr.Group, plan: BlockPlan) -> None:
        """The plan as JSON attrs for the blocks and arrays for their frame assignments."""
        doc = plan.to_dict()
        ids: dict[str, int] = {}
        index, shares, offsets = [], [], [0]
        for block in doc["blocks"]:
            index.extend(ids.setdefault(f, len(ids)) for f in block.pop("frames"))
            shares.extend(block.pop("shares"))
            offsets.append(len(index))
        utf8, id_offsets = encode_strings(list(ids))
        self._write_arrays(
            group,
            {
                "frame_ids_utf8": utf8,
                "frame_ids_offsets": id_offsets,
                "block_frames": np.asarray(index, dtype=np.int64),
                "block_shares": np.asarray(shares, dtype=np.float64),
                "block_offsets": np.asarray(offsets, dtype=np.int64),
            },
        )
        group.attrs.put({"plan": doc})

    @staticmethod
    def _write_capture_into(group: zarr.Group, capture: Capture, *, digest: str | None = None) -> None:
        doc = {"root": str(capture.root), "transforms": capture_to_dict(capture, capture.root)}
        group.attrs.put(doc if digest is None else {**doc, "digest": digest})

    @property
    def geo_origin(self) -> dict[str, float] | None:
        return self._root.attrs.get("geo_origin")

    # -- documents -----------------------------------------------------------------------------
    def read_document(self, name: str) -> dict[str, Any] | None:
        """A named JSON document kept beside the blocks (e.g. matched appearance codes), or None."""
        try:
            group = zarr.open_group(self.url, path=f"docs/{name}", mode="r")
        except (FileNotFoundError, KeyError):
            return None
        doc = group.attrs.get("document")
        return None if doc is None else dict(doc)

    def write_document(self, name: str, doc: Mapping[str, Any]) -> None:
        """Replace a named JSON document atomically (one write of one zarr.json)."""
        self._require_writable()
        try:
            self._root.require_group(f"docs/{name}").attrs.put({"document": dict(doc), "written": utc_now()})
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write document {name} ({_reason(exc)})") from None

    # -- manifest ------------------------------------------------------------------------------
    def manifest(self) -> Manifest:
        """The manifest as stored now (re-read on every call, so readers see new publications)."""
        manifest = Manifest.from_dict(self._fresh_root().attrs.get("manifest", {}))
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
        new = Manifest(blocks=blocks, serial=current.serial + 1, records=current.records if records is None else records)
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
        root = self._fresh_root()
        attrs = dict(root.attrs)
        attrs.update(changes)
        if os.environ.get(FAULT_ENV) == "during_manifest_swap" and "manifest" in changes and _is_local(self.url):
            _leave_torn_write(Path(self.url.removeprefix("file://")), attrs)
            fault_point("during_manifest_swap")
        try:
            root.attrs.put(attrs)
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write ({_reason(exc)})") from None

    # -- versions ------------------------------------------------------------------------------
    def block_ids(self) -> tuple[str, ...]:
        """Ids of the blocks in the plan."""
        return self.plan.ids

    def versions(self, block_id: str) -> list[VersionInfo]:
        """Complete versions of a block, oldest first (incomplete leftovers are ignored)."""
        group = self._block_group(block_id)
        if group is None:
            return []
        out = []
        for name in group.group_keys():
            m = _VERSION_RE.match(name)
            if m:
                attrs = dict(group[name].attrs)
                if attrs.get("complete"):
                    out.append(VersionInfo(block_id, int(m.group(1)), attrs))
        return sorted(out, key=lambda v: v.version)

    def version_info(self, block_id: str, version: int) -> VersionInfo | None:
        group = self._block_group(block_id)
        if group is None or f"v{version}" not in group:
            return None
        attrs = dict(group[f"v{version}"].attrs)
        return VersionInfo(block_id, version, attrs) if attrs.get("complete") else None

    def write_version(self, block_id: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> int:
        """Write a new complete version of a block (not yet published) and return its number."""
        self._require_writable()
        group = self._root.require_group(f"blocks/{block_id}")
        existing = [int(m.group(1)) for m in map(_VERSION_RE.match, group.group_keys()) if m]
        version = max(existing, default=0) + 1
        name = f"v{version}"
        try:
            target = group.create_group(name)
            self._write_arrays(target, arrays)
            fault_point("during_version_write")
            target.attrs.put(
                {**dict(attrs), "block_id": block_id, "version": version, "created": utc_now(),
                 "checksum": checksum_arrays(arrays), "complete": True}
            )
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write block {block_id} ({_reason(exc)})") from None
        return version

    def read_version(self, block_id: str, version: int, *, verify: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and attrs of one complete version; reads only that block's arrays."""
        info = self.version_info(block_id, version)
        if info is None:
            raise StoreError(self.url, f"block {block_id} has no complete version {version}")
        group = self._root[f"blocks/{block_id}/v{version}"]
        arrays = {name: np.asarray(arr[...]) for name, arr in group.arrays()}
        if verify and checksum_arrays(arrays) != info.checksum:
            raise StoreError(self.url, f"block {block_id} version {version} fails its checksum")
        return arrays, dict(info.attrs)

    def read_published(self, block_id: str, manifest: Manifest | None = None) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]:
        """The published version of a block: (version, arrays, attrs)."""
        manifest = manifest or self.manifest()
        version = manifest.version_of(block_id)
        if version is None:
            raise StoreError(self.url, f"block {block_id} has no published version (train it first)")
        arrays, attrs = self.read_version(block_id, version)
        return version, arrays, attrs

    def version_nbytes(self, block_id: str, version: int) -> int:
        """Bytes the version's arrays take in memory once loaded (from metadata; reads no data)."""
        group = self._root[f"blocks/{block_id}/v{version}"]
        return int(sum(arr.nbytes for _, arr in group.arrays()))

    def delete_version(self, block_id: str, version: int) -> None:
        """Delete one version; refuses to delete the published one."""
        self._require_writable()
        if self.manifest().version_of(block_id) == version:
            raise StoreError(self.url, f"block {block_id} version {version} is published; not deleting it")
        group = self._block_group(block_id)
        if group is not None and f"v{version}" in group:
            del group[f"v{version}"]

    def gc(self, keep: int, *, dry_run: bool = False) -> GcResult:
        """Delete what no reader needs; keep, per block, the published version and the ``keep - 1``
        versions published most recently before it.

        Deleted: older published versions, versions never published (left by a run that failed or
        was killed before publishing; rerunning it would have reused them), incomplete leftovers,
        every records revision but the published one, and the temporary files of killed writes. The published version of a block is
        never deleted. Run it while no training or update is writing to the store. ``dry_run``:
        only say what would be deleted.
        """
        self._require_writable()
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
            group = self._root[f"blocks/{block_id}"]
            for name in sorted(group.group_keys()):
                m = _VERSION_RE.match(name)
                if m and int(m.group(1)) not in kept:
                    if not dry_run:
                        del group[name]
                    deleted.append((block_id, int(m.group(1))))
        records: list[int] = []
        if "records" in self._root:
            group = self._root["records"]
            for name in sorted(group.group_keys()):
                m = _RECORDS_RE.match(name)
                if m and int(m.group(1)) != manifest.records:
                    if not dry_run:
                        del group[name]
                    records.append(int(m.group(1)))
        if manifest.records != 0 and "plan" in self._root:
            for name in ("capture", "plan"):
                if name in self._root and not dry_run:
                    del self._root[name]
            records.append(0)
        temporary: list[str] = []
        if _is_local(self.url):
            root = Path(self.url.removeprefix("file://"))
            for leftover in sorted(root.rglob("*.partial")):
                if not dry_run:
                    leftover.unlink(missing_ok=True)
                temporary.append(leftover.relative_to(root).as_posix())
        return GcResult(versions=tuple(deleted), records=tuple(sorted(records)), temporary=tuple(temporary))

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, block_id: str, step: int, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
        """Write a complete checkpoint, then delete older ones (one complete checkpoint always exists)."""
        self._require_writable()
        group = self._root.require_group(f"blocks/{block_id}/checkpoints")
        name = f"s{step:09d}"
        try:
            if name in group:
                del group[name]
            target = group.create_group(name)
            self._write_arrays(target, arrays)
            target.attrs.put({**dict(attrs), "step": step, "created": utc_now(), "complete": True})
            for old in list(group.group_keys()):
                if old != name and _CKPT_RE.match(old):
                    del group[old]
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write checkpoint of block {block_id} ({_reason(exc)})") from None

    def latest_checkpoint(self, block_id: str) -> Checkpoint | None:
        """The newest complete checkpoint of a block, or None."""
        try:
            group = self._root[f"blocks/{block_id}/checkpoints"]
        except KeyError:
            return None
        steps = sorted((int(m.group(1)), name) for name in group.group_keys() if (m := _CKPT_RE.match(name)))
        for step, name in reversed(steps):
            attrs = dict(group[name].attrs)
            if attrs.get("complete"):
                arrays = {k: np.asarray(a[...]) for k, a in group[name].arrays()}
                return Checkpoint(step=step, arrays=arrays, attrs=attrs)
        return None

    def clear_checkpoints(self, block_id: str) -> None:
        self._require_writable()
        group = self._block_group(block_id)
        if group is not None and "checkpoints" in group:
            del group["checkpoints"]

    # -- helpers -------------------------------------------------------------------------------
    def _block_group(self, block_id: str) -> zarr.Group | None:
        try:
            return self._root[f"blocks/{block_id}"]
        except KeyError:
            return None

    def _stored_block_ids(self) -> Iterable[str]:
        try:
            return list(self._root["blocks"].group_keys())
        except KeyError:
            return []

    @staticmethod
    def _write_arrays(group: zarr.Group, arrays: Mapping[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            a = np.ascontiguousarray(value)
            group.create_array(name, data=a, chunks=_chunks(a.shape, a.dtype.itemsize))


def encode_strings(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings -> (UTF-8 bytes as uint8, (N+1,) int64 offsets): portable zarr arrays for text."""
    encoded = [x.encode() for x in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in encoded])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def decode_strings(utf8: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Inverse of ``encode_strings``."""
    raw = utf8.tobytes()
    return [raw[offsets[i] : offsets[i + 1]].decode() for i in range(len(offsets) - 1)]


def _records_path(revision: int, name: str) -> str:
    return name if revision == 0 else f"records/r{revision}/{name}"


def _records_digest(capture: Capture, plan: BlockPlan) -> str:
    doc = [str(capture.root), capture_to_dict(capture, capture.root), plan.to_dict()]
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _leave_torn_write(root: Path, attrs: Mapping[str, Any]) -> None:
    """Fault injection: the half-written temporary file a kill inside zarr's atomic write leaves."""
    text = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": dict(attrs)})
    (root / f"zarr.{uuid.uuid4().hex}.partial").write_text(text[: len(text) // 2])


def _chunks(shape: tuple[int, ...], itemsize: int, target_bytes: int = 4 << 20) -> tuple[int, ...]:
    """Chunk along the first axis so one chunk holds about ``target_bytes``."""
    if not shape:
        return ()
    row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize or 1
    return (max(1, min(shape[0], target_bytes // row)), *shape[1:])


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
