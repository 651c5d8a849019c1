"""Volume rendering of packed samples: against a per-ray reference, values and gradients."""

import math

import pytest
import torch

from blocknerf.model.volume import accumulate, transmittance_and_weights


def _per_ray_reference(tau: torch.Tensor, counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    trans, weights, start = [], [], 0
    for c in counts:
        t = tau[start : start + c]
        if c == 0:
            continue
        before = torch.cat([t.new_zeros(1), torch.cumsum(t, 0)[:-1]])
        trans.append(torch.exp(-before))
        weights.append(torch.exp(-before) * (1 - torch.exp(-t)))
        start += c
    return torch.cat(trans), torch.cat(weights)


def test_hand_computed_two_samples():
    # One ray, tau = (ln 2, ln 2): alpha = (1/2, 1/2), T = (1, 1/2), weights = (1/2, 1/4).
    tau = torch.tensor([math.log(2.0), math.log(2.0)])
    trans, weights = transmittance_and_weights(tau, torch.zeros(2, dtype=torch.int64), 1)
    assert torch.allclose(trans, torch.tensor([1.0, 0.5]))
    assert torch.allclose(weights, torch.tensor([0.5, 0.25]))


@pytest.mark.parametrize("counts", [[3, 0, 4, 2], [1], [0, 5], [7, 7, 7, 1, 0, 0, 2]], ids=["mixed", "single", "leading-empty", "many"])
def test_packed_matches_per_ray_values_and_gradients(counts):
    torch.manual_seed(0)
    ray = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    tau = (torch.rand(len(ray), dtype=torch.float64) * 2).requires_grad_()
    trans, weights = transmittance_and_weights(tau, ray, len(counts))
    ref_trans, ref_weights = _per_ray_reference(tau, counts)
    assert torch.allclose(trans, ref_trans) and torch.allclose(weights, ref_weights)
    probe = torch.randn(len(ray), dtype=torch.float64)
    (g,) = torch.autograd.grad((weights * probe).sum() + (trans * probe).sum(), tau)
    (g_ref,) = torch.autograd.grad((ref_weights * probe).sum() + (ref_trans * probe).sum(), tau)
    # A sample's weight depends only on samples of its own ray (the packed prefix sum must not leak).
    assert torch.allclose(g, g_ref, atol=1e-12)


def test_accumulate_sums_per_ray():
    values = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    weights = torch.tensor([0.5, 0.25, 1.0])
    out = accumulate(values, weights, torch.tensor([0, 0, 2]), 3)
    assert torch.equal(out, torch.tensor([[0.5, 0.25, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))


@pytest.mark.native_kernel("composite")
@pytest.mark.parametrize("counts", [[3, 0, 4, 2], [0, 5], [40, 1, 0, 17]], ids=["mixed", "leading-empty", "long"])
def test_native_kernel_matches_reference_values_and_gradients(counts):
    from blocknerf.model.volume import transmittance_and_weights_reference

    torch.manual_seed(1)
    ray = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    base = torch.rand(len(ray)) * 0.5
    tau = base.clone().requires_grad_()
    tau_ref = base.clone().requires_grad_()
    trans, weights = transmittance_and_weights(tau, ray, len(counts), backend="fast")
    ref_trans, ref_weights = transmittance_and_weights_reference(tau_ref, ray, len(counts))
    assert torch.allclose(trans, ref_trans, atol=1e-6) and torch.allclose(weights, ref_weights, atol=1e-6)
    gw, gt = torch.randn(len(ray)), torch.randn(len(ray))
    (weights * gw + trans * gt).sum().backward()
    (ref_weights * gw + ref_trans * gt).sum().backward()
    assert torch.allclose(tau.grad, tau_ref.grad, atol=1e-5)


def test_distortion_loss_matches_the_pairwise_definition():
    from blocknerf.model.volume import distortion_loss

    torch.manual_seed(2)
    counts = [4, 0, 3]
    ray = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    w = torch.rand(len(ray), dtype=torch.float64, requires_grad=True)
    m = torch.sort(torch.rand(len(ray), dtype=torch.float64)).values
    d = torch.rand(len(ray), dtype=torch.float64) * 0.1
    expected = 0.0
    for r in range(3):
        sel = ray == r
        wr, mr, dr = w[sel], m[sel], d[sel]
        expected = expected + (wr[:, None] * wr[None, :] * (mr[:, None] - mr[None, :]).abs()).sum() + (wr * wr * dr).sum() / 3
    expected = expected / 3
    got = distortion_loss(w, m, d, ray, 3)
    assert torch.allclose(got, expected)
    (g,) = torch.autograd.grad(got, w)
    (g_ref,) = torch.autograd.grad(expected, w)
    assert torch.allclose(g, g_ref)
    # Concentrated weights cost less than the same total spread along the ray.
    one = torch.zeros(4, dtype=torch.int64)
    mids = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    widths = torch.full((4,), 0.1, dtype=torch.float64)
    spread = distortion_loss(torch.full((4,), 0.25, dtype=torch.float64), mids, widths, one, 1)
    peaked = distortion_loss(torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64), mids, widths, one, 1)
    assert peaked < spread
