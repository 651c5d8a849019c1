"""Volume rendering of packed samples (rays of varying sample counts, sorted by ray).

For sample i of a ray with density sigma_i over an interval dt_i: alpha_i = 1 - exp(-sigma_i dt_i),
transmittance T_i = exp(-sum_{j<i} sigma_j dt_j), weight w_i = T_i alpha_i; a ray's colour is
sum_i w_i c_i. Per-ray prefix sums are taken over the packed array in float64 (a float32 running
sum over many rays would lose the small per-ray values).
"""

from __future__ import annotations

import torch


def transmittance_and_weights(
    sigma_dt: torch.Tensor, ray_indices: torch.Tensor, n_rays: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S,) optical thickness per sample -> (S,) transmittance before each sample, (S,) weights.

    ``ray_indices`` (S,) int64 must be sorted (samples grouped by ray, in order along the ray).
    Differentiable w.r.t. ``sigma_dt``.
    """
    if sigma_dt.numel() == 0:
        return sigma_dt.clone(), sigma_dt.clone()
    tau = sigma_dt.double()
    inclusive = torch.cumsum(tau, dim=0)
    exclusive = inclusive - tau
    # The running sum where each ray starts, subtracted so that every ray starts at zero.
    first = torch.zeros(n_rays, dtype=torch.int64, device=tau.device)
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first[1:] = torch.cumsum(counts, 0)[:-1]
    # Not detached: the subtraction must also cancel the gradient paths to earlier rays.
    start = exclusive[first.clamp(max=tau.shape[0] - 1)]
    excl = exclusive - start[ray_indices]
    trans = torch.exp(-excl)
    weights = trans * (1.0 - torch.exp(-tau))
    return trans.to(sigma_dt.dtype), weights.to(sigma_dt.dtype)


def accumulate(values: torch.Tensor, weights: torch.Tensor, ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """Per-ray weighted sums: values (S, C) or (S,), weights (S,) -> (R, C) or (R,)."""
    weighted = values * (weights if values.dim() == 1 else weights[:, None])
    out = torch.zeros((n_rays, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add_(0, ray_indices, weighted)
