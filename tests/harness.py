"""Helpers of the reliability tests: run the real ``blocknerf`` command, and check a store after a fault."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

TINY_CONFIG = """\
partition: {strategy: clusters, clusters: 2, spacing_m: 60.0}
model:
  hashgrid: {log2_table_size: 12, levels: 6, max_resolution: 256}
  occupancy: {resolution: 16}
  sampler: {min_step: 0.0078125, cone_angle: 0.03125, contracted_steps: 16, max_samples_per_ray: 48}
train: {steps: 12, samples_per_step: 4096, max_rays: 256, eval_views: 0, checkpoint_every_s: 3600.0, checkpoint_every_steps: 4}
"""
"""Settings of the reliability tests: the smallest model that trains, a checkpoint every 4 steps."""


def blocknerf_command(args: Sequence[str]) -> list[str]:
    """The ``blocknerf`` command line, run with this interpreter."""
    return [sys.executable, "-m", "blocknerf", *map(str, args)]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``blocknerf`` child: this one, this checkout first on the path, one thread."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", **(extra or {})}


def run_blocknerf(args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``blocknerf ARGS`` to completion (bounded by ``timeout``)."""
    return subprocess.run(blocknerf_command(args), capture_output=True, text=True, env=child_env(env), cwd=cwd, timeout=timeout)


def assert_store_sound(url: str) -> int:
    """After a fault: the store opens, fsck is clean, and every published block renders (a small
    view from its centre, finite, nothing skipped). Returns the number of published blocks."""
    from blocknerf.capture.frames import Intrinsics
    from blocknerf.model.block import load_block
    from blocknerf.store import BlockStore
    from blocknerf.store.integrity import check_store
    from streaming import BlockStreamer, Compositor
    from streaming.config import StreamConfig
    from streaming.protocol import CameraView

    store = BlockStore.open(url)
    report = check_store(store, load=load_block)
    assert report.clean, [p.message for p in report.problems]
    published = store.manifest().blocks
    if not published:
        return 0
    comp = Compositor(BlockStreamer.open(store, StreamConfig(visibility_threshold=0.0, max_blocks=1)))
    k = Intrinsics(fx=8.0, fy=8.0, cx=4.0, cy=3.0, width=8, height=6)
    for spec in store.plan.blocks:
        if spec.id not in published:
            continue
        c2w = np.eye(4)
        c2w[:3, 3] = spec.center
        frame = comp.render(CameraView(c2w, k))
        assert not frame.skipped and np.isfinite(frame.rgb).all()
    return len(published)
