"""The base that the parts of ``BlockStore`` share."""

from __future__ import annotations

import zarr

from blocknerf.store.manifest import Manifest, PublishedBlock
from blocknerf.store.objects import StoreObjects

__all__ = ["StoreParts"]


class StoreParts:
    """What the parts of ``BlockStore`` share (mixins that each hold one concern of the store)."""

    url: str
    _root: zarr.Group

    def _require_writable(self) -> None:  # pragma: no cover - implemented by BlockStore
        raise NotImplementedError

    def manifest(self) -> Manifest:  # pragma: no cover - implemented by BlockStore
        raise NotImplementedError

    def objects(self) -> StoreObjects:  # pragma: no cover - implemented by BlockStore
        raise NotImplementedError

    def _refuse_if_leased_elsewhere(self) -> None:  # pragma: no cover - implemented by BlockStore
        raise NotImplementedError

    def published_history(self, block_id: str, entry: PublishedBlock) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError
