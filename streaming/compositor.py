"""The compositor: renders a view from the blocks around the camera and blends them.

Per view (Block-NeRF's recipe, made continuous in the camera position; see ``streaming.blend``):

1. select the blocks within range of the camera (``BlockStreamer.select``: inverse distance
   weights with a range taper, at most ``max_blocks``; always at least the nearest block);
2. when more than one block remains, render each at low resolution (``visibility_size`` pixels
   wide) and fade out blocks whose mean predicted visibility, weighted by opacity, is low;
3. render the remaining blocks at full resolution with their matched appearance codes and blend
   the colours with the normalised weights (per image, or per pixel scaled by each block's
   predicted visibility there).

Every block a frame needs is pinned in the cache for the frame (the prefetcher cannot evict it)
and leased only while it renders, so a budget of one block is enough to render any view.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from blocknerf.errors import StoreError
from streaming.blend import normalise, visibility_factors
from streaming.protocol import BlockKey, CameraView, RenderableBlock
from streaming.streamer import BlockStreamer, Snapshot

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.block_id,
            "version": self.version,
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
        }


class Compositor:
    """Renders camera views from a streamer's blocks (see the module docstring)."""

    def __init__(self, streamer: BlockStreamer) -> None:
        self.streamer = streamer
        self.cfg = streamer.cfg
        self._frames = 0

    def render(self, view: CameraView) -> CompositeFrame:
        """Render one view: select, test visibility, render and blend (see the module docstring)."""
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
        cache.pin({s.key for s in selection})
        geometric = np.array([s.weight for s in selection], dtype=np.float64)
        distances = np.array([s.candidate.distance_m for s in selection], dtype=np.float64)
        load_ms = {s.key: 0.0 for s in selection}
        render_ms = {s.key: 0.0 for s in selection}

        # Each block is leased once: its visibility test and, if it passes, its full render.
        test = len(selection) > 1 and self.cfg.visibility_threshold > 0.0
        low_view = CameraView(view.c2w, _low_res(view.intrinsics, self.cfg.visibility_size), exposure=view.exposure)
        vis = np.zeros(len(selection))
        renders: dict[BlockKey, RenderResult] = {}
        for i, s in enumerate(selection):
            lease = ExitStack()
            try:
                block = lease.enter_context(self._leased(s.key, load_ms))
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
                with self._leased(s.key, load_ms) as block:
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
        image = rgb.reshape(h, w, 3).clamp(0.0, 1.0).float().cpu().numpy()

        geo_norm = geometric / geometric.sum() if geometric.sum() > 0 else geometric
        uses = [
            BlockUse(
                s.key[0], s.key[1], s.candidate.distance_m, float(geo_norm[i]),
                None if visibility is None else float(visibility[i]), float(weights[i]),
                load_ms[s.key], render_ms[s.key],
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
        )

    def render_block(self, key: BlockKey, view: CameraView, snapshot: Snapshot | None = None) -> RenderResult:
        """One block's render of a whole view (per-ray outputs, (H*W,) rays in row-major pixel
        order), with its matched appearance code; for evaluation and comparisons."""
        snap = snapshot or self.streamer.snapshot
        with self._leased(key, {}) as block:
            return self._render_block(block, key, view, snap)

    # -- internals ------------------------------------------------------------------------------
    def _blend(self, renders: list[tuple[RenderResult, float]]) -> torch.Tensor:
        """Weighted sum of the blocks' colours, per image, or per pixel scaled by visibility."""
        if self.cfg.blend == "image":
            return sum(out.rgb * wi for out, wi in renders)  # type: ignore[return-value]
        acc = sum(out.rgb * (wi * out.visibility.clamp(0.0, 1.0))[:, None] for out, wi in renders)
        acc_w = sum(wi * out.visibility.clamp(0.0, 1.0) for out, wi in renders)
        fallback = sum(out.rgb * wi for out, wi in renders)
        seen = acc_w > 1e-6  # type: ignore[operator]
        return fallback.where(~seen[:, None], acc / acc_w.clamp(min=1e-6)[:, None])  # type: ignore[union-attr]

    @contextmanager
    def _leased(self, key: BlockKey, load_ms: dict[BlockKey, float]) -> Iterator[RenderableBlock]:
        """The block for ``key`` from the cache, leased for the duration; time spent getting it is
        added to ``load_ms[key]``."""
        cache = self.streamer.cache
        t0 = time.perf_counter()
        block = cache.acquire(key)
        load_ms[key] = load_ms.get(key, 0.0) + 1e3 * (time.perf_counter() - t0)
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


def _low_res(k: Intrinsics, width: int) -> Intrinsics:
    """The same camera ``width`` pixels wide (never wider than the view itself)."""
    width = min(width, k.width)
    height = max(2, round(width * k.height / k.width))
    return k.scaled(width, height)


__all__ = ["BlockUse", "CompositeFrame", "Compositor", "mean_visibility"]
