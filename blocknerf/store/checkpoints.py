"""Training checkpoints of a block: ``blocks/<id>/checkpoints/s<step>``, newest kept."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from blocknerf.errors import StoreError
from blocknerf.store.backend import reason, utc_now, write_arrays
from blocknerf.store.deletion import child_groups, delete_group
from blocknerf.store.parts import StoreParts

__all__ = ["Checkpoint", "CheckpointsPart"]

_CKPT_RE = re.compile(r"^s(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    """A training checkpoint: arrays (weights, optimiser state, RNG) and JSON attributes."""

    step: int
    arrays: dict[str, np.ndarray]
    attrs: Mapping[str, Any]



class CheckpointsPart(StoreParts):
    """Saving and resuming training checkpoints (a part of ``BlockStore``)."""

    def save_checkpoint(self, block_id: str, step: int, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
        """Write a complete checkpoint, then delete older ones (one complete checkpoint always exists)."""
        self._require_writable()
        group = self._root.require_group(f"blocks/{block_id}/checkpoints")
        name = f"s{step:09d}"
        try:
            delete_group(self.url, group, name)
            target = group.create_group(name)
            write_arrays(target, arrays)
            target.attrs.put({**dict(attrs), "step": step, "created": utc_now(), "complete": True})
            for old in child_groups(group):
                if old != name and _CKPT_RE.match(old):
                    delete_group(self.url, group, old)
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write checkpoint of block {block_id} ({reason(exc)})") from None

    def latest_checkpoint(self, block_id: str) -> Checkpoint | None:
        """The newest complete checkpoint of a block, or None."""
        try:
            group = self._root[f"blocks/{block_id}/checkpoints"]
        except KeyError:
            return None
        steps = sorted((int(m.group(1)), name) for name in child_groups(group) if (m := _CKPT_RE.match(name)))
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
            # Each checkpoint first (each tombstoned before its chunks go), then the group.
            for name in child_groups(group["checkpoints"]):
                delete_group(self.url, group["checkpoints"], name)
            delete_group(self.url, group, "checkpoints")
