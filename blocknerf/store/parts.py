"""The base that the parts of ``BlockStore`` share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zarr

from blocknerf.store.manifest import Manifest, PublishedBlock
from blocknerf.store.conditional import StoreObjects

__all__ = ["StoreParts"]


class StoreParts:
    """What the parts of ``BlockStore`` share (mixins that each hold one concern of the store)."""

    url: str
    _root: zarr.Group
    writable: bool
    _known_versions: dict[tuple[str, int], Any]

    def _require_writable(self) -> None:  # pragma: no cover - implemented by BlockStore
        raise NotImplementedError

    def _write_root_attrs(self, changes: Mapping[str, Any]) -> None:  # pragma: no cover - implemented by BlockStore
        raise NotImplementedError

    def manifest(self) -> Manifest:  # pragma: no cover - implemented by BlockStore
        raise NotImplementedError

    def conditional_keys(self) -> StoreObjects:  # pragma: no cover - implemented by BlockStore
        raise NotImplementedError

    def _refuse_if_leased_elsewhere(self) -> None:  # pragma: no cover - implemented by BlockStore
        raise NotImplementedError

    def published_history(self, block_id: str, entry: PublishedBlock) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError
