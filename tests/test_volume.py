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
