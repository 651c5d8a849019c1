"""Loading a block version for rendering: its bake where it has one and it is wanted, else its network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


from blocknerf.model.baked_block import HEAD_ARRAYS, BakedBlock
from blocknerf.model.baked_grid import PREFIX

RENDERERS = ("baked", "neural")
"""``baked``: a version's bake where it has one, its network otherwise; ``neural``: the network."""


def renders_baked(attrs: Mapping[str, Any], renderer: str, device: Any = "cpu") -> bool:
    """Whether a version with ``attrs`` is rendered from its bake under ``renderer``."""
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r} (expected baked or neural)")
    return renderer == "baked" and "baked" in attrs


def baked_array(name: str) -> bool:
    """Whether a version's array ``name`` is needed to render its bake (grid, heads, codes)."""
    return name.startswith(PREFIX) or bool(HEAD_ARRAYS.match(name))


def baked_nbytes_estimate(store: Any, block_id: str, version: int) -> int:
    """Bytes a baked block will hold once loaded, from metadata (densities are stored as float16
    and held as float32; the occupancy mip is a 64th of the brick index at most)."""
    stored = store.version_nbytes(block_id, version, names=baked_array)
    density = store.version_nbytes(block_id, version, names=lambda n: n == f"{PREFIX}density")
    index = store.version_nbytes(block_id, version, names=lambda n: n == f"{PREFIX}brick_index")
    return int(stored + density + index // 4 + (1 << 12))


def load_renderable(store: Any, block_id: str, version: int, *, renderer: str = "baked", device: Any = "cpu") -> Any:
    """A ``BakedBlock`` or a ``BlockModel`` of one version, as ``renderer`` asks (``renders_baked``)."""
    info = store.version_info(block_id, version)
    if info is not None and renders_baked(info.attrs, renderer, device):
        arrays, attrs = store.read_version(block_id, version, names=baked_array)
        return BakedBlock.from_record(block_id, arrays, attrs, version=version)
    from blocknerf.model.block import load_block

    return load_block(store, block_id, version=version, device=device)


__all__ = ["RENDERERS", "baked_array", "baked_nbytes_estimate", "load_renderable", "renders_baked"]
