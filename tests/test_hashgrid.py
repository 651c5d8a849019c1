"""Hash-grid encoding: hand-computed values, reference vs native kernel parity, gradients, backends."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
import torch

from blocknerf.kernels import build
from blocknerf.kernels.build import KernelUnavailable
from blocknerf.model import hashgrid as hg
from blocknerf.model.config import HashGridConfig
from blocknerf.model.hashgrid import (
    HashGridEncoding,
    grid_resolutions,
    hash_encode_fast,
    hash_encode_reference,
    level_is_hashed,
)


needs_kernel = pytest.mark.native_kernel("hashgrid")


def _hand_computed_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # One level of resolution 2 over [0, 1]^3: the 8 grid vertices are the cube's corners, stored
    # densely at ix + 2*iy + 4*iz. Give vertex (ix, iy, iz) the value 1 + ix + 10*iy + 100*iz
    # (second feature: its negative). Trilinear interpolation of a function that is linear in each
    # axis is exact, so at x = (0.25, 0.5, 0.75) the feature is
    #   1 + 0.25 + 10*0.5 + 100*0.75 = 81.25,
    # e.g. corner (1, 1, 1) has weight 0.25 * 0.5 * 0.75 = 0.09375 and value 111.
    table = torch.zeros(1, 16, 2)
    for iz in range(2):
        for iy in range(2):
            for ix in range(2):
                value = 1.0 + ix + 10.0 * iy + 100.0 * iz
                table[0, ix + 2 * iy + 4 * iz] = torch.tensor([value, -value])
    x = torch.tensor([[0.25, 0.5, 0.75], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    expected = torch.tensor([[81.25, -81.25], [1.0, -1.0], [112.0, -112.0]])
    return x, table, expected


def test_hand_computed_dense_single_level():
    x, table, expected = _hand_computed_case()
    torch.testing.assert_close(hash_encode_reference(x, table, [2]), expected)


@needs_kernel
def test_hand_computed_dense_single_level_native():
    x, table, expected = _hand_computed_case()
    torch.testing.assert_close(hash_encode_fast(x, table, [2]), expected)


# id -> ((levels, features, log2 T, base, max), which levels are hashed).
CONFIGS = {
    "dense-only-F1": ((3, 1, 12, 2, 16), [False, False, False]),  # 2, 5, 16: 16^3 = 4096 <= T
    "hashed-only-F2": ((3, 2, 10, 11, 40), [True, True, True]),  # 11, 20, 40: 11^3 = 1331 > T
    "mixed-F4": ((4, 4, 12, 8, 64), [False, False, True, True]),  # 8, 16, 32, 64
    "mixed-F2-8-levels": ((8, 2, 14, 16, 512), [False] + [True] * 7),  # 16, 26, ...: 26^3 > 2^14
    "mixed-F8": ((3, 8, 10, 4, 32), [False, True, True]),  # 4, 11, 32
    "single-level-hashed": ((1, 2, 10, 64, 64), [True]),
}


def _random_points(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=gen)
    special = torch.tensor(
        [
            [0.0, 0.0, 0.0],
            [1.0, 1.0, 1.0],
            [0.0, 1.0, 0.5],
            [-0.25, 0.5, 1.5],  # clamped
            [2.0, -3.0, 0.999999],
            [float("nan"), 0.5, float("inf")],  # NaN counts as 0, inf clamps to 1
        ]
    )
    return torch.cat([special[: min(n, len(special))], x[len(special) :]]) if n > len(special) else special[:n]


def _table(levels: int, log2_t: int, features: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(levels, 2**log2_t, features, generator=gen) * 2 - 1


@needs_kernel
@pytest.mark.parametrize("n", [1, 7, 1029], ids=lambda n: f"N{n}")
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_fast_matches_reference(config, n):
    (levels, features, log2_t, base, top), hashed = config
    res = grid_resolutions(levels, base, top)
    assert [level_is_hashed(r, 2**log2_t) for r in res] == hashed
    x = _random_points(n, seed=n)
    grad_out = torch.randn(n, levels * features, generator=torch.Generator().manual_seed(1))
    outputs, grads = [], []
    for encode in (hash_encode_reference, hash_encode_fast):
        table = _table(levels, log2_t, features, seed=2).requires_grad_()
        out = encode(x, table, res)
        out.backward(grad_out)
        outputs.append(out.detach())
        grads.append(table.grad)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)
    assert grads[1].shape == (levels, 2**log2_t, features) and grads[1].dtype == torch.float32


@needs_kernel
def test_fast_handles_empty_batch_and_no_grad():
    res = grid_resolutions(2, 4, 16)
    table = _table(2, 10, 2, seed=0).requires_grad_()
    out = hash_encode_fast(torch.empty(0, 3), table, res)
    assert out.shape == (0, 4)
    out.sum().backward()
    assert torch.count_nonzero(table.grad) == 0
    with torch.no_grad():
        assert hash_encode_fast(torch.rand(5, 3), table, res).shape == (5, 4)


@needs_kernel
def test_fast_is_bitwise_deterministic_across_thread_counts_and_layouts():
    # Each output entry and each level's gradient is produced by exactly one thread, in sample order.
    res = grid_resolutions(3, 4, 40)
    x = torch.rand(3, 2000).T  # non-contiguous (N, 3) view
    grad_out = torch.randn(2000, 6)
    results = []
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2, 5):
            torch.set_num_threads(n_threads)
            table = _table(3, 10, 2, seed=4).requires_grad_()
            out = hash_encode_fast(x, table, res)
            out.backward(grad_out)
            results.append((out.detach(), table.grad))
    finally:
        torch.set_num_threads(threads)
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1])


@needs_kernel
def test_loading_the_kernel_keeps_denormals():
    # A fresh process, so the library's load-time constructors really run: loading must not leave
    # the thread flushing denormals to zero (crtfastmath.o of -ffast-math shared libraries does).
    code = (
        "import torch; from blocknerf.model import hashgrid as hg; hg._kernel(); "
        "tiny = 5e-324; assert tiny * 1.0 > 0.0, 'denormals flushed'; "
        "assert torch.tensor([1e-40]).mul(1.0).item() > 0.0, 'float32 denormals flushed'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@needs_kernel
def test_fast_rejects_bad_inputs():
    res = grid_resolutions(2, 4, 16)
    table = _table(2, 10, 2, seed=0)
    with pytest.raises(ValueError, match="float32"):
        hash_encode_fast(torch.rand(4, 3, dtype=torch.float64), table, res)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        hash_encode_fast(torch.rand(4, 2), table, res)
    with pytest.raises(ValueError, match="resolutions"):
        hash_encode_fast(torch.rand(4, 3), table, res[:1])
    with pytest.raises(ValueError, match="power of two"):
        hash_encode_fast(torch.rand(4, 3), torch.zeros(2, 1000, 2), res)


def test_reference_table_gradient_gradcheck():
    # Tiny mixed config (one dense level, one hashed) in float64.
    res = (2, 5)  # 2^3 = 8 <= 16 dense; 5^3 = 125 > 16 hashed
    assert [level_is_hashed(r, 16) for r in res] == [False, True]
    x = _random_points(9, seed=3).double()
    table = (torch.rand(2, 16, 2, dtype=torch.float64) - 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: hash_encode_reference(x, t, res), (table,))


def test_dense_hash_switch_and_growth():
    # Default config: b = (2048 / 16) ** (1 / 15); N_l = floor(16 * b**l); dense while N**3 <= 2**18.
    cfg = HashGridConfig()
    res = grid_resolutions(cfg.levels, cfg.base_resolution, cfg.max_resolution)
    b = math.exp((math.log(2048) - math.log(16)) / 15)
    assert res[0] == 16 and res[-1] == 2048
    assert all(r == math.floor(16 * b**level + 1e-6) for level, r in enumerate(res))
    hashed = [level_is_hashed(r, 2**18) for r in res]
    assert hashed == [r**3 > 2**18 for r in res]
    assert hashed.index(True) == 5 and res[4] == 58 and res[5] == 80  # 58^3 = 195112, 80^3 = 512000
    assert level_is_hashed(65, 65**3 - 1) and not level_is_hashed(64, 64**3)
    assert grid_resolutions(1, 16, 2048) == (16,)
    # Without the rounding guard these would end at max - 1 (e.g. 63.99999999999997 -> 63).
    for levels, base, top in [(2, 2, 64), (5, 4, 1000), (16, 16, 4096), (32, 2, 8192)]:
        res = grid_resolutions(levels, base, top)
        assert res[0] == base and res[-1] == top and list(res) == sorted(res)


@pytest.mark.parametrize("encode", [hash_encode_reference, pytest.param(hash_encode_fast, marks=needs_kernel)], ids=["reference", "native"])
def test_hash_uses_uint32_instant_ngp_primes(encode):
    # A hashed level: the vertex (ix, iy, iz) = (3, 5, 7) of resolution 100 with T = 1024.
    t = 1024
    expected = ((3 * 1) ^ ((5 * 2654435761) % 2**32) ^ ((7 * 805459861) % 2**32)) % t
    table = torch.zeros(1, t, 1)
    table[0, expected, 0] = 1.0
    x = torch.tensor([[3 / 99, 5 / 99, 7 / 99]])  # exactly on the vertex: weight 1 on corner 0
    torch.testing.assert_close(encode(x, table, [100]), torch.ones(1, 1), atol=1e-5, rtol=0)


def test_module_shape_init_and_reference_backend_never_touches_kernel(monkeypatch):
    def boom():
        raise AssertionError("the reference backend must not load the kernel")

    monkeypatch.setattr(hg, "_kernel", boom)
    cfg = HashGridConfig(levels=4, features_per_level=2, log2_table_size=10, base_resolution=4,
                         max_resolution=32, init_scale=1e-2, backend="reference")
    enc = HashGridEncoding(cfg)
    assert enc.backend == "reference" and enc.output_dim == 8
    assert enc.table.shape == (4, 1024, 2) and enc.table.dtype == torch.float32
    assert enc.table.abs().max() <= 1e-2 and enc.table.std() > 1e-3
    assert enc.resolutions == grid_resolutions(4, 4, 32)
    out = enc(torch.rand(6, 3))
    out.sum().backward()
    assert out.shape == (6, 8) and enc.table.grad.shape == enc.table.shape


@needs_kernel
def test_auto_backend_is_fast_on_cpu_and_matches_reference():
    cfg = HashGridConfig(levels=4, log2_table_size=10, base_resolution=4, max_resolution=32, init_scale=0.5)
    enc = HashGridEncoding(cfg)
    assert enc.backend == "fast"
    x = torch.rand(33, 3)
    torch.testing.assert_close(enc(x), hash_encode_reference(x, enc.table, enc.resolutions), rtol=1e-5, atol=1e-6)
    enc.double()  # the kernel is float32-only: auto falls back to the reference, explicit fast refuses
    assert enc(x).dtype == torch.float64
    fast = HashGridEncoding(dataclasses.replace(cfg, backend="fast")).double()
    with pytest.raises(ValueError, match="float32-only"):
        fast(x)


def test_auto_falls_back_with_warning_and_fast_raises_when_kernel_unavailable(monkeypatch):
    def unavailable(name):
        raise KernelUnavailable("no compiler (simulated)")

    monkeypatch.setattr(build, "load_library", unavailable)
    build.warn_fallback.cache_clear()
    small = dict(levels=2, log2_table_size=10, base_resolution=4, max_resolution=8)
    with pytest.warns(RuntimeWarning, match="simulated"):
        enc = HashGridEncoding(HashGridConfig(**small))
    assert enc.backend == "reference"
    assert enc(torch.rand(3, 3)).shape == (3, 4)
    with pytest.raises(KernelUnavailable, match="'fast' requested"):
        HashGridEncoding(HashGridConfig(**small, backend="fast"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_uses_reference_path():
    cfg = HashGridConfig(levels=4, log2_table_size=12, base_resolution=4, max_resolution=64, init_scale=0.5)
    enc = HashGridEncoding(cfg).cuda()
    x = torch.rand(100, 3)
    out = enc(x.cuda())
    out.sum().backward()
    assert out.device.type == "cuda" and enc.table.grad.device.type == "cuda"
    expected = hash_encode_reference(x, enc.table.detach().cpu(), enc.resolutions)
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-5, atol=1e-6)
    fast = HashGridEncoding(dataclasses.replace(cfg, backend="fast")).cuda()
    with pytest.raises(ValueError, match="CPU/float32-only"):
        fast(x.cuda())
