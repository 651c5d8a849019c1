"""Named JSON documents kept beside the blocks (e.g. matched appearance codes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zarr

from blocknerf.errors import StoreError
from blocknerf.store.backend import reason, utc_now
from blocknerf.store.parts import StoreParts

__all__ = ["DocumentsPart"]


class DocumentsPart(StoreParts):
    """Reading and replacing named documents (a part of ``BlockStore``)."""

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
            raise StoreError(self.url, f"cannot write document {name} ({reason(exc)})") from None
