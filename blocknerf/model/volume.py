"""Volume rendering of packed samples (rays of varying sample counts, sorted by ray).

For sample i of a ray with density sigma_i over an interval ds_i: alpha_i = 1 - exp(-sigma_i ds_i),
transmittance T_i = exp(-sum_{j<i} sigma_j ds_j), weight w_i = T_i alpha_i; a ray's colour is
sum_i w_i c_i. On CPU a native kernel does one pass per ray forward and one reverse pass backward;
the torch path (the reference, and CUDA's) takes prefix sums over the packed array in float64 (a
float32 running sum over many rays would lose the small per-ray values).
"""

from __future__ import annotations

import ctypes

import torch

from blocknerf.kernels.build import load_library, native_library


def transmittance_and_weights(
    sigma_dt: torch.Tensor, ray_indices: torch.Tensor, n_rays: int, *, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S,) optical thickness per sample -> (S,) transmittance before each sample, (S,) weights.

    ``ray_indices`` (S,) int64 must be sorted (samples grouped by ray, in order along the ray).
    Differentiable w.r.t. ``sigma_dt``. backend: "fast" (native, CPU float32), "reference" or "auto"
    (``kernels.native_library``'s rule; non-float32 inputs take the reference path under "auto").
    """
    if sigma_dt.dtype == torch.float32 or backend == "fast":
        lib = native_library("composite", backend, device_type=sigma_dt.device.type)
        if lib is not None:
            if sigma_dt.dtype != torch.float32:
                raise ValueError(f"native kernel 'composite' is float32-only, got {sigma_dt.dtype}")
            return _NativeComposite.apply(sigma_dt, ray_indices, n_rays)
    return transmittance_and_weights_reference(sigma_dt, ray_indices, n_rays)


def transmittance_and_weights_reference(
    sigma_dt: torch.Tensor, ray_indices: torch.Tensor, n_rays: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch version of ``transmittance_and_weights``."""
    if sigma_dt.numel() == 0:
        return sigma_dt.clone(), sigma_dt.clone()
    tau = sigma_dt.double()
    trans = torch.exp(-segment_exclusive_cumsum(tau, ray_indices, n_rays))
    weights = trans * (1.0 - torch.exp(-tau))
    return trans.to(sigma_dt.dtype), weights.to(sigma_dt.dtype)


def segment_exclusive_cumsum(values: torch.Tensor, ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """Per-ray exclusive prefix sums of packed (S,) values (sorted by ray), in float64.

    Computed as one running sum over the packed array minus each ray's starting value; the start
    is not detached, so the subtraction also cancels the gradient paths to earlier rays.
    """
    v = values.double()
    exclusive = torch.cumsum(v, dim=0) - v
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first = torch.zeros(n_rays, dtype=torch.int64, device=v.device)
    first[1:] = torch.cumsum(counts, 0)[:-1]
    start = exclusive[first.clamp(max=max(v.shape[0] - 1, 0))]
    return exclusive - start[ray_indices]


def distortion_loss(
    weights: torch.Tensor, midpoints: torch.Tensor, widths: torch.Tensor, ray_indices: torch.Tensor, n_rays: int
) -> torch.Tensor:
    """mip-NeRF 360's distortion loss, averaged over rays: it pulls each ray's weights together.

    L = sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 d_i for sample midpoints m and widths d along
    the ray (any monotone parametrisation; samples sorted by ray and distance), computed in O(S)
    as 2 sum_i w_i (m_i W_i - X_i) with W_i, X_i the exclusive per-ray sums of w and w m.
    """
    if weights.numel() == 0:
        return weights.sum()
    w = weights.double()
    m = midpoints.double()
    inter = 2.0 * w * (m * segment_exclusive_cumsum(w, ray_indices, n_rays) - segment_exclusive_cumsum(w * m, ray_indices, n_rays))
    intra = w * w * widths.double() / 3.0
    return ((inter + intra).sum() / max(n_rays, 1)).to(weights.dtype)


def depth_loss(
    weights: torch.Tensor,
    s: torch.Tensor,
    widths: torch.Tensor,
    ray_indices: torch.Tensor,
    target_s: torch.Tensor,
    sigma: float,
) -> torch.Tensor:
    """DS-NeRF's depth loss: the rendering weights of a ray should follow a narrow Gaussian about
    its measured depth. Averaged over the rays whose ``target_s`` is finite (others have no depth).

    L = sum_i -log(w_i + eps) exp(-(s_i - D)^2 / (2 sigma^2)) d_i for samples at distance s_i of
    width d_i and the ray's depth D, all in one monotone parametrisation of distance (the caller's;
    the renderer uses contracted distance so that one ``sigma`` fits near and far). Raising the
    weights near D needs transmittance up to D, so a fog in front of the surface is penalised too.
    weights, s, widths, ray_indices: (S,); target_s: (R,).
    """
    valid = torch.isfinite(target_s)
    n_valid = int(valid.sum())
    if weights.numel() == 0 or n_valid == 0:
        return weights.sum() * 0.0
    target = torch.where(valid, target_s, torch.zeros_like(target_s))[ray_indices]
    gauss = torch.exp(-((s - target) ** 2) / (2.0 * sigma * sigma)) * valid[ray_indices]
    return (-torch.log(weights + 1e-6) * gauss * widths).sum() / n_valid


def accumulate(values: torch.Tensor, weights: torch.Tensor, ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """Per-ray weighted sums: values (S, C) or (S,), weights (S,) -> (R, C) or (R,)."""
    weighted = values * (weights if values.dim() == 1 else weights[:, None])
    out = torch.zeros((n_rays, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add_(0, ray_indices, weighted)


def _offsets(ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    offsets = torch.zeros(n_rays + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.bincount(ray_indices, minlength=n_rays), 0)
    return offsets


class _NativeComposite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tau: torch.Tensor, ray_indices: torch.Tensor, n_rays: int):  # noqa: ANN001, ANN205
        tau = tau.contiguous()
        offsets = _offsets(ray_indices, n_rays)
        trans = torch.empty_like(tau)
        weights = torch.empty_like(tau)
        lib = _declared(load_library("composite"))
        lib.composite_forward(
            ctypes.c_int64(n_rays), _ptr(offsets), _ptr(tau), _ptr(trans), _ptr(weights), ctypes.c_int(torch.get_num_threads())
        )
        ctx.save_for_backward(tau, offsets, trans, weights)
        ctx.n_rays = n_rays
        return trans, weights

    @staticmethod
    def backward(ctx, grad_trans: torch.Tensor | None, grad_weights: torch.Tensor | None):  # noqa: ANN001, ANN205
        tau, offsets, trans, weights = ctx.saved_tensors
        grad_tau = torch.empty_like(tau)
        gt = None if grad_trans is None else grad_trans.contiguous().float()
        gw = None if grad_weights is None else grad_weights.contiguous().float()
        _declared(load_library("composite")).composite_backward(
            ctypes.c_int64(ctx.n_rays), _ptr(offsets), _ptr(tau), _ptr(trans), _ptr(weights),
            None if gw is None else _ptr(gw), None if gt is None else _ptr(gt), _ptr(grad_tau),
            ctypes.c_int(torch.get_num_threads()),
        )
        return grad_tau, None, None


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _declared(lib: ctypes.CDLL) -> ctypes.CDLL:
    """``lib`` with the kernel's void entry points declared."""
    lib.composite_forward.restype = None
    lib.composite_backward.restype = None
    return lib
