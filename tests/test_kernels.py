"""One rule for every native kernel: ``reference`` never uses it, ``fast`` requires it, ``auto``
falls back to the torch path with one warning when it cannot be built."""

from __future__ import annotations

import pytest
import torch

from blocknerf.kernels import build
from blocknerf.kernels.build import KernelUnavailable, native_library
from blocknerf.model.config import HashGridConfig, SamplerConfig
from blocknerf.model.hashgrid import HashGridEncoding
from blocknerf.model.marching import march, march_reference, step_edges
from blocknerf.model.volume import transmittance_and_weights, transmittance_and_weights_reference


def _march(backend: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    o = torch.rand(16, 3, generator=g) * 0.2
    d = torch.nn.functional.normalize(torch.randn(16, 3, generator=g), dim=-1)
    edges = torch.from_numpy(step_edges(SamplerConfig(), 1.0))
    occ = torch.ones(8, 8, 8, dtype=torch.bool)
    if backend == "expected":
        return march_reference(o, d, edges, occ, max_per_ray=64).counts()
    return march(o, d, edges, occ, max_per_ray=64, backend=backend).counts()


def _composite(backend: str) -> torch.Tensor:
    tau = torch.linspace(0.1, 1.0, 7)
    rays = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    if backend == "expected":
        return transmittance_and_weights_reference(tau, rays, 3)[1]
    return transmittance_and_weights(tau, rays, 3, backend=backend)[1]


def _hashgrid(backend: str) -> torch.Tensor:
    cfg = HashGridConfig(levels=2, log2_table_size=10, base_resolution=4, max_resolution=8, backend="auto" if backend == "expected" else backend)
    return torch.tensor(0.0) if backend == "expected" else torch.tensor(float(HashGridEncoding(cfg).backend == "reference"))


def _baked(backend: str) -> torch.Tensor:
    from blocknerf.model.baked_grid import BakedGrid, render_grid

    index = torch.zeros(1, 1, 1, dtype=torch.int32)
    grid = BakedGrid(index, torch.full((1, 27), 2.0), torch.zeros(1, 27, 1, dtype=torch.uint8), torch.ones(1), torch.zeros(1), 2)
    o, d = torch.zeros(4, 3), torch.nn.functional.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    edges = torch.from_numpy(step_edges(SamplerConfig(), 1.0))
    return render_grid(grid, o, d, edges, t_stop=1e-4, backend="reference" if backend == "expected" else backend).opacity


KERNELS = {"march": _march, "composite": _composite, "hashgrid": _hashgrid, "baked": _baked}


@pytest.fixture
def no_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kernel fails to build, as on a machine without a C compiler."""

    def unavailable(name: str):  # noqa: ANN202
        raise KernelUnavailable("no compiler (simulated)")

    monkeypatch.setattr(build, "load_library", unavailable)
    build.warn_fallback.cache_clear()


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_auto_falls_back_to_the_reference_with_one_warning(name: str, no_kernels: None) -> None:
    run = KERNELS[name]
    with pytest.warns(RuntimeWarning, match=f"'{name}' unavailable.*simulated") as record:
        got = run("auto")
        run("auto")  # a second use does not warn again
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    if name == "hashgrid":
        assert got.item() == 1.0  # the encoding resolved to the reference path
    else:
        torch.testing.assert_close(got, run("expected"))


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_fast_refuses_when_the_kernel_cannot_be_built(name: str, no_kernels: None) -> None:
    with pytest.raises(KernelUnavailable, match=f"'fast' requested.*'{name}'"):
        KERNELS[name]("fast")


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_reference_never_loads_a_kernel(name: str, no_kernels: None) -> None:
    assert native_library(name, "reference") is None


def test_non_cpu_devices_take_the_reference_path_under_auto_and_fast_refuses_them() -> None:
    assert native_library("march", "auto", device_type="cuda") is None
    with pytest.raises(ValueError, match="CPU-only"):
        native_library("march", "fast", device_type="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        native_library("march", "turbo")


@pytest.mark.native_kernel("hashgrid", "march", "composite", "baked")
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_each_kernel_builds_and_auto_uses_it(name: str) -> None:
    assert native_library(name, "auto") is not None
