"""Baking the published versions of a store's blocks (``blocknerf bake``).

A published version is never changed in place (its checksum and its readers rely on it): baking
one writes a NEW version holding the same network arrays plus the baked ones, with
``reason: "bake"``, and publishes it. Publish, rollback and gc then treat network and bake as one
version, with no new mechanism.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from blocknerf.errors import StoreError
from blocknerf.model.bake import bake_block, frames_footprint_m
from blocknerf.model.baked_grid import PREFIX
from blocknerf.model.block import BlockModel
from blocknerf.model.config import BakeConfig
from blocknerf.updating.run import VERSION_KEYS


@dataclass(frozen=True, slots=True)
class BakeOutcome:
    """What ``bake_store`` did to one block."""

    block_id: str
    baked_from: int
    """The published version that was baked."""
    version: int | None
    """The new version (None: skipped)."""
    note: str = ""
    """Why a block was skipped."""


def bake_store(
    store: Any,
    cfg: BakeConfig,
    *,
    block_ids: Sequence[str] | None = None,
    force: bool = False,
    on_block: Callable[[BakeOutcome], None] | None = None,
) -> list[BakeOutcome]:
    """Bake the published version of each block (all published blocks when ``block_ids`` is None)
    that has no bake yet (or every one with ``force``), publishing all new versions at once."""
    manifest = store.manifest()
    ids = list(block_ids) if block_ids is not None else sorted(manifest.blocks)
    unknown = [b for b in ids if b not in manifest.blocks]
    if unknown:
        raise StoreError(store.url, f"no published version of block(s) {', '.join(unknown)} (train them first)")
    capture = store.read_capture()
    by_id = {f.id: f for f in capture.frames}
    outcomes: list[BakeOutcome] = []
    for block_id in ids:
        version, arrays, attrs = store.read_published(block_id, manifest)
        if "baked" in attrs and not force:
            outcome = BakeOutcome(block_id, version, None, "already baked (--force bakes again)")
        else:
            model = BlockModel.from_record(block_id, arrays, attrs, version=version)
            frames = [by_id[f] for f in model.image_ids if f in by_id] or [by_id[f] for f in attrs.get("frames", ()) if f in by_id]
            if not frames:
                raise StoreError(store.url, f"block {block_id}: none of its frames is in the capture record; cannot choose a bake resolution")
            baked, info = bake_block(model, cfg, footprint_m=frames_footprint_m(frames, model.bounds))
            network = {k: v for k, v in arrays.items() if not k.startswith(PREFIX)}
            kept = {k: v for k, v in attrs.items() if k not in VERSION_KEYS and k not in ("baked", "reason", "caused_by")}
            new = store.write_version(
                block_id, {**network, **baked}, {**kept, "baked": info, "reason": "bake", "caused_by": {"baked_from": version}}
            )
            outcome = BakeOutcome(block_id, version, new)
        outcomes.append(outcome)
        if on_block is not None:
            on_block(outcome)
    made = {o.block_id: o.version for o in outcomes if o.version is not None}
    if made:
        store.publish(made)
    return outcomes


__all__ = ["BakeOutcome", "bake_store"]
