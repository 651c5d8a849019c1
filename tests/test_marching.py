"""Ray marching: the shared step schedule, occupancy skipping, native kernel vs torch reference."""

import numpy as np
import pytest
import torch

from blocknerf.model.bounds import contract, uncontract
from blocknerf.model.config import SamplerConfig
from blocknerf.model.marching import march, march_reference, step_edges


def test_step_schedule_is_increasing_and_reaches_far():
    cfg = SamplerConfig()
    edges = step_edges(cfg, radius=10.0)
    assert edges[0] == pytest.approx(cfg.near * 10.0)
    assert edges[-1] == pytest.approx(cfg.far * 10.0)
    steps = np.diff(edges.astype(np.float64))
    assert np.all(steps > 0)
    # The first steps are the minimum step; later ones grow with distance.
    assert steps[0] == pytest.approx(cfg.min_step * 10.0, rel=1e-5)
    assert steps[-2] > 100 * steps[0]


def test_contraction_round_trip_and_range():
    u = torch.tensor([[0.0, 0.0, 0.0], [0.5, -0.5, 0.9], [3.0, 0.0, 0.0], [-100.0, 50.0, 2.0]])
    x = contract(u)
    assert torch.all((x >= 0) & (x <= 1))
    assert torch.allclose(x[0], torch.tensor([0.5, 0.5, 0.5]))
    # |u|_inf = 3 maps to |c|_inf = 2 - 1/3 -> x = (2 - 1/3 + 2) / 4.
    assert x[2, 0].item() == pytest.approx((2 - 1 / 3 + 2) / 4)
    assert torch.allclose(uncontract(x), u, rtol=1e-4, atol=1e-5)


def _rays(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.rand(n, 3, generator=g) * 0.6 - 0.3
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return o, d


@pytest.mark.native_kernel("march")
def test_native_kernel_agrees_with_reference():
    o, d = _rays(512)
    edges = torch.from_numpy(step_edges(SamplerConfig(), 1.0))
    occ = torch.zeros(32, 32, 32, dtype=torch.bool)
    occ[8:24, 8:24, 8:24] = True  # the block region and a little beyond
    occ[0, :, :] = True  # one face of the far shell
    jitter = torch.rand(512, generator=torch.Generator().manual_seed(1))
    a = march(o, d, edges, occ, max_per_ray=256, jitter=jitter, backend="fast")
    b = march_reference(o, d, edges, occ, max_per_ray=256, jitter=jitter)
    # Float rounding may put a point on the other side of a cell face: allow a tiny disagreement.
    assert abs(len(a) - len(b)) <= max(2, len(b) // 1000)
    common = min(len(a), len(b))
    same = (a.ray_indices[:common] == b.ray_indices[:common]).float().mean()
    assert same > 0.99
    assert torch.allclose(a.counts().float(), b.counts().float(), atol=2)


def test_samples_lie_in_occupied_cells_and_respect_the_cap():
    o, d = _rays(256, seed=2)
    edges = torch.from_numpy(step_edges(SamplerConfig(), 1.0))
    g = 16
    occ = torch.rand(g, g, g, generator=torch.Generator().manual_seed(3)) < 0.3
    s = march(o, d, edges, occ, max_per_ray=40, jitter=None)
    cells = (s.x01 * g).long().clamp(max=g - 1)
    assert bool(occ[cells[:, 0], cells[:, 1], cells[:, 2]].all())
    assert int(s.counts().max()) <= 40
    # Sorted by ray, and by distance within a ray; contracted step lengths are positive.
    assert bool((s.ray_indices[1:] >= s.ray_indices[:-1]).all())
    same_ray = s.ray_indices[1:] == s.ray_indices[:-1]
    assert bool((s.t[1:][same_ray] > s.t[:-1][same_ray]).all())
    assert bool((s.ds > 0).all())


def test_contracted_step_length_inside_the_region_is_metric():
    # Inside |u| <= 1 the contraction is the identity: ds equals the normalised step length.
    o = torch.zeros(1, 3)
    d = torch.tensor([[1.0, 0.0, 0.0]])
    edges = torch.tensor([0.1, 0.2, 0.35], dtype=torch.float32)
    s = march(o, d, edges, torch.ones(8, 8, 8, dtype=torch.bool), max_per_ray=8, jitter=None)
    assert torch.allclose(s.ds, torch.tensor([0.1, 0.15]), atol=1e-6)
    assert torch.allclose(s.t, torch.tensor([0.15, 0.275]), atol=1e-6)
