"""Depth where a capture has it: reading depth maps the nerfstudio way, and the DS-NeRF depth loss."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from blocknerf.capture.transforms import read_capture
from blocknerf.model.volume import depth_loss
from blocknerf.training.data import BlockPixels, load_depth


def test_depth_loss_matches_a_hand_computed_value_and_ignores_rays_without_depth():
    # One ray, samples at s = 0.1 and 0.2 (widths 0.1), weights 0.5 and 0.25, depth 0.2, sigma 0.1:
    # L = -log(0.5) exp(-0.5) 0.1 - log(0.25) exp(0) 0.1. A second ray without depth (NaN) adds
    # nothing and does not count in the mean.
    w = torch.tensor([0.5, 0.25, 0.9])
    s = torch.tensor([0.1, 0.2, 0.3])
    widths = torch.tensor([0.1, 0.1, 0.1])
    rays = torch.tensor([0, 0, 1])
    got = depth_loss(w, s, widths, rays, torch.tensor([0.2, float("nan")]), sigma=0.1)
    expected = -math.log(0.5 + 1e-6) * math.exp(-0.5) * 0.1 - math.log(0.25 + 1e-6) * 0.1
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_depth_loss_prefers_weights_about_the_measured_depth_to_a_fog_or_a_wrong_surface():
    # The loss is a cross-entropy against the Gaussian about the depth: weights shaped like it
    # (total 0.98) beat the same total spread evenly (a fog) and the same shape at the wrong depth.
    s = torch.linspace(0.0, 1.0, 21)
    widths = torch.full_like(s, 0.05)
    rays = torch.zeros_like(s, dtype=torch.int64)
    target = torch.tensor([0.5])

    def bump(at: float) -> torch.Tensor:
        g = torch.exp(-((s - at) ** 2) / (2 * 0.05**2))
        return 0.98 * g / g.sum()

    loss = lambda w: depth_loss(w, s, widths, rays, target, 0.05).item()  # noqa: E731
    assert loss(bump(0.5)) < loss(torch.full_like(s, 0.98 / 21))
    assert loss(bump(0.5)) < loss(bump(0.3))


def _capture(tmp_path, depth_name: str, scale: float | None):  # noqa: ANN001, ANN202
    Image.fromarray(np.full((4, 6, 3), 128, dtype=np.uint8)).save(tmp_path / "a.png")
    doc = {
        "fl_x": 6.0, "fl_y": 6.0, "cx": 3.0, "cy": 2.0, "w": 6, "h": 4,
        "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist(), "depth_file_path": depth_name}],
    }
    if scale is not None:
        doc["depth_unit_scale_factor"] = scale
    (tmp_path / "transforms.json").write_text(json.dumps(doc))
    return read_capture(tmp_path)


def test_a_millimetre_depth_png_reads_as_metres_with_zero_as_no_depth(tmp_path):
    mm = np.full((4, 6), 2500, dtype=np.uint16)
    mm[0, 0] = 0  # no measurement
    Image.fromarray(mm).save(tmp_path / "d.png")
    capture = _capture(tmp_path, "d.png", 0.001)
    frame = capture.frames[0]
    assert frame.depth_unit_scale == 0.001
    z = load_depth(frame)
    assert z.shape == (4, 6) and np.isnan(z[0, 0])
    assert np.allclose(z[1:], 2.5)
    # The scale factor survives writing the capture back (it stays among the top-level keys).
    assert capture.extra.get("depth_unit_scale_factor") == 0.001


def test_ray_distances_are_depth_along_the_axis_times_the_ray_length(tmp_path):
    z = np.full((4, 6), 3.0, dtype=np.float32)
    z[3, 5] = np.inf  # sky stays at infinity
    np.save(tmp_path / "d.npy", z)
    frame = _capture(tmp_path, "d.npy", None).frames[0]
    pixels = BlockPixels([frame], lambda o, d: np.ones(len(o), dtype=bool), with_depth=True)
    batch = pixels.rays_of(torch.arange(24))
    # The ray through pixel (x, y) leaves the axis by ((x + 0.5 - cx) / fx, (y + 0.5 - cy) / fy):
    # at depth 3 it has travelled 3 * sqrt(1 + dx^2 + dy^2). Pixel (2, 1): offsets -0.5/6 each.
    k = 1 * 6 + 2
    assert batch.depth[k].item() == pytest.approx(3.0 * math.sqrt(1 + 2 * (0.5 / 6) ** 2), rel=1e-5)
    # The point at that distance along the ray lies at depth 3 in front of the camera (-z).
    point = batch.origins[k] + batch.depth[k] * batch.directions[k]
    assert point[2].item() == pytest.approx(-3.0, rel=1e-5)
    assert math.isinf(batch.depth[23].item())
    assert BlockPixels([frame], lambda o, d: np.ones(len(o), dtype=bool)).rays_of(torch.arange(3)).depth is None
