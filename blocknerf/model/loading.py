"""Loading a block version for rendering: its bake where it has one and it is wanted, else its network.

A bake holds levels of detail (``bake.stored_levels``, coarsest first), each a separate set of
arrays, so one level loads alone: ``load_renderable(..., level=k)`` reads that level's grid and the
small colour heads, never the other levels or the hash tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from blocknerf.model.bake import stored_levels
from blocknerf.model.baked_block import HEAD_ARRAYS, BakedBlock
from blocknerf.model.baked_grid import GRID_ARRAYS, PREFIX

RENDERERS = ("baked", "neural")
"""``baked``: a version's bake where it has one, its network otherwise; ``neural``: the network."""


def renders_baked(attrs: Mapping[str, Any], renderer: str, device: Any = "cpu") -> bool:
    """Whether a version with ``attrs`` is rendered from its bake under ``renderer``."""
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r} (expected baked or neural)")
    return renderer == "baked" and "baked" in attrs


def baked_array(name: str) -> bool:
    """Whether a version's array ``name`` is needed to render its bake at its finest level (grid,
    heads, codes)."""
    return level_array(PREFIX)(name)


def level_array(prefix: str) -> Callable[[str], bool]:
    """A filter of a version's array names: one level's grid (``prefix``) and the heads and codes."""
    return lambda name: (name.startswith(prefix) and name[len(prefix) :] in GRID_ARRAYS) or bool(HEAD_ARRAYS.match(name))


def _level(attrs: Mapping[str, Any], level: int | None) -> dict[str, Any]:
    levels = stored_levels(attrs["baked"])
    if level is None:
        return levels[-1]
    if not 0 <= level < len(levels):
        raise ValueError(f"level {level} is not one of the bake's {len(levels)} levels")
    return levels[level]


def level_voxels_m(attrs: Mapping[str, Any], renderer: str = "baked") -> tuple[float, ...]:
    """World size of one voxel inside the block at each level of detail a version renders with,
    coarsest first: ``4 radius / resolution`` per baked level (the block is the inner half of the
    contracted cube); one entry, 0, for a version rendered from its network (a single level)."""
    if not renders_baked(attrs, renderer):
        return (0.0,)
    radius = float(attrs["bounds"]["radius"])
    return tuple(4.0 * radius / float(lv["resolution"]) for lv in stored_levels(attrs["baked"]))


def baked_nbytes_estimate(store: Any, block_id: str, version: int, level: int | None = None) -> int:
    """Bytes a baked block (at ``level``; None: the finest) will hold once loaded, from metadata
    (densities are stored as float16 and held as float32; the occupancy mip is a 64th of the brick
    index at most)."""
    info = store.version_info(block_id, version)
    baked, chosen = info.attrs["baked"], _level(info.attrs, level)
    if "heads_nbytes" in baked and "nbytes" in chosen:  # from the attributes alone, reading no array metadata
        brick = int(baked["brick"])
        index = 4 * (int(chosen["resolution"]) // brick) ** 3
        density = 2 * (brick + 1) ** 3 * int(chosen["bricks"])  # float16 stored, float32 held: twice the stored bytes
        return int(chosen["nbytes"] + baked["heads_nbytes"] + density + index // 4 + (1 << 12))
    prefix = chosen["prefix"]
    stored = store.version_nbytes(block_id, version, names=level_array(prefix))
    density = store.version_nbytes(block_id, version, names=lambda n: n == f"{prefix}density")
    index = store.version_nbytes(block_id, version, names=lambda n: n == f"{prefix}brick_index")
    return int(stored + density + index // 4 + (1 << 12))


def load_renderable(
    store: Any, block_id: str, version: int, *, renderer: str = "baked", device: Any = "cpu", level: int | None = None
) -> Any:
    """A ``BakedBlock`` (at ``level`` of detail, 0 the coarsest; None: the finest) or a
    ``BlockModel`` of one version, as ``renderer`` asks (``renders_baked``)."""
    info = store.version_info(block_id, version)
    if info is not None and renders_baked(info.attrs, renderer, device):
        prefix = _level(info.attrs, level)["prefix"]
        arrays, attrs = store.read_version(block_id, version, names=level_array(prefix))
        return BakedBlock.from_record(block_id, arrays, attrs, version=version, prefix=prefix)
    from blocknerf.model.block import load_block

    return load_block(store, block_id, version=version, device=device)


__all__ = ["RENDERERS", "baked_array", "baked_nbytes_estimate", "level_array", "level_voxels_m", "load_renderable", "renders_baked"]
