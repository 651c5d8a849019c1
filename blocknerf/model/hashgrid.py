"""Multiresolution hash encoding (Instant-NGP) of points in the unit cube.

``L`` levels, each a table of ``T = 2**log2_table_size`` entries of ``F`` features. Level ``l`` is a
grid of resolution ``N_l = floor(base * b**l)`` vertices per axis over ``[0, 1]^3``, with growth
``b = exp((ln max - ln base) / (L - 1))`` (``b = 1`` when ``L == 1``), so the finest level has
``max_resolution`` vertices per axis (a relative 1e-9 guard keeps ``floor`` from losing a vertex to
float rounding: levels=2, base=2, max=64 computes 63.99999999999997, which must give 64).

For a point ``x`` (clamped to ``[0, 1]``; NaN coordinates count as 0) and a level of resolution
``N``: ``p = x * (N - 1)``, ``c = min(floor(p), N - 2)`` per axis (so ``c + 1 <= N - 1`` even at
``x = 1``), trilinear weights from ``frac = p - c``. Corner ``k`` in 0..7 is the vertex
``c + (k & 1, (k >> 1) & 1, (k >> 2) & 1)``. A vertex ``(ix, iy, iz)`` lives at

* ``ix + iy*N + iz*N**2`` when ``N**3 <= T`` (dense: coarse levels, no collisions), else
* ``(ix * 1 ^ iy * 2654435761 ^ iz * 805459861) mod T`` in uint32 arithmetic (the Instant-NGP
  spatial hash; T is a power of two, so ``mod T`` is ``& (T - 1)``).

The output of ``N`` points is ``(N, L*F)``, level-major: level 0's ``F`` features first.

Two implementations compute the same function:

* :func:`hash_encode_reference` -- plain vectorised torch (one Python loop over levels, none over
  samples), differentiable w.r.t. the table (and ``x``) by autograd, any device and float dtype.
* :func:`hash_encode_fast` -- the fused native CPU kernel ``blocknerf/kernels/hashgrid.c``
  (float32, OpenMP over ``torch.get_num_threads()`` threads). Its backward returns the dense table
  gradient ``(L, T, F)``, so torch's fused Adam can update the table directly. **It gives no
  gradient w.r.t. ``x``** (returns None): sample positions of a NeRF do not need one; use the
  reference path when they do. Producing a dense gradient means zeroing ``4*L*T*F`` bytes (32 MiB
  for the default config) per backward, a fixed cost that dominates small batches.

:class:`HashGridEncoding` picks one per ``HashGridConfig.backend``: ``"reference"``; ``"fast"``
(raises :class:`~blocknerf.kernels.KernelUnavailable` when the kernel cannot be built, and a
ValueError for non-CPU inputs); ``"auto"`` -- the fast path for CPU inputs when the kernel builds
(warning once and using the reference otherwise), and the reference path for CUDA or other device
inputs, since the native kernel is CPU-only. The rule is ``blocknerf.kernels.native_library``'s,
shared by every kernel.
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Sequence

import torch

from blocknerf.kernels.build import load_library, native_library
from blocknerf.model.config import HashGridConfig

__all__ = [
    "PRIMES",
    "HashGridEncoding",
    "grid_resolutions",
    "hash_encode_fast",
    "hash_encode_reference",
    "level_is_hashed",
    "resolve_backend",
]

PRIMES = (1, 2654435761, 805459861)
"""Per-axis multipliers of the spatial hash (x, y, z)."""


def grid_resolutions(levels: int, base_resolution: int, max_resolution: int) -> tuple[int, ...]:
    """Per-level grid resolutions ``floor(base * b**l)``, ``b = (max / base) ** (1 / (levels - 1))``."""
    if levels < 1 or base_resolution < 2 or max_resolution < base_resolution:
        raise ValueError("need levels >= 1 and 2 <= base_resolution <= max_resolution")
    growth = 1.0 if levels == 1 else math.exp((math.log(max_resolution) - math.log(base_resolution)) / (levels - 1))
    return tuple(int(math.floor(base_resolution * growth**level * (1.0 + 1e-9))) for level in range(levels))


def level_is_hashed(resolution: int, table_size: int) -> bool:
    """Whether a level of this resolution uses the spatial hash (``N**3 > T``) rather than dense indexing."""
    return resolution**3 > table_size


# --------------------------------------------------------------------------------------------------
# Reference path
# --------------------------------------------------------------------------------------------------


def _clamp_unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x, nan=0.0).clamp(0.0, 1.0)


def hash_encode_reference(x: torch.Tensor, table: torch.Tensor, resolutions: Sequence[int]) -> torch.Tensor:
    """Encode ``x`` (N, 3) with ``table`` (L, T, F) -> (N, L*F), in plain torch (see the module docstring).

    Differentiable w.r.t. ``table`` through autograd; works on any device and float dtype (``x`` is
    cast to the table's dtype).
    """
    _check_shapes(x, table, resolutions)
    levels, table_size, features = table.shape
    x = _clamp_unit(x.to(table.dtype))
    # Corner k's offset along each axis: bit 0 -> x, bit 1 -> y, bit 2 -> z.
    offsets = torch.tensor([[k & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)], device=x.device)  # (8, 3)
    upper = offsets.bool()
    encoded = []
    for level, res in enumerate(resolutions):
        p = x * (res - 1)  # (N, 3)
        corner = torch.floor(p).clamp(max=res - 2)
        frac = p - corner
        vertex = corner.long()[:, None, :] + offsets  # (N, 8, 3)
        weight = torch.where(upper, frac[:, None, :], 1.0 - frac[:, None, :]).prod(dim=-1)  # (N, 8)
        ix, iy, iz = vertex.unbind(dim=-1)
        if level_is_hashed(res, table_size):
            index = (ix * PRIMES[0] ^ iy * PRIMES[1] ^ iz * PRIMES[2]) & (table_size - 1)
        else:
            index = ix + iy * res + iz * (res * res)
        values = table[level][index]  # (N, 8, F)
        encoded.append((weight[..., None] * values).sum(dim=1))
    return torch.cat(encoded, dim=-1)


# --------------------------------------------------------------------------------------------------
# Fast path (native CPU kernel)
# --------------------------------------------------------------------------------------------------

_FLOAT_P = ctypes.POINTER(ctypes.c_float)
_INT32_P = ctypes.POINTER(ctypes.c_int32)
_KERNEL_ARGTYPES = [
    _FLOAT_P,  # x
    ctypes.c_int64,  # n
    _FLOAT_P,  # table (forward) / grad_out (backward)
    ctypes.c_int32,  # levels
    ctypes.c_int64,  # table_size
    ctypes.c_int32,  # features
    _INT32_P,  # resolutions
    _FLOAT_P,  # out (forward) / grad_table (backward)
    ctypes.c_int32,  # threads
]


@functools.cache
def _kernel() -> ctypes.CDLL:
    """The compiled kernel library with its signatures declared; raises KernelUnavailable."""
    lib = load_library("hashgrid")
    for name in ("hashgrid_forward", "hashgrid_backward"):
        fn = getattr(lib, name)
        fn.argtypes = _KERNEL_ARGTYPES
        fn.restype = ctypes.c_int
    return lib


def _ptr(t: torch.Tensor, kind=_FLOAT_P):
    return ctypes.cast(t.data_ptr(), kind)


def _check_shapes(x: torch.Tensor, table: torch.Tensor, resolutions: Sequence[int]) -> None:
    if x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"x must have shape (N, 3), got {tuple(x.shape)}")
    if table.dim() != 3:
        raise ValueError(f"table must have shape (L, T, F), got {tuple(table.shape)}")
    levels, table_size, _ = table.shape
    if table_size < 1 or table_size & (table_size - 1):
        raise ValueError(f"table size T must be a power of two, got {table_size}")
    if len(resolutions) != levels:
        raise ValueError(f"{len(resolutions)} resolutions for a table of {levels} levels")
    if any(int(r) < 2 for r in resolutions):
        raise ValueError(f"every resolution must be >= 2, got {tuple(resolutions)}")
    if x.device != table.device:
        raise ValueError(f"x is on {x.device} but the table is on {table.device}")


def _check_fast(x: torch.Tensor, table: torch.Tensor, resolutions: Sequence[int]) -> None:
    _check_shapes(x, table, resolutions)
    if x.device.type != "cpu":
        raise ValueError(f"the fast hash-grid kernel is CPU-only, got tensors on {x.device}")
    if x.dtype != torch.float32 or table.dtype != torch.float32:
        raise ValueError(f"the fast hash-grid kernel needs float32, got x {x.dtype} and table {table.dtype}")
    if table.shape[2] not in (1, 2, 4, 8):
        raise ValueError(f"features per level must be 1, 2, 4 or 8, got {table.shape[2]}")
    if table.shape[1] > 2**30 or any(int(r) > 2**30 for r in resolutions):
        raise ValueError("table size and resolutions must be at most 2**30")


def _call(fn, x: torch.Tensor, data: torch.Tensor, shape, resolutions, result: torch.Tensor) -> None:
    """Run a kernel entry point: ``data`` is the table (forward) or grad_out (backward), ``shape`` (L, T, F)."""
    levels, table_size, features = shape
    res = (ctypes.c_int32 * levels)(*(int(r) for r in resolutions))
    rc = fn(
        _ptr(x), x.shape[0], _ptr(data), levels, table_size, features, res, _ptr(result), torch.get_num_threads()
    )
    if rc != 0:  # unreachable after the Python-side checks
        raise RuntimeError(f"{fn.__name__} rejected its arguments (code {rc})")


class _HashEncodeFast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, resolutions: tuple[int, ...]) -> torch.Tensor:
        x = x.detach().contiguous()
        table_c = table.detach().contiguous()
        levels, table_size, features = table_c.shape
        out = torch.empty((x.shape[0], levels * features), dtype=torch.float32)
        _call(_kernel().hashgrid_forward, x, table_c, table_c.shape, resolutions, out)
        ctx.save_for_backward(x)
        ctx.table_shape = tuple(table_c.shape)
        ctx.resolutions = resolutions
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        grad_table = None
        if ctx.needs_input_grad[1]:
            grad_out = grad_out.to(torch.float32).contiguous()
            grad_table = torch.empty(ctx.table_shape, dtype=torch.float32)  # zeroed by the kernel
            _call(_kernel().hashgrid_backward, x, grad_out, ctx.table_shape, ctx.resolutions, grad_table)
        # No gradient w.r.t. x (see the module docstring) nor the resolutions.
        return None, grad_table, None


def hash_encode_fast(x: torch.Tensor, table: torch.Tensor, resolutions: Sequence[int]) -> torch.Tensor:
    """:func:`hash_encode_reference` by the native CPU kernel: float32 CPU tensors only.

    The backward returns the dense (L, T, F) table gradient and **no gradient w.r.t. x**. Raises
    KernelUnavailable when the kernel cannot be built, ValueError on bad shapes, dtypes or devices.
    """
    _check_fast(x, table, resolutions)
    return _HashEncodeFast.apply(x, table, tuple(int(r) for r in resolutions))


# --------------------------------------------------------------------------------------------------
# Module
# --------------------------------------------------------------------------------------------------


def resolve_backend(requested: str) -> str:
    """``"fast"`` or ``"reference"`` for a configured backend on CPU (``kernels.native_library``'s
    rule: ``"auto"`` falls back with one warning, ``"fast"`` raises when the kernel cannot be built)."""
    if native_library("hashgrid", requested) is None:
        return "reference"
    _kernel()
    return "fast"


class HashGridEncoding(torch.nn.Module):
    """Trainable multiresolution hash encoding: ``(N, 3)`` points in ``[0, 1]^3`` -> ``(N, L*F)``.

    Attributes: ``table`` (parameter, (L, T, F) float32), ``resolutions`` (per-level grid
    resolution), ``backend`` (the resolved CPU backend, ``"fast"`` or ``"reference"``; under
    ``"auto"``, inputs on other devices and non-float32 tables take the reference path),
    ``output_dim`` (L*F).
    """

    def __init__(self, cfg: HashGridConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.resolutions = grid_resolutions(cfg.levels, cfg.base_resolution, cfg.max_resolution)
        self.table_size = 2**cfg.log2_table_size
        self.output_dim = cfg.levels * cfg.features_per_level
        table = torch.empty(cfg.levels, self.table_size, cfg.features_per_level, dtype=torch.float32)
        self.table = torch.nn.Parameter(table.uniform_(-cfg.init_scale, cfg.init_scale))
        self.backend = resolve_backend(cfg.backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = self.table
        if self.backend == "fast" and x.device.type == table.device.type == "cpu" and table.dtype == torch.float32:
            return hash_encode_fast(x.to(torch.float32), table, self.resolutions)
        if self.cfg.backend == "fast":
            raise ValueError(
                f"hash-grid backend 'fast' is CPU/float32-only, got x on {x.device} and a {table.dtype} table on "
                f"{table.device}; use backend 'auto' or 'reference'"
            )
        return hash_encode_reference(x, table, self.resolutions)

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"levels={c.levels}, features={c.features_per_level}, table_size=2**{c.log2_table_size}, "
            f"resolutions={self.resolutions[0]}..{self.resolutions[-1]}, backend={self.backend}"
        )
