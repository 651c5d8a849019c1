"""The compositor: renders a view from the blocks around the camera and blends them.

Per view (Block-NeRF's recipe, made continuous in the camera position; see ``streaming.blend``):

1. select the blocks within range of the camera (``BlockStreamer.select``: inverse distance
   weights with a range taper, at most ``max_blocks`` unless it is None; always at least the
   nearest block);
2. choose each block's level of detail (``streaming.levels``): the one its projected size needs,
   demoted while the frame's levels together exceed the memory budget. A block with no level
   loaded when the frame begins (a cold camera: the first frame, or a jump) draws at its coarsest
   level, so the frame never waits for fine levels; a block with some level loaded gets the
   planned level, loaded now while the frame's loads stay within ``lod_frame_load_ms``, else the
   finest level it has loaded below it. So later frames refine what a cold frame showed coarse
   (sooner with the prefetcher, which loads the wanted levels in the background). Once a frame's
   loads took more than ``lod_frame_load_ms``, blocks with nothing loaded wait for the next frames
   (the heaviest block always draws): a jump shows its nearest blocks at once;
3. when more than one block remains, render each at low resolution (``visibility_size`` pixels
   wide) and fade out blocks whose mean predicted visibility, weighted by opacity, is low;
4. render the remaining blocks at full resolution with their matched appearance codes and blend
   the colours with the normalised weights (per image, or per pixel scaled by each block's
   predicted visibility there);
4. when the manifest places objects (``blocknerf compose``), render each through the same block
   protocol and composite it with the blended scene by depth along each ray
   (``blocknerf.composition.depth``): objects are never blended by distance.

Every block a frame needs is pinned in the cache for the frame (the prefetcher cannot evict it)
and leased only while it renders, so a budget of one block is enough to render any view.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from blocknerf.errors import StoreError
from streaming.blend import normalise, visibility_factors
from streaming.levels import fit_levels
from streaming.protocol import BlockKey, CameraView, LevelKey, RenderableBlock
from streaming.streamer import BlockStreamer, Selection, Snapshot

if TYPE_CHECKING:
    import torch

    from blocknerf.capture.frames import Intrinsics
    from blocknerf.model.renderer import RenderResult


@dataclass(frozen=True, slots=True)
class BlockUse:
    """How one block contributed to a frame."""

    block_id: str
    version: int
    distance_m: float
    geometric_weight: float
    """Normalised weight from position alone (before the visibility test)."""
    visibility: float | None
    """Mean predicted visibility at low resolution (None: not tested, e.g. a lone block)."""
    weight: float
    """Final blend weight (the weights of a frame sum to 1)."""
    load_ms: float
    """Time spent getting the block from the cache (loading on a miss, waiting on a prefetch)."""
    render_ms: float
    """Time spent rendering the block (visibility test and full resolution)."""
    level: int | None = 0
    """Level of detail the block drew at (0 the coarsest); None: left out by the memory budget."""
    wanted_level: int = 0
    """Level the view needed (``streaming.levels``); above ``level`` while a finer one loads."""
    levels: int = 1
    """Levels of detail the block has."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.block_id,
            "version": self.version,
            "level": self.level,
            "wanted_level": self.wanted_level,
            "levels": self.levels,
            "distance_m": round(self.distance_m, 3),
            "geometric_weight": round(self.geometric_weight, 6),
            "visibility": None if self.visibility is None else round(self.visibility, 4),
            "weight": round(self.weight, 6),
            "load_ms": round(self.load_ms, 2),
            "render_ms": round(self.render_ms, 2),
        }


@dataclass(frozen=True)
class CompositeFrame:
    """A rendered view and how it was made."""

    rgb: np.ndarray
    """(H, W, 3) float32 colour in [0, 1]."""
    blocks: tuple[BlockUse, ...]
    """Every candidate block, the ones that were blended (weight > 0) first."""
    manifest_serial: int
    cache: dict[str, int]
    """Cache counter increments during the frame (hits, misses, evictions, prefetch hits, ...)."""
    load_ms: float
    render_ms: float
    frame_ms: float
    skipped: tuple[str, ...] = ()
    """Blocks the frame needed but left out because they are corrupt or unusable (``id vN``)."""
    resident_bytes: dict[int, int] | None = None
    """Bytes the cache held after the frame, per level of detail."""
    deferred: tuple[str, ...] = ()
    """Blocks left out of this cold frame to keep it fast (``id vN``; see ``Compositor._deferred``)."""

    @property
    def used(self) -> tuple[BlockUse, ...]:
        """The blocks blended into the frame (weight > 0)."""
        return tuple(b for b in self.blocks if b.weight > 0.0)

    @property
    def dominant(self) -> str:
        """Id of the block with the largest weight."""
        return max(self.blocks, key=lambda b: b.weight).block_id

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe statistics of the frame (without the pixels)."""
        return {
            "manifest_serial": self.manifest_serial,
            "blocks": [b.to_dict() for b in self.blocks],
            "cache": dict(self.cache),
            "load_ms": round(self.load_ms, 2),
            "render_ms": round(self.render_ms, 2),
            "frame_ms": round(self.frame_ms, 2),
            "skipped_blocks": list(self.skipped),
            "deferred_blocks": list(self.deferred),
            "resident_bytes_by_level": {str(k): v for k, v in (self.resident_bytes or {}).items()},
        }


class FrameCancelled(Exception):
    """A frame was given up because its ``cancelled`` callback said so (the camera moved on)."""


class Compositor:
    """Renders camera views from a streamer's blocks (see the module docstring)."""

    def __init__(self, streamer: BlockStreamer) -> None:
        self.streamer = streamer
        self.cfg = streamer.cfg
        self._frames = 0

    def render(self, view: CameraView, *, settled: bool = False, cancelled: Callable[[], bool] | None = None) -> CompositeFrame:
        """Render one view: select, choose levels, test visibility, render and blend (see the module
        docstring). ``settled``: draw every block at its planned level, loading what is missing
        now (the image the view settles to; for evaluation). ``cancelled``: asked before each
        block is drawn; when it says True the frame is given up (``FrameCancelled``), so a live
        view never waits for a frame nobody will see."""
        t_frame = time.perf_counter()
        if self._frames % self.cfg.manifest_refresh_frames == 0:
            self.streamer.refresh()
        self._frames += 1
        cache = self.streamer.cache
        snap = self.streamer.snapshot
        before = cache.counters()
        selection = self.streamer.select(view.position, snap)
        if not selection:
            raise StoreError(None, "no published blocks to render (train the store first)")
        skipped = [f"{s.key[0]} v{s.key[1]}" for s in selection if s.key in self.streamer.broken]
        selection = [s for s in selection if s.key not in self.streamer.broken]
        wanted, planned = self._plan_levels(selection, view)
        level_key = self.streamer.level_key
        cache.pin({level_key(s.key, k) for s, p in zip(selection, planned) if p is not None for k in {0, p}})
        geometric = np.array([s.weight if p is not None else 0.0 for s, p in zip(selection, planned)], dtype=np.float64)
        distances = np.array([s.candidate.distance_m for s in selection], dtype=np.float64)
        load_ms = {s.key: 0.0 for s in selection}
        render_ms = {s.key: 0.0 for s in selection}

        # Each block is leased once: its visibility test and, if it passes, its full render.
        test = len(selection) > 1 and self.cfg.visibility_threshold > 0.0
        low_view = CameraView(view.c2w, _low_res(view.intrinsics, self.cfg.visibility_size), exposure=view.exposure)
        vis = np.zeros(len(selection))
        renders: dict[BlockKey, RenderResult] = {}
        drawn: dict[BlockKey, int] = {}
        deferred: list[str] = []
        warm = {s.key for s in selection if any(level_key(s.key, k) in cache for k in range(len(self.streamer.levels(s.key))))}
        for i, s in enumerate(selection):
            if planned[i] is None:
                continue
            if cancelled is not None and cancelled():
                raise FrameCancelled(f"frame of {len(selection)} blocks given up after {i}")
            level = int(planned[i])  # type: ignore[arg-type]
            spent_ms = float(sum(load_ms.values()))
            if self._deferred(s.key, warm=s.key in warm, spent_ms=spent_ms, first=not drawn) and not settled:
                deferred.append(f"{s.key[0]} v{s.key[1]}")
                geometric[i] = 0.0
                continue
            drawn[s.key] = level if settled else self._level_to_draw(s.key, level, spent_ms, warm=s.key in warm)
            lease = ExitStack()
            try:
                block = lease.enter_context(self._leased(level_key(s.key, drawn[s.key]), load_ms))
            except StoreError as exc:  # corrupt or unusable: render without it (warned once)
                self.streamer.mark_broken(s.key, exc)
                skipped.append(f"{s.key[0]} v{s.key[1]}")
                geometric[i] = 0.0
                continue
            with lease:
                t0 = time.perf_counter()
                if test:
                    low = self._render_block(block, s.key, low_view, snap)
                    vis[i] = mean_visibility(low.visibility, low.opacity)
                factor = visibility_factors(vis[i : i + 1], threshold=self.cfg.visibility_threshold, ramp=self.cfg.visibility_ramp)[0]
                if not test or factor > 0.0:
                    renders[s.key] = self._render_block(block, s.key, view, snap)
                render_ms[s.key] += 1e3 * (time.perf_counter() - t0)
        visibility = vis if test else None
        factors = visibility_factors(vis, threshold=self.cfg.visibility_threshold, ramp=self.cfg.visibility_ramp) if test else None
        weights = normalise(geometric, factors, visibility, distances) if geometric.sum() > 0 else np.zeros_like(geometric)
        blended = [(s, float(wi)) for s, wi in zip(selection, weights) if wi > 0.0]
        for s, _ in blended:
            if s.key not in renders:  # every block failed the test: the one kept renders now
                with self._leased(level_key(s.key, drawn[s.key]), load_ms) as block:
                    t0 = time.perf_counter()
                    renders[s.key] = self._render_block(block, s.key, view, snap)
                    render_ms[s.key] += 1e3 * (time.perf_counter() - t0)

        h, w = view.intrinsics.height, view.intrinsics.width
        if not blended:  # every block near the view is corrupt: a black frame, counted in its stats
            import torch

            rgb = torch.zeros(h * w, 3)
        elif len(blended) == 1:
            rgb = renders[blended[0][0].key].rgb  # alone: the block's own image, bit for bit
        else:
            rgb = self._blend([(renders[s.key], wi) for s, wi in blended])
        placed = () if snap.objects is None else snap.objects.placed
        if placed:
            rgb = self._with_objects(rgb, [(renders[s.key], wi) for s, wi in blended], placed, view, snap)
        image = rgb.reshape(h, w, 3).clamp(0.0, 1.0).float().cpu().numpy()

        geo_norm = geometric / geometric.sum() if geometric.sum() > 0 else geometric
        uses = [
            BlockUse(
                s.key[0], s.key[1], s.candidate.distance_m, float(geo_norm[i]),
                None if visibility is None else float(visibility[i]), float(weights[i]),
                load_ms[s.key], render_ms[s.key], drawn.get(s.key), wanted[i], len(self.streamer.levels(s.key)),
            )
            for i, s in enumerate(selection)
        ]
        uses.sort(key=lambda u: (-u.weight, u.distance_m))
        after = cache.counters()
        return CompositeFrame(
            rgb=image,
            blocks=tuple(uses),
            manifest_serial=snap.serial,
            cache=after.minus(before),
            load_ms=float(sum(load_ms.values())),
            render_ms=float(sum(render_ms.values())),
            frame_ms=1e3 * (time.perf_counter() - t_frame),
            skipped=tuple(skipped),
            deferred=tuple(deferred),
            resident_bytes=self.streamer.resident_bytes_by_level(),
        )

    def render_block(self, key: BlockKey, view: CameraView, snapshot: Snapshot | None = None, *, level: int | None = None) -> RenderResult:
        """One block's render of a whole view (per-ray outputs, (H*W,) rays in row-major pixel
        order) at ``level`` of detail (None: its finest), with its matched appearance code; for
        evaluation and comparisons."""
        snap = snapshot or self.streamer.snapshot
        if level is None:
            level = len(self.streamer.levels(key)) - 1
        with self._leased(self.streamer.level_key(key, level), {}) as block:
            return self._render_block(block, key, view, snap)

    # -- internals ------------------------------------------------------------------------------
    def _blend(self, renders: list[tuple[RenderResult, float]], attr: str = "rgb") -> torch.Tensor:
        """Weighted sum of the blocks' colours (or another per-ray output, ``attr``), per image,
        or per pixel scaled by visibility."""
        values = [(getattr(out, attr).reshape(len(out.visibility), -1), out, wi) for out, wi in renders]
        if self.cfg.blend == "image":
            blended = sum(v * wi for v, _, wi in values)
        else:
            acc = sum(v * (wi * out.visibility.clamp(0.0, 1.0))[:, None] for v, out, wi in values)
            acc_w = sum(wi * out.visibility.clamp(0.0, 1.0) for _, out, wi in values)
            fallback = sum(v * wi for v, _, wi in values)
            seen = acc_w > 1e-6  # type: ignore[operator]
            blended = fallback.where(~seen[:, None], acc / acc_w.clamp(min=1e-6)[:, None])  # type: ignore[union-attr]
        return blended if attr == "rgb" else blended.reshape(-1)  # type: ignore[union-attr]

    def _with_objects(
        self, rgb: torch.Tensor, renders: list[tuple[RenderResult, float]], placed: Any, view: CameraView, snap: Snapshot
    ) -> torch.Tensor:
        """The blended scene with the placed objects composited in by depth along each ray: the
        scene's depth and opacity are blended like its colour; objects are not blended with it."""
        from blocknerf.composition.depth import composite_by_depth
        from blocknerf.model.renderer import RenderResult

        if len(renders) == 1:
            scene = RenderResult(rgb, renders[0][0].depth, renders[0][0].opacity, renders[0][0].visibility)
        else:
            scene = RenderResult(rgb, self._blend(renders, "depth"), self._blend(renders, "opacity"), renders[0][0].visibility)
        layers = [scene]
        for obj in placed:
            if _in_front(obj.bounds, view):
                layers.append(self._render_block(obj, (obj.block_id, obj.version or 0), view, snap))
        return composite_by_depth(layers, background=placed[0].background).rgb

    def _plan_levels(self, selection: list[Selection], view: CameraView) -> tuple[list[int], list[int | None]]:
        """Per selected block, the level the view wants and the level to draw within the memory
        budget (None: left out); without ``stream.lod`` both are the finest."""
        wanted = self.streamer.wanted_levels(selection, float(view.intrinsics.fx))
        if not self.cfg.lod:
            return wanted, list(wanted)
        key = self.streamer.level_key
        nbytes = [[self.streamer.estimate_nbytes(key(s.key, k)) for k in range(len(self.streamer.levels(s.key)))] for s in selection]
        return wanted, fit_levels(wanted, nbytes, self.streamer.cache.max_bytes, drop=self.cfg.max_blocks is None)

    def _deferred(self, key: BlockKey, *, warm: bool, spent_ms: float, first: bool) -> bool:
        """Whether a block is left out of this frame: with ``stream.lod``, a block with no level
        loaded (not ``warm``) once the frame's loads took more than ``lod_frame_load_ms``, unless
        it would be the ``first`` block drawn. Blocks come in weight order, so a cold frame (a
        jump) shows its heaviest blocks at once and the next frames (or the prefetcher) bring in
        the rest; every frame loads at least one such block while any is missing."""
        if not self.cfg.lod or warm or first or spent_ms <= self.cfg.lod_frame_load_ms:
            return False
        return self.streamer.level_key(key, 0) not in self.streamer.cache

    def _level_to_draw(self, key: BlockKey, planned: int, spent_ms: float, *, warm: bool) -> int:
        """``planned`` when it is loaded, or when the block is ``warm`` (some level of it was loaded
        when the frame began) and the frame may still load (``lod_frame_load_ms``); else the finest
        loaded level below it, else the coarsest (which the frame then loads)."""
        cache = self.streamer.cache
        if not self.cfg.lod or planned == 0 or self.streamer.level_key(key, planned) in cache:
            return planned
        if warm and spent_ms < self.cfg.lod_frame_load_ms:
            return planned
        return next((k for k in range(planned - 1, 0, -1) if self.streamer.level_key(key, k) in cache), 0)

    @contextmanager
    def _leased(self, key: LevelKey, load_ms: dict[BlockKey, float]) -> Iterator[RenderableBlock]:
        """The level ``key`` of a block from the cache, leased for the duration; time spent getting
        it is added to ``load_ms`` of its block."""
        cache = self.streamer.cache
        t0 = time.perf_counter()
        block = cache.acquire(key)
        load_ms[key[:2]] = load_ms.get(key[:2], 0.0) + 1e3 * (time.perf_counter() - t0)  # type: ignore[index]
        try:
            yield block
        finally:
            cache.release(key)

    def _render_block(self, block: RenderableBlock, key: BlockKey, view: CameraView, snap: Snapshot) -> RenderResult:
        import torch

        from blocknerf.capture.rays import image_rays
        from blocknerf.model.renderer import Rays, RenderResult

        device = getattr(block, "device", torch.device("cpu"))
        from blocknerf.kernels.build import torch_threads

        with torch_threads(1):  # small ops: see torch_threads
            origins, dirs, _ = image_rays(np.array(view.c2w), view.intrinsics, device)
        code = self.streamer.appearance_code(key, block, snap)
        log2e = math.log2(view.exposure) if view.exposure else None
        chunk = self.cfg.chunk_rays
        outs = []
        for s in range(0, origins.shape[0], chunk):
            o, d = origins[s : s + chunk], dirs[s : s + chunk]
            n = o.shape[0]
            codes = None if code is None else code.to(device).expand(n, -1)
            exposure = None if log2e is None else torch.full((n,), log2e, device=device)
            outs.append(block.render_rays(Rays(o, d, codes, exposure)))
        if len(outs) == 1:
            return outs[0]
        return RenderResult(*(torch.cat([getattr(o, k) for o in outs]) for k in ("rgb", "depth", "opacity", "visibility")))


def mean_visibility(visibility: Any, opacity: Any) -> float:
    """Opacity-weighted mean of per-ray predicted visibility (torch or numpy (R,) arrays): how much
    of what a block renders for a view it has actually seen; 0 when it renders nothing."""
    v = np.asarray(visibility.detach().cpu() if hasattr(visibility, "detach") else visibility, dtype=np.float64)
    a = np.asarray(opacity.detach().cpu() if hasattr(opacity, "detach") else opacity, dtype=np.float64)
    total = a.sum()
    if not total > 0.0 or not math.isfinite(total):
        return 0.0
    return float((v * a).sum() / total)


def _in_front(region: Any, view: CameraView) -> bool:
    """Whether any of a region's sphere lies in front of the camera (a cheap cull)."""
    to_centre = np.asarray(region.center, dtype=np.float64) - view.position
    forward = -view.c2w[:3, 2]
    return float(to_centre @ forward) > -float(region.radius)


def _low_res(k: Intrinsics, width: int) -> Intrinsics:
    """The same camera ``width`` pixels wide (never wider than the view itself)."""
    width = min(width, k.width)
    height = max(2, round(width * k.height / k.width))
    return k.scaled(width, height)


__all__ = ["BlockUse", "CompositeFrame", "Compositor", "FrameCancelled", "mean_visibility"]
