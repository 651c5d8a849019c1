"""The manifest: which version of each block readers see, and which records revision."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MANIFEST_SCHEMA", "OBJECT_KINDS", "Manifest", "PublishedBlock", "PublishedObject"]

MANIFEST_SCHEMA = 3
"""Version 2 added the records revision and each block's publication history; version 3 the
placed objects and erased regions (``objects``). Older manifests read as having none."""

OBJECT_KINDS = ("field", "erase")
"""``field``: a trained NeRF placed into the scene; ``erase``: a region whose matter is removed."""


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


@dataclass(frozen=True, slots=True)
class PublishedObject:
    """What the manifest says about one placed object or erased region.

    ``version`` names the object's stored arrays (``objects/<name>/v<k>``; 0 for an erase, which
    has none); ``placement`` is its pose record (JSON, see ``blocknerf.composition.placement``).
    Moving an object publishes a new placement with the same version; ``history`` keeps the
    entries published before this one, oldest first, so a rollback can restore any of them.
    """

    kind: str
    version: int
    placement: Mapping[str, Any]
    published_at: str
    checksum: str
    """Checksum of the object's arrays ("" for an erase)."""
    history: tuple[Mapping[str, Any], ...] = ()
    """Earlier entries (as ``to_dict`` without their own history), oldest first."""

    def to_dict(self, *, with_history: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "version": self.version,
            "placement": dict(self.placement),
            "published_at": self.published_at,
            "checksum": self.checksum,
        }
        if with_history:
            d["history"] = [dict(h) for h in self.history]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PublishedObject:
        return cls(
            str(d["kind"]), int(d["version"]), dict(d["placement"]), str(d["published_at"]), str(d.get("checksum", "")),
            tuple(dict(h) for h in d.get("history", ())),
        )


@dataclass(frozen=True)
class Manifest:
    """Block id -> published version, and the records revision; ``serial`` grows with every publication."""

    blocks: Mapping[str, PublishedBlock] = field(default_factory=dict)
    objects: Mapping[str, PublishedObject] = field(default_factory=dict)
    """Placed objects and erased regions by name (schema 3; empty in older manifests)."""
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
            "objects": {k: v.to_dict() for k, v in sorted(self.objects.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        return cls(
            blocks={k: PublishedBlock.from_dict(v) for k, v in d.get("blocks", {}).items()},
            objects={k: PublishedObject.from_dict(v) for k, v in d.get("objects", {}).items()},
            serial=int(d.get("serial", 0)),
            records=int(d.get("records", 0)),
            schema_version=int(d.get("schema_version", 1)),
        )
