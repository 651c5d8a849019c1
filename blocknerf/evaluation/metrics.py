"""Image quality metrics: PSNR, and SSIM through scikit-image.

SSIM is scikit-image's ``structural_similarity`` in the setting of Wang et al. 2004 (the original
SSIM paper, and what NeRF papers report): an 11x11 Gaussian window of sigma 1.5, K1 = 0.01,
K2 = 0.03, ``data_range=1``, population (not sample) covariances, each colour channel separately,
and the mean over the pixels whose window lies inside the image.
"""

from __future__ import annotations

import math

import torch

SSIM_SIGMA = 1.5
"""Standard deviation in pixels of the Gaussian SSIM window (Wang et al. 2004)."""
SSIM_TRUNCATE = 3.5
"""scikit-image cuts its Gaussian window at this many sigmas: radius 5, an 11-tap window at 1.5."""


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
    """Mean SSIM of two (H, W, 3) images in [0, 1] (per channel, averaged), valid region only.

    An image narrower than the 11-pixel window gets the largest odd window that fits, with sigma
    shrunk in proportion, rather than an error."""
    # Imported here: scikit-image pulls in scipy.ndimage (~0.3 s), and the trainer imports this
    # module for mse_to_psnr alone.
    from skimage.metrics import structural_similarity

    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"ssim needs two images of one shape (H, W, C), got {tuple(pred.shape)} and {tuple(target.shape)}")
    x = pred.detach().float().cpu().numpy()
    y = target.detach().float().cpu().numpy()
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    sigma = SSIM_SIGMA
    if 2 * radius + 1 > min(x.shape[:2]):
        radius = (min(x.shape[:2]) - 1) // 2
        sigma = radius / SSIM_TRUNCATE  # so that scikit-image's radius int(3.5 sigma + 0.5) is `radius`
    return float(
        structural_similarity(
            x, y, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=sigma,
            win_size=2 * radius + 1, use_sample_covariance=False,
        )
    )


__all__ = ["mse_to_psnr", "psnr", "ssim"]
