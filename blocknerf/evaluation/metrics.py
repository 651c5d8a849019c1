"""Image quality metrics: PSNR and SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mse_to_psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error on [0, 1] images."""
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR (dB) of images in [0, 1] of any matching shape (..., 3); ``mask`` selects pixels."""
    err = (pred.float() - target.float()) ** 2
    if mask is not None:
        err = err[mask]
    return mse_to_psnr(float(err.mean()))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM of two (H, W, 3) images in [0, 1] (per channel, averaged), valid region only."""
    x = pred.float().permute(2, 0, 1)[None]
    y = target.float().permute(2, 0, 1)[None]
    size, sigma = 11, 1.5
    if min(x.shape[-2:]) < size:
        size = min(x.shape[-2:]) | 1
        sigma = size / 7.0
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device)
    window = (g[:, None] * g[None, :]).expand(3, 1, size, size)
    blur = lambda img: F.conv2d(img, window, groups=3)  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())
