"""Rendering rays through a block: march occupied space, drop what cannot be seen, composite.

Both paths first evaluate density alone at every marched sample (no gradients, cheap), compute
transmittance, and keep only samples that are still visible (early ray termination); the colour
MLP then runs only where the rendering weight is not negligible. Training repeats the density
evaluation with gradients on the kept samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from blocknerf.model.bounds import BlockBounds
from blocknerf.model.config import SamplerConfig
from blocknerf.model.field import BlockField
from blocknerf.model.marching import RaySamples, march
from blocknerf.model.volume import accumulate, depth_loss, distortion_loss, transmittance_and_weights


@dataclass(frozen=True)
class Rays:
    """A batch of world-space rays and the per-image inputs of the colour MLP."""

    origins: torch.Tensor
    """(R, 3) float32 world positions."""
    directions: torch.Tensor
    """(R, 3) float32 unit world directions."""
    appearance: torch.Tensor | None = None
    """(R, A) appearance codes, or None for the zero code (an unseen image)."""
    log2_exposure: torch.Tensor | None = None
    """(R,) log2 of the image exposure, or None (0: the reference exposure)."""

    def __len__(self) -> int:
        return int(self.origins.shape[0])

    def slice(self, start: int, stop: int) -> Rays:
        cut = lambda t: None if t is None else t[start:stop]  # noqa: E731
        return Rays(self.origins[start:stop], self.directions[start:stop], cut(self.appearance), cut(self.log2_exposure))

    def take(self, index: torch.Tensor) -> Rays:
        """The rays at ``index`` ((K,) int64 positions)."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return Rays(self.origins[index], self.directions[index], pick(self.appearance), pick(self.log2_exposure))


@dataclass(frozen=True)
class RenderResult:
    """Per-ray outputs of rendering."""

    rgb: torch.Tensor
    """(R, 3) colour in [0, 1], composited over the background."""
    depth: torch.Tensor
    """(R,) expected distance along the ray (world units; weighted by opacity)."""
    opacity: torch.Tensor
    """(R,) accumulated opacity (1 - final transmittance)."""
    visibility: torch.Tensor
    """(R,) predicted visibility of what the ray sees (Block-NeRF), in [0, 1]."""


@dataclass(frozen=True)
class TrainRender:
    """What a training step needs: differentiable colour and the visibility-head loss."""

    rgb: torch.Tensor
    opacity: torch.Tensor
    visibility_loss: torch.Tensor
    distortion_loss: torch.Tensor
    depth_loss: torch.Tensor
    """DS-NeRF depth loss against the batch's depths (0 when none were given)."""
    marched: int
    kept: int
    colored: int


class BlockRenderer:
    """Renders rays through one block's field (the model is passed in, never owned)."""

    def __init__(
        self, bounds: BlockBounds, sampler: SamplerConfig, edges: torch.Tensor, backend: str = "auto", background: float = 0.5
    ) -> None:
        self.bounds = bounds
        self.cfg = sampler
        self.edges = edges
        self.backend = backend
        # What shows through where a ray's samples leave transmittance: training against random
        # background colours makes their mean, mid grey, the least-error choice at render time.
        self.background = background

    def _march(self, rays: Rays, occupied: torch.Tensor, jitter: torch.Tensor | None) -> RaySamples:
        o, d = self.bounds.normalize_rays(rays.origins, rays.directions)
        return march(o, d, self.edges, occupied, max_per_ray=self.cfg.max_samples_per_ray, jitter=jitter, backend=self.backend)

    def _visible(self, field: BlockField, samples: RaySamples) -> tuple[RaySamples, torch.Tensor]:
        """Drop samples behind the point where the ray's transmittance vanishes."""
        with torch.no_grad():
            sigma = field.density_only(samples.x01)
            trans, _ = transmittance_and_weights(sigma * samples.ds, samples.ray_indices, samples.n_rays)
            keep = trans > self.cfg.early_stop_transmittance
        return samples.select(keep), sigma[keep]

    def render_train(
        self,
        field: BlockField,
        occupied: torch.Tensor,
        rays: Rays,
        generator: torch.Generator,
        *,
        depth: torch.Tensor | None = None,
        depth_sigma: float = 0.02,
    ) -> TrainRender:
        """Differentiable render of a training batch (stratified jitter from ``generator``).

        ``rgb`` is premultiplied (what the samples contribute); add ``(1 - opacity) * background``.
        ``depth``: (R,) measured distance along each ray (world units; NaN or inf: none) for the
        depth loss, whose Gaussian has width ``depth_sigma`` in contracted distance (block radii
        inside the block).
        """
        n = len(rays)
        jitter = torch.rand(n, generator=generator, device="cpu").to(rays.origins.device)
        marched = self._march(rays, occupied, jitter)
        samples, _ = self._visible(field, marched)
        sigma, geo = field.density(samples.x01)
        trans, weights = transmittance_and_weights(sigma * samples.ds, samples.ray_indices, n)
        color_ray, vis_ray, _ = field.ray_features(rays.directions, rays.appearance, rays.log2_exposure)
        colored = weights.detach() > self.cfg.min_weight
        idx = samples.ray_indices[colored]
        geo_c = geo[colored]
        rgb = accumulate(field.color(geo_c, color_ray, idx), weights[colored], idx, n)
        opacity = accumulate(weights, weights.new_ones(()).expand_as(weights), samples.ray_indices, n)
        # The visibility head learns the transmittance rendering computed (a detached target);
        # its loss must not shape the geometry, so it sees detached features.
        vis = field.visibility(geo_c.detach(), vis_ray, idx)
        vis_loss = torch.mean((vis - trans.detach()[colored]) ** 2) if idx.numel() else rgb.sum() * 0.0
        # Distortion loss in a contracted distance s = g(t / r) (linear inside the block, then 2 - r/t).
        mid = self._contracted_distance(samples.t)
        dist = distortion_loss(weights, mid, samples.ds, samples.ray_indices, n)
        if depth is None:
            dep = weights.sum() * 0.0
        else:
            dep = depth_loss(weights, mid, samples.ds, samples.ray_indices, self._contracted_distance(depth), depth_sigma)
        return TrainRender(rgb, opacity, vis_loss, dist, dep, len(marched), len(samples), int(idx.numel()))

    def _contracted_distance(self, t: torch.Tensor) -> torch.Tensor:
        """World distance -> s = g(t / r): linear inside the block, then 2 - r / t (inf stays inf)."""
        u = t / self.bounds.radius
        return torch.where(u <= 1.0, u, 2.0 - 1.0 / u.clamp(min=1.0))

    @torch.no_grad()
    def sample_counts(self, field: BlockField, occupied: torch.Tensor, rays: Rays) -> tuple[int, int]:
        """Samples that rendering ``rays`` marches (density evaluated) and colours; what a ray costs."""
        samples = self._march(rays, occupied, None)
        sigma = field.density_only(samples.x01) if len(samples) else samples.t
        trans, weights = transmittance_and_weights(sigma * samples.ds, samples.ray_indices, samples.n_rays)
        colored = (weights > self.cfg.min_weight) & (trans > self.cfg.early_stop_transmittance)
        return len(samples), int(colored.sum())

    @torch.no_grad()
    def render(self, field: BlockField, occupied: torch.Tensor, rays: Rays, *, chunk: int = 8192) -> RenderResult:
        """Render rays in chunks (memory bounded by ``chunk``), without gradients."""
        outs = [self._render_chunk(field, occupied, rays.slice(s, s + chunk)) for s in range(0, len(rays), chunk)]
        if not outs:
            z = rays.origins.new_zeros(0)
            return RenderResult(rays.origins.new_zeros(0, 3), z, z, z)
        return RenderResult(*(torch.cat([getattr(o, k) for o in outs]) for k in ("rgb", "depth", "opacity", "visibility")))

    def _render_chunk(self, field: BlockField, occupied: torch.Tensor, rays: Rays, slice_size: int = 1 << 18) -> RenderResult:
        n = len(rays)
        samples = self._march(rays, occupied, None)
        # One density pass (inference keeps the features it needs), in slices to bound memory.
        parts = [field.density(samples.x01[i : i + slice_size]) for i in range(0, len(samples), slice_size)]
        sigma = torch.cat([p[0] for p in parts]) if parts else samples.t.new_zeros(0)
        geo = torch.cat([p[1] for p in parts]) if parts else samples.t.new_zeros(0, field.cfg.field.geo_features)
        trans, weights = transmittance_and_weights(sigma * samples.ds, samples.ray_indices, n)
        keep = (weights > self.cfg.min_weight) & (trans > self.cfg.early_stop_transmittance)
        samples, weights, geo = samples.select(keep), weights[keep], geo[keep]
        idx = samples.ray_indices
        color_ray, vis_ray, _ = field.ray_features(rays.directions, rays.appearance, rays.log2_exposure)
        rgb = accumulate(field.color(geo, color_ray, idx), weights, idx, n)
        opacity = accumulate(weights, torch.ones_like(weights), idx, n)
        depth = accumulate(samples.t, weights, idx, n) / opacity.clamp(min=1e-6)
        vis = accumulate(field.visibility(geo, vis_ray, idx), weights, idx, n) / opacity.clamp(min=1e-6)
        rgb = rgb + (1.0 - opacity)[:, None] * self.background
        return RenderResult(rgb, depth, opacity, vis)
