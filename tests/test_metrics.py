"""Image metrics: PSNR by hand, and SSIM against an independent implementation of Wang et al. 2004
on the fox capture and on a synthetic pair."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from blocknerf.capture.images import load_image
from blocknerf.evaluation.metrics import mse_to_psnr, psnr, ssim

FOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "fox_8x"


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM as the paper defines it, written out in float64: an 11x11 Gaussian window of sigma 1.5
    (normalised), population covariances, C1 = (0.01 L)^2 and C2 = (0.03 L)^2 with L = 1, the SSIM
    map over the valid region only, averaged over pixels and channels."""
    a = torch.from_numpy(x).double().permute(2, 0, 1)[None]
    b = torch.from_numpy(y).double().permute(2, 0, 1)[None]
    taps = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5.0) ** 2 / (2 * 1.5**2))
    taps = taps / taps.sum()
    window = (taps[:, None] * taps[None, :]).expand(3, 1, 11, 11)

    def blur(img: torch.Tensor) -> torch.Tensor:
        return F.conv2d(img, window, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def degraded(img: np.ndarray, seed: int) -> np.ndarray:
    """``img`` blurred (sigma 1.2 px) with Gaussian noise (sigma 0.03) added, clipped to [0, 1]."""
    noise = np.random.default_rng(seed).normal(0.0, 0.03, img.shape)
    return np.clip(gaussian_filter(img, (1.2, 1.2, 0.0)) + noise, 0.0, 1.0).astype(np.float32)


def synthetic_image() -> np.ndarray:
    """(96, 128, 3) float32 in [0, 1]: smooth waves in two channels, a sawtooth in the third."""
    yy, xx = np.mgrid[0:96, 0:128] / 32.0
    return np.stack([0.5 + 0.5 * np.sin(3 * xx + yy), 0.5 + 0.5 * np.cos(4 * yy), (xx * yy) % 1.0], axis=-1).astype(np.float32)


def fox_image(name: str) -> np.ndarray:
    if not (FOX / "images").is_dir():
        pytest.skip(f"{FOX} is not available")
    return load_image(FOX / "images" / name).astype(np.float32) / 255.0


def _synthetic_pair() -> tuple[np.ndarray, np.ndarray]:
    img = synthetic_image()
    return img, degraded(img, seed=0)


def _fox_degraded() -> tuple[np.ndarray, np.ndarray]:
    img = fox_image("0001.jpg")
    return img, degraded(img, seed=1)


def _fox_neighbours() -> tuple[np.ndarray, np.ndarray]:
    # Two different views of the fox: a low SSIM, far from the easy cases near 1.
    return fox_image("0003.jpg"), fox_image("0004.jpg")


@pytest.mark.parametrize(
    "pair", [_synthetic_pair, _fox_degraded, _fox_neighbours], ids=["synthetic-degraded", "fox-degraded", "fox-neighbouring-views"]
)
def test_ssim_agrees_with_the_papers_definition(pair) -> None:
    x, y = pair()
    ours = ssim(torch.from_numpy(x), torch.from_numpy(y))
    # Measured: |difference| below 1e-6 on every pair (float32 vs float64 arithmetic).
    assert ours == pytest.approx(reference_ssim(x, y), abs=1e-4)
    assert 0.0 < ours < 1.0


def test_ssim_of_an_image_with_itself_is_one_and_symmetric() -> None:
    x, y = _synthetic_pair()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    assert ssim(tx, tx) == pytest.approx(1.0, abs=1e-6)
    assert ssim(tx, ty) == pytest.approx(ssim(ty, tx), abs=1e-6)


@pytest.mark.parametrize(("height", "width"), [(10, 12), (7, 9), (4, 30), (1, 5)], ids=["10x12", "7x9", "4x30", "1x5"])
def test_ssim_of_images_narrower_than_the_window_uses_a_smaller_one(height: int, width: int) -> None:
    x = torch.from_numpy(synthetic_image()[:height, :width].copy())
    y = (x * 0.8 + 0.1).clamp(0, 1)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert ssim(x, y) < 1.0


def test_ssim_refuses_images_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        ssim(torch.zeros(16, 16, 3), torch.zeros(16, 15, 3))


def test_psnr_by_hand() -> None:
    # Errors 0.1 on every channel of two pixels and 0 on the other two: MSE = 2 * 0.01 / 4 = 0.005,
    # PSNR = -10 log10(0.005) = 23.0103 dB.
    target = torch.zeros(2, 2, 3)
    pred = target.clone()
    pred[0] = 0.1
    assert psnr(pred, target) == pytest.approx(-10 * math.log10(0.005), abs=1e-4)
    assert psnr(pred, target) == pytest.approx(23.0103, abs=1e-4)
    # Only the two wrong pixels: MSE = 0.01, 20 dB; only the right ones: no error, infinite PSNR.
    wrong = torch.tensor([[True, True], [False, False]])
    assert psnr(pred, target, mask=wrong) == pytest.approx(20.0, abs=1e-4)
    assert psnr(pred, target, mask=~wrong) == math.inf


@pytest.mark.parametrize(("mse", "db"), [(1.0, 0.0), (0.01, 20.0), (1e-4, 40.0), (0.0, math.inf)], ids=["1", "0.01", "1e-4", "0"])
def test_mse_to_psnr(mse: float, db: float) -> None:
    assert mse_to_psnr(mse) == pytest.approx(db)
