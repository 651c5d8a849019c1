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


@pytest.fixture(scope="session")
def change_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A re-capture of ``tiny_city`` with changes (``blocknerf synth OUT --grid 1x1 --size 32x24
    --change``): what the tests' updates merge; its directory."""
    from blocknerf.cli.main import main

    out = tmp_path_factory.mktemp("change") / "city"
    assert main(["synth", str(out), "--grid", "1x1", "--size", "32x24", "--change", "--quiet"]) == 0
    return out


# -- streaming -------------------------------------------------------------------------------------
# The trained tiny store: the tiny preset (``blocknerf/presets/tiny.yaml``: a small model and a short
# step schedule along rays) with these differences: 2 blocks, 80 steps (a block trains in seconds)
# and a small appearance-matching run.
TINY_STORE_OVERRIDES = {
    "partition": {"strategy": "clusters", "clusters": 2, "spacing_m": 60.0},
    "train": {"steps": 80, "bake_grid": {"max_resolution": 64}},
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
    import torch

    from blocknerf.capture.transforms import read_capture
    from blocknerf.cli.settings import Settings
    from blocknerf.config import read_preset, replace, to_dict
    from blocknerf.store import BlockStore
    from blocknerf.training.cluster import ClusterConfig, train_blocks
    from partitioning import plan_blocks

    tiny = replace(Settings(), read_preset("tiny"), where="preset tiny")
    settings = replace(tiny, TINY_STORE_OVERRIDES, where="TINY_STORE_OVERRIDES")
    capture = read_capture(tiny_city)
    geo = capture.geo_origin
    plan = plan_blocks(capture.camera_arrays(), settings.partition, geo_origin=None if geo is None else (geo.lat, geo.lon, geo.alt))
    url = tmp_path_factory.mktemp("tiny_store") / "city.zarr"
    BlockStore.create(url, plan=plan, capture=capture, config=to_dict(settings))
    threads = torch.get_num_threads()
    try:
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
    values of its appearance code), opacity 1 and a constant predicted visibility; counts renders.

    ``level_voxels_m``: voxel size of each level of detail, coarsest first (one level by default);
    ``level_nbytes``: bytes of each level (``nbytes`` for all by default). A loaded level is a copy
    whose ``level`` says which and whose colour is darker by ``0.1`` per level below the finest."""

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
        level_voxels_m: tuple[float, ...] = (0.0,),
        level_nbytes: tuple[int, ...] | None = None,
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
        self.level_voxels_m = tuple(level_voxels_m)
        self.level_nbytes = tuple(level_nbytes) if level_nbytes is not None else (nbytes,) * len(self.level_voxels_m)
        self.level = len(self.level_voxels_m) - 1

    def at_level(self, level: int) -> FakeBlock:
        """This block's level ``level`` (itself for the finest)."""
        import copy

        if level == len(self.level_voxels_m) - 1:
            return self
        part = copy.copy(self)
        part.level, part.nbytes = level, self.level_nbytes[level]
        part.color = tuple(c - 0.1 * (len(self.level_voxels_m) - 1 - level) for c in self.color)
        return part

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
        self.level_loads = []
        self.document = None
        self.block_loads = block_loads  # optional callable(key) run inside load (e.g. to wait)

    def published(self):  # noqa: ANN201
        return self.serial, dict(self.versions)

    def regions(self):  # noqa: ANN201
        import numpy as np

        ids = sorted(self.versions)
        latest = [self.blocks[(b, self.versions[b])] for b in ids]
        return ids, np.array([b.bounds.center for b in latest], dtype=float).reshape(-1, 3), np.array([b.bounds.radius for b in latest])

    def levels(self, key):  # noqa: ANN001, ANN201
        return getattr(self.blocks[key], "level_voxels_m", (0.0,)) if key in self.blocks else (0.0,)

    def estimate_nbytes(self, key):  # noqa: ANN001, ANN201
        block = self.blocks[key[:2]]
        levels = getattr(block, "level_nbytes", ())
        nbytes = levels[key[2]] if key[2] < len(levels) - 1 else getattr(block, "metadata_nbytes", block.nbytes)
        return int(nbytes * self.estimate_scale)

    def load(self, key):  # noqa: ANN001, ANN201
        """Level ``key[2]`` of block ``key[:2]``; ``loads`` records the block, ``level_loads`` the level."""
        from blocknerf.errors import InputError

        if self.block_loads is not None:
            self.block_loads(key[:2])
        if key[:2] not in self.blocks:
            # As the store does: an error the command line reports in one line, not a KeyError.
            raise InputError(None, f"block {key[0]} has no version {key[1]}")
        self.loads.append(key[:2])
        self.level_loads.append(tuple(key))
        block = self.blocks[key[:2]]
        # Blocks of other tests' own kinds (e.g. a ground-truth block) have one level.
        return block.at_level(key[2]) if hasattr(block, "at_level") else block

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


# -- object storage --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A moto S3 server on a free port of 127.0.0.1 (started here, stopped at the end of the
    session) and the environment that points boto3/s3fs at it: a dict of variables to pass to
    subprocesses. No traffic leaves 127.0.0.1."""
    import socket
    import subprocess
    import sys
    import urllib.request

    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=fh, stderr=fh)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # readiness: bounded, ~30 s at most
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"moto server exited: {log.read_text()[-500:]}")
                _pause(0.1)
        else:
            pytest.fail("moto server did not start within 30 s")
        env = {
            "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1",
        }
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pause(seconds: float) -> None:
    """A bounded wait for a server to become ready (the only kind of wait the tests use)."""
    import threading

    threading.Event().wait(seconds)


@pytest.fixture
def s3_env(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``s3_server``'s variables set in this process too (for in-process checks), and a fresh bucket name."""
    import uuid

    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    import s3fs

    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir(bucket)
    return {**s3_server, "BUCKET": bucket}
