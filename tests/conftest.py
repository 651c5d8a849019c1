"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    from blocknerf.kernels import ALLOW_NO_KERNEL_ENV

    if os.environ.get(ALLOW_NO_KERNEL_ENV) == "1":
        # Allowed to run without the kernels: their one fallback warning is expected, not an error.
        config.addinivalue_line("filterwarnings", "ignore:native kernel .* unavailable:RuntimeWarning")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.native_kernel(NAME)``: the test needs that native kernel. Where it cannot be
    built the test FAILS, so a broken kernel build never passes unnoticed; with
    ``BLOCKNERF_ALLOW_NO_KERNEL=1`` it is skipped instead."""
    for mark in item.iter_markers("native_kernel"):
        from blocknerf.kernels import ALLOW_NO_KERNEL_ENV, KernelUnavailable, load_library

        for name in mark.args:
            try:
                load_library(name)
            except KernelUnavailable as exc:
                if os.environ.get(ALLOW_NO_KERNEL_ENV) == "1":
                    pytest.skip(f"native kernel '{name}' cannot be built here ({ALLOW_NO_KERNEL_ENV}=1): {exc}")
                pytest.fail(f"native kernel '{name}' cannot be built: {exc} (set {ALLOW_NO_KERNEL_ENV}=1 to skip its tests)")


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic city capture (``blocknerf synth OUT --grid 1x1 --size 64x48``); its directory."""
    from blocknerf.cli.main import main

    out = tmp_path_factory.mktemp("tiny_city") / "city"
    assert main(["synth", str(out), "--grid", "1x1", "--size", "64x48", "--quiet"]) == 0
    return out


# -- streaming -------------------------------------------------------------------------------------
# Settings of the trained tiny store: a small model and a short step schedule along rays, so that
# training a block takes a few dozen steps and rendering a 64x48 view well under a second.
TINY_STORE_SETTINGS = {
    "partition": {"strategy": "clusters", "clusters": 2, "spacing_m": 60.0},
    "model": {
        "hashgrid": {"log2_table_size": 14, "levels": 8, "max_resolution": 512},
        "occupancy": {"resolution": 32},
        "sampler": {"min_step": 1.0 / 128.0, "cone_angle": 1.0 / 32.0, "contracted_steps": 32, "max_samples_per_ray": 96},
    },
    "train": {"steps": 80, "samples_per_step": 16384, "max_rays": 1024, "eval_views": 0, "checkpoint_every_s": 3600.0,
              "bake_grid": {"max_resolution": 64}},
    "stream": {"visibility_size": 16, "match": {"steps": 20, "views": 3, "width": 24, "batch_rays": 512}},
}


@pytest.fixture
def single_torch_thread():  # noqa: ANN201
    """Run a test on one torch thread: the tensors of tiny models are so small that a second thread
    only adds synchronisation, which costs dearly on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_store(tiny_city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A block store of ``tiny_city`` split into 2 overlapping blocks (k-means of the camera
    positions), each trained a few dozen steps in-process with a small model; its path. Shared by
    the session: tests that change a store copy it first (``tiny_store_copy``)."""
    import warnings

    import torch

    from blocknerf.capture.transforms import read_capture
    from blocknerf.cli.settings import Settings
    from blocknerf.training.cluster import ClusterConfig, train_blocks
    from blocknerf.config import replace, to_dict
    from blocknerf.store import BlockStore
    from partitioning import plan_blocks

    settings = replace(Settings(), TINY_STORE_SETTINGS, where="TINY_STORE_SETTINGS")
    capture = read_capture(tiny_city)
    geo = capture.geo_origin
    plan = plan_blocks(capture.camera_arrays(), settings.partition, geo_origin=None if geo is None else (geo.lat, geo.lon, geo.alt))
    url = tmp_path_factory.mktemp("tiny_store") / "city.zarr"
    BlockStore.create(url, plan=plan, capture=capture, config=to_dict(settings))
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # Known, harmless warnings of the trainer this fixture only uses to make a store.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            # One torch thread: with tensors this small, more threads only wait on each other.
            report = train_blocks(str(url), None, settings.model, settings.train, ClusterConfig(in_process=True, threads_per_worker=1))
    finally:
        torch.set_num_threads(threads)
    assert not report.failed, report.failed
    assert len(report.trained) == 2
    return url


@pytest.fixture
def tiny_store_copy(tiny_store: Path, tmp_path: Path) -> Path:
    """A private copy of ``tiny_store`` that a test may change."""
    import shutil

    copy = tmp_path / "city.zarr"
    shutil.copytree(tiny_store, copy)
    return copy


class FakeBlock:
    """A block for streaming tests: renders colour ``color + 0.1 * direction`` (+ the first three
    values of its appearance code), opacity 1 and a constant predicted visibility; counts renders."""

    def __init__(
        self,
        block_id: str,
        *,
        version: int = 1,
        center: tuple[float, float, float] = (0.0, 0.0, 0.0),
        radius: float = 10.0,
        color: tuple[float, float, float] = (0.5, 0.5, 0.5),
        nbytes: int = 100,
        visibility: float = 0.9,
        appearance_dim: int = 3,
    ) -> None:
        from types import SimpleNamespace

        self.block_id = block_id
        self.version = version
        self.bounds = SimpleNamespace(center=tuple(float(c) for c in center), radius=float(radius))
        self.nbytes = nbytes
        self.color = color
        self.visibility = visibility
        self.appearance_dim = appearance_dim
        self.renders = 0
        self.last_appearance = None

    def render_rays(self, rays):  # noqa: ANN001, ANN201 - the RenderableBlock protocol
        import torch

        from blocknerf.model.renderer import RenderResult

        self.renders += 1
        n = len(rays)
        rgb = torch.tensor(self.color, dtype=torch.float32).expand(n, 3) + 0.1 * rays.directions
        if rays.appearance is not None:
            self.last_appearance = rays.appearance[0].clone()
            rgb = rgb + rays.appearance[:, :3]
        ones = torch.ones(n)
        return RenderResult(rgb, 10.0 * ones, ones, self.visibility * ones)

    def appearance_code(self, frame_id=None):  # noqa: ANN001, ANN201
        import torch

        return torch.zeros(self.appearance_dim)


class FakeSource:
    """A BlockSource over FakeBlocks: records loads, publishes new versions on demand.

    ``estimate_scale`` scales the size estimates the cache gets before loading (below 1: blocks
    turn out larger than their metadata said)."""

    def __init__(self, blocks, *, estimate_scale: float = 1.0, block_loads=None) -> None:  # noqa: ANN001
        self.blocks = {(b.block_id, b.version): b for b in blocks}
        self.versions = {b.block_id: b.version for b in blocks}
        self.serial = 1
        self.estimate_scale = estimate_scale
        self.loads = []
        self.document = None
        self.block_loads = block_loads  # optional callable(key) run inside load (e.g. to wait)

    def published(self):  # noqa: ANN201
        return self.serial, dict(self.versions)

    def regions(self):  # noqa: ANN201
        import numpy as np

        ids = sorted(self.versions)
        latest = [self.blocks[(b, self.versions[b])] for b in ids]
        return ids, np.array([b.bounds.center for b in latest], dtype=float).reshape(-1, 3), np.array([b.bounds.radius for b in latest])

    def estimate_nbytes(self, key):  # noqa: ANN001, ANN201
        block = self.blocks[key]
        return int(getattr(block, "metadata_nbytes", block.nbytes) * self.estimate_scale)

    def load(self, key):  # noqa: ANN001, ANN201
        if self.block_loads is not None:
            self.block_loads(key)
        self.loads.append(key)
        return self.blocks[key]

    def appearance_document(self):  # noqa: ANN201
        return self.document

    def publish(self, block: FakeBlock) -> None:
        self.blocks[(block.block_id, block.version)] = block
        self.versions[block.block_id] = block.version
        self.serial += 1


def fake_grid(n: int, *, spacing: float = 10.0, radius: float | None = None, nbytes: int = 100) -> list[FakeBlock]:
    """``n`` x ``n`` fake blocks on a square lattice of ``spacing`` (radius = spacing: 50% overlap),
    each of its own colour."""
    blocks = []
    for i in range(n):
        for j in range(n):
            color = (0.2 + 0.6 * i / max(n - 1, 1), 0.2 + 0.6 * j / max(n - 1, 1), 0.5)
            blocks.append(
                FakeBlock(f"b{i:03d}_{j:03d}", center=(i * spacing, j * spacing, 0.0), radius=radius or spacing, color=color, nbytes=nbytes)
            )
    return blocks


def fake_view(position, *, yaw_deg: float = 0.0, size: tuple[int, int] = (8, 6)):  # noqa: ANN001, ANN201
    """A level CameraView at ``position`` (3,) looking along ``yaw_deg`` (90 deg horizontal fov)."""
    import math

    import numpy as np

    from blocknerf.capture.frames import Intrinsics
    from partitioning.layouts import heading_poses
    from streaming.protocol import CameraView

    c2w = heading_poses(np.asarray(position, dtype=float).reshape(1, 3), np.array([math.radians(yaw_deg)]))[0]
    return CameraView(c2w, Intrinsics.from_fov(size[0], size[1], math.radians(90.0)))


@pytest.fixture
def fakes():  # noqa: ANN201
    """Fake blocks for streaming tests: ``fakes.Block``, ``fakes.Source``, ``fakes.grid(n)``,
    ``fakes.view(position)``."""
    from types import SimpleNamespace

    return SimpleNamespace(Block=FakeBlock, Source=FakeSource, grid=fake_grid, view=fake_view)
