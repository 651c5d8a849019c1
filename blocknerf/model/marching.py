"""Placing samples along rays: a step schedule shared by all rays, and occupancy skipping.

Steps grow with distance: a minimum step near the camera, then Instant-NGP's cone marching
(``dt = t * cone_angle``), then steps that are uniform in contracted distance (``dt = t^2 / r * ds``)
where the contraction compresses space. Because the schedule depends on t only, it is computed
once per block; a ray's samples are the intervals whose (jittered) point lies in an occupied
cell. The native kernel and the torch path make the same decisions (the torch path is the
reference, and runs on CUDA).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import torch

from blocknerf.kernels.build import native_library
from blocknerf.model.bounds import contract
from blocknerf.model.config import SamplerConfig


def step_edges(cfg: SamplerConfig, radius: float) -> np.ndarray:
    """Interval edges t_0 < ... < t_K (world units) of the shared step schedule; (K+1,) float32."""
    t, far = cfg.near, cfg.far
    ds = 1.0 / cfg.contracted_steps  # contracted coordinates span [-2, 2]; the shell is 1 deep
    edges = [t]
    while t < far:
        t += max(cfg.min_step, t * cfg.cone_angle, t * t * ds)
        edges.append(min(t, far))
    return (np.asarray(edges, dtype=np.float64) * radius).astype(np.float32)


@dataclass(frozen=True)
class RaySamples:
    """Packed samples of R rays, sorted by ray then by distance."""

    ray_indices: torch.Tensor
    """(S,) int64 ray of each sample."""
    t: torch.Tensor
    """(S,) float32 distance of the sample point along its ray (world units)."""
    ds: torch.Tensor
    """(S,) float32 length of the sample's interval in contracted coordinates (the [-2, 2] cube).
    Density is integrated along the contracted ray: inside the block this is the normalised
    metric length, beyond it the shrinking length of the contracted shell, so distant matter must
    earn its opacity like near matter instead of getting it from huge metric steps."""
    x01: torch.Tensor
    """(S, 3) float32 contracted position in [0, 1]^3."""
    n_rays: int

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def select(self, keep: torch.Tensor) -> RaySamples:
        """The samples where the (S,) bool mask ``keep`` is set (order preserved)."""
        idx = keep.nonzero().squeeze(1)  # one scan of the mask, then cheap gathers
        pick = lambda a: a.index_select(0, idx)  # noqa: E731
        return RaySamples(pick(self.ray_indices), pick(self.t), pick(self.ds), pick(self.x01), self.n_rays)

    def counts(self) -> torch.Tensor:
        """(R,) int64 number of samples per ray."""
        return torch.bincount(self.ray_indices, minlength=self.n_rays)


def march(
    origins: torch.Tensor,
    directions: torch.Tensor,
    edges: torch.Tensor,
    occupancy: torch.Tensor,
    *,
    max_per_ray: int,
    jitter: torch.Tensor | None = None,
    backend: str = "auto",
) -> RaySamples:
    """Samples in occupied cells along rays given in normalised block coordinates.

    origins, directions: (R, 3) float32 (directions scaled by the block normalisation, so that
    ``o + t d`` is the normalised point at world distance t); edges: (K+1,) float32;
    occupancy: (G, G, G) bool/uint8; jitter: (R,) in [0, 1) or None for interval midpoints.
    backend: "fast" (native), "reference" (torch) or "auto" (``kernels.native_library``'s rule).
    """
    lib = native_library("march", backend, device_type=origins.device.type)
    if lib is not None:
        return _march_native(_declared(lib), origins, directions, edges, occupancy, max_per_ray, jitter)
    return march_reference(origins, directions, edges, occupancy, max_per_ray=max_per_ray, jitter=jitter)


def march_reference(
    origins: torch.Tensor,
    directions: torch.Tensor,
    edges: torch.Tensor,
    occupancy: torch.Tensor,
    *,
    max_per_ray: int,
    jitter: torch.Tensor | None = None,
    chunk: int = 1024,
) -> RaySamples:
    """Plain torch marching (all candidate points of a chunk of rays at once); see ``march``."""
    n_rays, dev = origins.shape[0], origins.device
    edges = edges.to(dev)
    lo, hi = edges[:-1], edges[1:]
    occ = occupancy.to(dev).reshape(-1).bool()
    g = occupancy.shape[0]
    parts: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, n_rays, chunk):
        o, d = origins[start : start + chunk], directions[start : start + chunk]
        j = torch.full((o.shape[0], 1), 0.5, device=dev) if jitter is None else jitter[start : start + chunk, None]
        t = lo + j * (hi - lo)  # (r, K)
        x = contract(o[:, None, :] + t[..., None] * d[:, None, :])
        cell = (x * g).long().clamp_(max=g - 1)
        mask = occ[(cell[..., 0] * g + cell[..., 1]) * g + cell[..., 2]]
        mask &= torch.cumsum(mask, dim=1) <= max_per_ray
        r, k = mask.nonzero(as_tuple=True)
        at = lambda tt: contract(o[r] + tt[k, None] * d[r])  # noqa: E731
        ds = 4.0 * (at(hi) - at(lo)).norm(dim=-1)
        parts.append((r + start, t[r, k], ds, x[r, k]))
    if not parts:
        empty = torch.zeros(0, device=dev)
        return RaySamples(empty.long(), empty, empty, empty.reshape(0, 3), n_rays)
    r, t, ds, x = (torch.cat(p) for p in zip(*parts))
    return RaySamples(r, t.contiguous(), ds.contiguous(), x.contiguous(), n_rays)


def _march_native(
    lib: ctypes.CDLL,
    origins: torch.Tensor,
    directions: torch.Tensor,
    edges: torch.Tensor,
    occupancy: torch.Tensor,
    max_per_ray: int,
    jitter: torch.Tensor | None,
) -> RaySamples:
    n_rays = origins.shape[0]
    o = origins.detach().float().contiguous()
    d = directions.detach().float().contiguous()
    e = edges.detach().float().contiguous()
    occ = occupancy.to(torch.uint8).contiguous()
    j = None if jitter is None else jitter.detach().float().contiguous()
    g = occupancy.shape[0]
    threads = torch.get_num_threads()
    counts = torch.empty(n_rays, dtype=torch.int64)
    common = (
        ctypes.c_int64(n_rays), _ptr(o), _ptr(d), _ptr(e), ctypes.c_int64(e.numel()),
        None if j is None else _ptr(j), _ptr(occ), ctypes.c_int64(g), ctypes.c_int64(max_per_ray),
    )
    lib.march_count(*common, _ptr(counts), ctypes.c_int(threads))
    offsets = torch.cumsum(counts, 0) - counts
    total = int(counts.sum())
    ray_idx = torch.empty(total, dtype=torch.int64)
    t = torch.empty(total, dtype=torch.float32)
    ds = torch.empty(total, dtype=torch.float32)
    x = torch.empty(total, 3, dtype=torch.float32)
    lib.march_fill(*common, _ptr(offsets), _ptr(ray_idx), _ptr(t), _ptr(ds), _ptr(x), ctypes.c_int(threads))
    return RaySamples(ray_idx, t, ds, x, n_rays)


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _declared(lib: ctypes.CDLL) -> ctypes.CDLL:
    """``lib`` with the kernel's void entry points declared."""
    for fn in (lib.march_count, lib.march_fill):
        fn.restype = None
    return lib
