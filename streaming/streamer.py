"""The block streamer: a block source (the store) + its manifest + the index + the LRU cache.

Readers resolve blocks through the manifest: the streamer keeps a *snapshot* (manifest serial,
block id -> published version, the index of published blocks, the matched appearance codes) and
re-reads the manifest when asked (the compositor asks every ``manifest_refresh_frames`` frames).
Cache keys are (block id, version), so an update that publishes new versions while a flythrough
renders is seen as whole new blocks from the next snapshot on, never as a mix within a frame;
versions that are no longer published leave the cache.

The cache holds levels of detail ((block id, version, level) keys, ``streaming.levels``): with
``stream.lod`` a view loads a block's coarse level first and finer ones as its projected size needs
them, and finer levels are evicted before coarse ones; without it every block loads at its finest
level (a whole block).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from dask.utils import format_bytes

from blocknerf.errors import StoreError
from streaming.appearance import AppearanceTable
from streaming.blend import geometric_weights
from streaming.cache import BlockCache
from streaming.config import StreamConfig
from streaming.index import BlockIndex, Candidate
from streaming.levels import level_for
from streaming.protocol import BlockKey, LevelKey, RenderableBlock


class BlockSource(Protocol):
    """Where blocks come from: the store, or a set of fake blocks in tests."""

    def published(self) -> tuple[int, Mapping[str, int]]:
        """(manifest serial, block id -> published version), as stored now."""
        ...

    def regions(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Ids, (B, 3) centres and (B,) radii of every planned block."""
        ...

    def levels(self, key: BlockKey) -> tuple[float, ...]:
        """World size of a voxel at each level of detail of a block, coarsest first (one entry for
        a block without levels), from metadata."""
        ...

    def estimate_nbytes(self, key: LevelKey) -> int:
        """Bytes one level of the block will take once loaded, from metadata (reads no block data)."""
        ...

    def load(self, key: LevelKey) -> RenderableBlock:
        """Load one level of one version of one block (reads only that level's arrays)."""
        ...

    def appearance_document(self) -> Mapping[str, Any] | None:
        """The stored appearance-matching document, or None."""
        ...

    # A source may also offer ``scene_objects() -> (serial, SceneObjects)``: the placed objects
    # and erased boxes of its manifest (``blocknerf.composition``); without it a scene has none.


class StoreSource:
    """Blocks of a ``blocknerf.store.BlockStore``, loaded as ``BlockModel`` onto ``device``."""

    def __init__(self, store: Any, device: Any = "cpu", renderer: str = "baked") -> None:
        self.store = store
        self.device = device
        self.renderer = renderer
        """``baked``: a version's bake where it has one (its neural model otherwise); ``neural``."""
        self._erased: tuple[Any, ...] | None = None
        """The erased boxes of the manifest ``published`` last read (None: not read yet)."""

    def _baked(self, key: BlockKey) -> bool:
        from blocknerf.model.loading import renders_baked

        info = self.store.version_info(*key)
        return info is not None and renders_baked(info.attrs, self.renderer, self.device)

    def published(self) -> tuple[int, Mapping[str, int]]:
        from blocknerf.composition.edits import erased_boxes

        manifest = self.store.manifest()
        self._erased = erased_boxes(manifest)
        return manifest.serial, {b: p.version for b, p in manifest.blocks.items()}

    def regions(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        plan = self.store.plan
        return list(plan.ids), plan.centers, plan.radii

    def levels(self, key: BlockKey) -> tuple[float, ...]:
        from blocknerf.model.loading import level_voxels_m

        info = self.store.version_info(*key)
        return (0.0,) if info is None else level_voxels_m(info.attrs, self.renderer)

    def estimate_nbytes(self, key: LevelKey) -> int:
        block_id, version, level = key
        if self._baked((block_id, version)):
            from blocknerf.model.loading import baked_nbytes_estimate

            return baked_nbytes_estimate(self.store, block_id, version, level)
        stored = self.store.version_nbytes(block_id, version)
        info = self.store.version_info(block_id, version)
        # Occupancy is stored as packed bits but held as one bool per cell once loaded.
        g = int(info.attrs.get("occupancy_resolution", 0)) if info is not None else 0
        return int(stored + g**3)

    def load(self, key: LevelKey) -> RenderableBlock:
        """The block at the key's level of detail (baked or neural, per ``renderer``), with the matter
        inside the erased boxes of the manifest the versions came from removed."""
        from blocknerf.composition.edits import erased_boxes
        from blocknerf.composition.placed import erase_predicate, restrict
        from blocknerf.model.loading import load_renderable

        boxes = self._erased if self._erased is not None else erased_boxes(self.store.manifest())
        block = load_renderable(self.store, key[0], key[1], renderer=self.renderer, device=self.device, level=key[2])
        return restrict(block, erase_predicate(boxes)) if boxes else block

    def appearance_document(self) -> Mapping[str, Any] | None:
        return self.store.read_document(AppearanceTable.DOCUMENT)

    def scene_objects(self) -> tuple[int, Any]:
        """(manifest serial, ``SceneObjects``): the placed objects, loaded, and the erased boxes."""
        from blocknerf.composition.edits import load_scene_objects

        manifest = self.store.manifest()
        return manifest.serial, load_scene_objects(self.store, manifest, device=self.device, renderer=self.renderer)


def _placed_bytes(objects: Any) -> int:
    """Bytes of the placed objects of a ``SceneObjects`` (0 for None)."""
    return 0 if objects is None else int(sum(int(o.nbytes) for o in objects.placed))


@dataclass(frozen=True)
class Snapshot:
    """What one frame renders from: one manifest's published versions and their index."""

    serial: int
    versions: Mapping[str, int]
    index: BlockIndex
    appearance: AppearanceTable = field(default_factory=AppearanceTable)
    objects: Any = None
    """``blocknerf.composition.SceneObjects`` (placed objects and erased boxes), or None: none."""

    def key(self, block_id: str) -> BlockKey:
        return (block_id, self.versions[block_id])


@dataclass(frozen=True, slots=True)
class Selection:
    """A candidate block for a view with its geometric (position-only) weight and cache key."""

    candidate: Candidate
    key: BlockKey
    weight: float
    """Unnormalised weight from distance, range taper and the top-k rule (``streaming.blend``)."""


class BlockStreamer:
    """Streams published blocks of a source within a memory budget (see the module docstring)."""

    def __init__(self, source: BlockSource, cfg: StreamConfig) -> None:
        cfg.validate()
        self.source = source
        self.cfg = cfg
        self.cache: BlockCache[RenderableBlock] = BlockCache(
            cfg.memory_budget_bytes, load=source.load, estimate=source.estimate_nbytes, evict_first=lambda key: key[2]
        )
        self._levels: dict[BlockKey, tuple[float, ...]] = {}
        self._regions: dict[str, tuple[np.ndarray, float]] = {}
        self._read_regions()
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self.broken: dict[BlockKey, str] = {}
        """Blocks that failed to load (corrupt or unusable) -> the one-line reason; renders leave them out."""
        self.refresh()

    @classmethod
    def open(cls, store: Any, cfg: StreamConfig, *, device: Any = None) -> BlockStreamer:
        """A streamer over a BlockStore (or its URL, opened read-only); ``device``: the config's."""
        from blocknerf.model.block import pick_device
        from blocknerf.store import BlockStore

        if isinstance(store, str) or hasattr(store, "__fspath__"):
            store = BlockStore.open(store)
        return cls(StoreSource(store, pick_device(device or cfg.device), cfg.renderer), cfg)

    # -- manifest -------------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot (replaced, never changed, by ``refresh``)."""
        with self._lock:
            assert self._snapshot is not None
            return self._snapshot

    def refresh(self) -> bool:
        """Re-read the manifest; on a new serial, index the published blocks anew, reload the
        appearance codes and evict superseded versions. True when the serial changed."""
        serial, versions = self.source.published()
        with self._lock:
            if self._snapshot is not None and self._snapshot.serial == serial:
                return False
        if set(versions) - set(self._regions):
            self._read_regions()  # an update added blocks to the plan
        published = {b: int(v) for b, v in versions.items() if b in self._regions}
        ids = sorted(published)
        index = BlockIndex(
            ids,
            np.array([self._regions[b][0] for b in ids], dtype=np.float64).reshape(-1, 3),
            np.array([self._regions[b][1] for b in ids], dtype=np.float64),
        )
        doc = self.source.appearance_document()
        table = AppearanceTable.from_dict(doc) if doc else AppearanceTable()
        objects = self._scene_objects()
        self._charge_objects(objects)
        snap = Snapshot(serial, published, index, table, objects)
        with self._lock:
            previous, self._snapshot = self._snapshot, snap
        erases = () if objects is None else objects.erases
        if previous is not None and erases != (() if previous.objects is None else previous.objects.erases):
            self.cache.clear()  # blocks loaded under other erased boxes
        self.cache.discard(lambda key: published.get(key[0]) == key[1])
        return True

    @property
    def object_bytes(self) -> int:
        """Bytes of the current snapshot's placed objects, held beside the cache (taken off its budget)."""
        return _placed_bytes(self.snapshot.objects)

    def _charge_objects(self, objects: Any) -> None:
        """Placed objects are held beside the cache, for as long as the manifest places them: their
        bytes come off the memory budget the cache may fill (``object_bytes``)."""
        nbytes = _placed_bytes(objects)
        budget = self.cfg.memory_budget_bytes
        if nbytes >= budget:
            raise StoreError(None, f"the placed objects take {format_bytes(nbytes)}, the whole memory budget of {format_bytes(budget)}; "
                                   "raise it (--memory-budget, stream.memory_budget_mb)")
        self.cache.resize(budget - nbytes)

    def _scene_objects(self) -> Any:
        """The source's placed objects and erased boxes (None when it has none or offers none)."""
        reader = getattr(self.source, "scene_objects", None)
        if reader is None:
            return None
        _, objects = reader()
        return objects or None

    def _read_regions(self) -> None:
        ids, centers, radii = self.source.regions()
        self._regions = {b: (np.asarray(centers[i], dtype=np.float64), float(radii[i])) for i, b in enumerate(ids)}

    # -- selection ------------------------------------------------------------------------------
    def select(self, position: np.ndarray, snapshot: Snapshot | None = None) -> list[Selection]:
        """Candidate blocks for a camera at ``position`` (3,) with their geometric weights, largest
        first; blocks of weight 0 are left out (there is at least one block unless none is
        published). Cheap: reads nothing."""
        snap = snapshot or self.snapshot
        cands = snap.index.query(position, range_factor=self.cfg.range_factor)
        if not cands:
            return []
        w = geometric_weights(
            np.array([c.distance_m for c in cands]),
            np.array([c.radius_m for c in cands]),
            power=self.cfg.idw_power,
            range_factor=self.cfg.range_factor,
            taper=self.cfg.range_taper,
            max_blocks=len(cands) if self.cfg.max_blocks is None else self.cfg.max_blocks,
        )
        picked = [Selection(c, snap.key(c.block_id), float(wi)) for c, wi in zip(cands, w) if wi > 0.0]
        if not picked:
            # Out of range of every block: the nearest one alone.
            picked = [Selection(cands[0], snap.key(cands[0].block_id), 1.0)]
        picked.sort(key=lambda s: (-s.weight, s.candidate.distance_m))
        return picked

    # -- levels of detail ------------------------------------------------------------------------
    def levels(self, key: BlockKey) -> tuple[float, ...]:
        """Voxel size of each level of a block, coarsest first (from metadata, remembered)."""
        with self._lock:
            known = self._levels.get(key)
        if known is None:
            known = tuple(float(v) for v in self.source.levels(key)) or (0.0,)
            with self._lock:
                self._levels[key] = known
        return known

    def level_key(self, key: BlockKey, level: int) -> LevelKey:
        """The cache key of one level of a block."""
        return (key[0], key[1], int(level))

    def wanted_levels(self, selection: list[Selection], focal_px: float | None) -> list[int]:
        """The level each selected block needs for a view of ``focal_px`` (``streaming.levels``):
        the finest without ``stream.lod``; the coarsest when the focal length is unknown."""
        total = sum(s.weight for s in selection)
        out = []
        for s in selection:
            voxels = self.levels(s.key)
            if not self.cfg.lod:
                out.append(len(voxels) - 1)
            elif focal_px is None:
                out.append(0)
            else:
                w = s.weight / total if total > 0 else 1.0
                out.append(level_for(voxels, s.candidate.distance_m, focal_px, weight=w, max_error_px=self.cfg.lod_pixel_error))
        return out

    def keys_along(self, positions: np.ndarray, snapshot: Snapshot | None = None, *, focal_px: float | None = None) -> list[LevelKey]:
        """Level keys the views at ``positions`` (K, 3) will need, in order of first need: per
        position, the coarse levels of its blocks before the finer levels they want (with
        ``focal_px``, the views' focal length in pixels; without it only the coarse levels)."""
        snap = snapshot or self.snapshot
        out: dict[LevelKey, None] = {}
        for p in np.asarray(positions, dtype=np.float64).reshape(-1, 3):
            sel = self.select(p, snap)
            wanted = self.wanted_levels(sel, focal_px)
            first = wanted if not self.cfg.lod else [0] * len(sel)
            for s, level in zip(sel, first):
                out.setdefault(self.level_key(s.key, level), None)
            for s, level in zip(sel, wanted):
                out.setdefault(self.level_key(s.key, level), None)
        return list(out)

    def appearance_code(self, key: BlockKey, block: RenderableBlock, snapshot: Snapshot | None = None) -> Any:
        """(A,) appearance code to render ``block`` with: its matched code, else its zero code."""
        snap = snapshot or self.snapshot
        code = snap.appearance.code(key)
        default = block.appearance_code(None)
        if code is None or default is None:
            return default
        if len(code) != int(default.shape[0]):
            from blocknerf.errors import InputError

            raise InputError(
                AppearanceTable.DOCUMENT,
                f"matched code of block {key[0]} v{key[1]} has {len(code)} values but the block's codes have "
                f"{int(default.shape[0])}; rerun `blocknerf match`",
            )
        import torch

        return torch.tensor(code, dtype=default.dtype, device=default.device)

    def mark_broken(self, key: BlockKey, error: BaseException) -> None:
        """Leave a block that failed to load out of every later frame, warning once (StoreWarning)."""
        import warnings

        from blocknerf.errors import StoreWarning

        if key in self.broken:
            return
        self.broken[key] = str(error)
        warnings.warn(f"{error}; rendering without block {key[0]} v{key[1]}", StoreWarning, stacklevel=2)

    def estimate_nbytes(self, key: LevelKey) -> int:
        """Bytes one level of a block will be charged in the cache (from metadata)."""
        return self.cache.estimate(key)

    def resident_bytes_by_level(self) -> dict[int, int]:
        """Bytes the cache holds now, per level of detail."""
        out: dict[int, int] = {}
        for key, charge in self.cache.charges().items():
            out[key[2]] = out.get(key[2], 0) + charge
        return dict(sorted(out.items()))


__all__ = ["BlockSource", "BlockStreamer", "Selection", "Snapshot", "StoreSource"]
