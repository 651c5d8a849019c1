"""A baked block's grid and how rays are rendered through it (native kernel + torch reference).

The grid is block-sparse over the contracted cube [0, 1]^3: ``N = M * B`` cells per axis, an index
grid of M^3 bricks (-1 where a brick is empty), and per occupied brick the (B+1)^3 vertices of its
cells (borders duplicated so that trilinear interpolation stays inside one brick) with a density
(float, per unit of contracted length, like the neural field) and F quantised features (uint8,
``feature = scale * q + offset`` per channel). An occupancy mip over the bricks (``coarse``, one
cell per C^3 bricks) lets the native renderer jump over empty space.

Rendering follows the neural renderer's step schedule (``marching.step_edges``: one sample at the
middle of each interval, density integrated over the interval's contracted length) and returns,
per ray, the weight-averaged features, the opacity and the depth; colour is decoded once per pixel
from the averaged features (deferred shading, SNeRG's idea) by the caller.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from blocknerf.kernels.build import native_library
from blocknerf.model.bounds import contract

PREFIX = "baked."
"""Names of baked arrays in a block version start with this."""
COARSE_BRICKS = 4
"""Bricks per axis of one cell of the occupancy mip."""
MAX_NATIVE_FEATURES = 64
"""Most features per vertex the native kernel takes (more, or a brick size that is not a power of
two: the torch reference renders)."""


@dataclass(frozen=True)
class BakedGrid:
    """The render-only grid of one block (see the module docstring); CPU tensors."""

    brick_index: torch.Tensor
    """(M, M, M) int32 brick of each brick cell, -1 when empty."""
    density: torch.Tensor
    """(nb, (B+1)^3) float32 vertex densities, >= 0."""
    features: torch.Tensor
    """(nb, (B+1)^3, F) uint8 quantised vertex features."""
    scale: torch.Tensor
    """(F,) float32 dequantisation scale."""
    offset: torch.Tensor
    """(F,) float32 dequantisation offset."""
    brick: int
    """B: cells per brick and axis."""
    coarse: torch.Tensor = field(init=False)
    """(Mc, Mc, Mc) uint8 occupancy mip: 1 where any of a cell's ``COARSE_BRICKS``^3 bricks exists."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "coarse", _coarse_mip(self.brick_index, COARSE_BRICKS))

    @property
    def resolution(self) -> int:
        """N: cells per axis over the contracted cube."""
        return int(self.brick_index.shape[0]) * self.brick

    @property
    def num_features(self) -> int:
        return int(self.features.shape[-1])

    @property
    def nbytes(self) -> int:
        """Bytes held in memory."""
        ts = (self.brick_index, self.density, self.features, self.scale, self.offset, self.coarse)
        return int(sum(t.numel() * t.element_size() for t in ts))

    def to_arrays(self, prefix: str = PREFIX) -> dict[str, np.ndarray]:
        """Arrays for the store (density as float16, the rest as held); ``prefix``: the level's
        (``bake.level_prefix``; the finest level is stored under ``PREFIX``)."""
        return {
            f"{prefix}brick_index": self.brick_index.numpy(),
            f"{prefix}density": self.density.numpy().astype(np.float16),
            f"{prefix}features": self.features.numpy(),
            f"{prefix}feature_scale": self.scale.numpy(),
            f"{prefix}feature_offset": self.offset.numpy(),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], brick: int, prefix: str = PREFIX) -> BakedGrid:
        """The grid of one level from a version's arrays (``has_baked_arrays`` must hold)."""
        get = lambda name: torch.from_numpy(np.ascontiguousarray(arrays[prefix + name]))  # noqa: E731
        return cls(
            brick_index=get("brick_index").to(torch.int32),
            density=get("density").float().contiguous(),
            features=get("features").to(torch.uint8),
            scale=get("feature_scale").float(),
            offset=get("feature_offset").float(),
            brick=int(brick),
        )

    def masked(self, keep: Callable[[torch.Tensor], torch.Tensor], *, chunk: int = 2048) -> BakedGrid:
        """This grid with zero density at every vertex where ``keep`` fails ((N, 3) float64
        contracted positions in [0, 1]^3 -> (N,) bool; evaluated once per vertex, in slices of
        ``chunk`` bricks), and the bricks left with no density dropped from the index, so the
        renderer skips them. Their arrays stay, unreferenced; the features are shared."""
        b, n, nb = self.brick, self.resolution, int(self.density.shape[0])
        cells = (self.brick_index >= 0).nonzero().to(torch.int64)
        origin = torch.zeros(nb, 3, dtype=torch.int64)  # first vertex of brick k, in grid cells
        origin[self.brick_index[cells[:, 0], cells[:, 1], cells[:, 2]].long()] = cells * b
        r = torch.arange(b + 1, dtype=torch.int64)
        local = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)  # storage order
        kept = torch.ones(self.density.shape, dtype=torch.bool)
        for s in range(0, nb, chunk):
            e = min(s + chunk, nb)
            x01 = (origin[s:e, None, :] + local[None]).double() / n
            kept[s:e] = keep(x01.reshape(-1, 3)).reshape(e - s, -1)
        density = torch.where(kept, self.density, torch.zeros_like(self.density)).contiguous()
        alive = (density > 0).any(dim=1)
        index = self.brick_index.clone()
        present = index >= 0
        index[present] = torch.where(alive[index[present].long()], index[present], torch.full_like(index[present], -1))
        return BakedGrid(index, density, self.features, self.scale, self.offset, self.brick)


GRID_ARRAYS = ("brick_index", "density", "features", "feature_scale", "feature_offset")
"""Names of one level's arrays after its prefix."""


def has_baked_arrays(names: object) -> bool:
    """Whether a version's array names include a bake."""
    return f"{PREFIX}brick_index" in names  # type: ignore[operator]


def _coarse_mip(brick_index: torch.Tensor, factor: int) -> torch.Tensor:
    """(Mc, Mc, Mc) uint8: 1 where any brick of a factor^3 group is occupied."""
    m = brick_index.shape[0]
    mc = -(-m // factor)
    occ = torch.zeros(mc * factor, mc * factor, mc * factor, dtype=torch.uint8)
    occ[:m, :m, :m] = (brick_index >= 0).to(torch.uint8)
    return occ.reshape(mc, factor, mc, factor, mc, factor).amax(dim=(1, 3, 5)).contiguous()


@dataclass(frozen=True)
class GridSamples:
    """Per-ray results of rendering a baked grid."""

    features: torch.Tensor
    """(R, F) weight-averaged dequantised features (0 where opacity is 0)."""
    opacity: torch.Tensor
    """(R,) accumulated opacity."""
    depth: torch.Tensor
    """(R,) expected distance along the ray, world units (0 where opacity is 0)."""


def render_grid(
    grid: BakedGrid,
    origins: torch.Tensor,
    directions: torch.Tensor,
    edges: torch.Tensor,
    *,
    t_stop: float,
    min_weight: float = 0.0,
    backend: str = "auto",
) -> GridSamples:
    """Render rays in normalised block coordinates (``BlockBounds.normalize_rays``) through ``grid``.

    origins, directions: (R, 3) float32; edges: (K+1,) float32 step schedule; t_stop: transmittance
    at which a ray stops; samples of weight <= ``min_weight`` are left out. backend: ``native_library``'s rule for the kernel ``baked``.
    """
    feat, opacity, depth = render_grid_means(grid, origins, directions, edges, t_stop=t_stop, min_weight=min_weight, backend=backend)
    hit = (opacity > 0)[:, None]
    features = torch.where(hit, feat * grid.scale.to(feat.device) + grid.offset.to(feat.device), torch.zeros_like(feat))
    return GridSamples(features, opacity, depth)


def render_grid_means(
    grid: BakedGrid,
    origins: torch.Tensor,
    directions: torch.Tensor,
    edges: torch.Tensor,
    *,
    t_stop: float,
    min_weight: float = 0.0,
    backend: str = "auto",
    threads: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``render_grid`` before dequantisation: (R, F) weight-averaged features in quantised units,
    (R,) opacity, (R,) depth (the averages are 0 where the opacity is 0). The baked block folds
    the dequantisation into its colour head instead of applying it per ray. ``threads``: the
    native kernel's threads (default ``torch.get_num_threads()``)."""
    lib = native_library("baked", backend, device_type=origins.device.type)
    if lib is not None and grid.num_features <= MAX_NATIVE_FEATURES and grid.brick & (grid.brick - 1) == 0:
        return _render_native(lib, grid, origins, directions, edges, t_stop, min_weight, normalise=True, threads=threads)
    feat, opacity, depth = render_grid_reference(grid, origins, directions, edges, t_stop=t_stop, min_weight=min_weight)
    safe = opacity.clamp(min=1e-10)
    hit = opacity > 0
    return (
        torch.where(hit[:, None], feat / safe[:, None], torch.zeros_like(feat)),
        opacity,
        torch.where(hit, depth / safe, torch.zeros_like(depth)),
    )


def render_grid_reference(
    grid: BakedGrid,
    origins: torch.Tensor,
    directions: torch.Tensor,
    edges: torch.Tensor,
    *,
    t_stop: float,
    min_weight: float = 0.0,
    chunk: int = 512,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain torch rendering (every interval of every ray, no skipping): the kernel's oracle.

    Returns (R, F) weighted sums of quantised features, (R,) opacity, (R,) weighted sums of t.
    """
    dev = origins.device
    n, b = grid.resolution, grid.brick
    b1 = b + 1
    edges = edges.to(dev).float()
    lo, hi = edges[:-1], edges[1:]
    mid = 0.5 * (lo + hi)
    index = grid.brick_index.to(dev).long().reshape(-1)
    density = grid.density.to(dev).reshape(-1)
    feats = grid.features.to(dev).reshape(-1, grid.num_features).float()
    m = grid.brick_index.shape[0]
    corners = [(i >> 2 & 1, i >> 1 & 1, i & 1) for i in range(8)]
    out_f, out_o, out_d = [], [], []
    for s in range(0, origins.shape[0], chunk):
        o, d = origins[s : s + chunk, None, :], directions[s : s + chunk, None, :]
        p = contract(o + mid[None, :, None] * d) * n
        c = p.long().clamp_(0, n - 1)
        fr = (p - c).clamp(0.0, 1.0)
        bc = torch.div(c, b, rounding_mode="floor")
        brick = index[(bc[..., 0] * m + bc[..., 1]) * m + bc[..., 2]]
        present = brick >= 0
        loc = c - bc * b
        base = brick.clamp(min=0) * b1**3 + (loc[..., 0] * b1 + loc[..., 1]) * b1 + loc[..., 2]
        sigma = torch.zeros_like(mid.expand(o.shape[0], -1))
        feat = torch.zeros(*sigma.shape, grid.num_features, device=dev)
        for cx, cy, cz in corners:
            wgt = (fr[..., 0] if cx else 1 - fr[..., 0]) * (fr[..., 1] if cy else 1 - fr[..., 1]) * (fr[..., 2] if cz else 1 - fr[..., 2])
            v = base + (cx * b1 + cy) * b1 + cz
            sigma = sigma + wgt * density[v]
            feat = feat + wgt[..., None] * feats[v]
        sigma = torch.where(present, sigma, torch.zeros_like(sigma))
        ds = 4.0 * (contract(o + hi[None, :, None] * d) - contract(o + lo[None, :, None] * d)).norm(dim=-1)
        tau = (sigma * ds).double()
        trans = torch.exp(-(torch.cumsum(tau, dim=1) - tau))
        w = trans * (1.0 - torch.exp(-tau))
        w = (w * ((trans > t_stop) & (w > min_weight))).float()
        out_f.append((w[..., None] * feat).sum(dim=1))
        out_o.append(w.sum(dim=1))
        out_d.append((w * mid).sum(dim=1))
    if not out_f:
        return origins.new_zeros(0, grid.num_features), origins.new_zeros(0), origins.new_zeros(0)
    return torch.cat(out_f), torch.cat(out_o), torch.cat(out_d)


def _render_native(
    lib: ctypes.CDLL, grid: BakedGrid, origins: torch.Tensor, directions: torch.Tensor, edges: torch.Tensor, t_stop: float, min_weight: float,
    *, normalise: bool = False, threads: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lib.baked_render.restype = ctypes.c_int
    r = origins.shape[0]
    o = origins.detach().float().contiguous()
    d = directions.detach().float().contiguous()
    e = edges.detach().float().contiguous()
    feat = torch.empty(r, grid.num_features, dtype=torch.float32)
    opacity = torch.empty(r, dtype=torch.float32)
    depth = torch.empty(r, dtype=torch.float32)
    coarse = grid.coarse
    rc = lib.baked_render(
        ctypes.c_int64(r), _ptr(o), _ptr(d), _ptr(e), ctypes.c_int64(e.numel()),
        _ptr(grid.brick_index), ctypes.c_int64(grid.brick_index.shape[0]), ctypes.c_int64(grid.brick),
        _ptr(grid.density), _ptr(grid.features), ctypes.c_int64(grid.num_features),
        _ptr(coarse), ctypes.c_int64(COARSE_BRICKS), ctypes.c_float(t_stop), ctypes.c_float(min_weight), ctypes.c_int(int(normalise)),
        _ptr(feat), _ptr(opacity), _ptr(depth), ctypes.c_int(threads or torch.get_num_threads()),
    )
    if rc != 0:
        raise RuntimeError(f"baked kernel failed ({rc}): it takes at most {MAX_NATIVE_FEATURES} features and power-of-two bricks")
    return feat, opacity, depth


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


__all__ = [
    "GRID_ARRAYS", "PREFIX", "BakedGrid", "GridSamples", "has_baked_arrays", "render_grid", "render_grid_means", "render_grid_reference",
]
