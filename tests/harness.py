"""Helpers of the reliability tests: run the real ``blocknerf`` command, and check a store after a fault."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TINY_CONFIG = """\
partition: {strategy: clusters, clusters: 2, spacing_m: 60.0}
model:
  hashgrid: {log2_table_size: 12, levels: 6, max_resolution: 256}
  occupancy: {resolution: 16}
  sampler: {min_step: 0.0078125, cone_angle: 0.03125, contracted_steps: 16, max_samples_per_ray: 48}
train: {steps: 12, samples_per_step: 4096, max_rays: 256, eval_views: 0, checkpoint_every_s: 3600.0, checkpoint_every_steps: 4,
        bake_grid: {max_resolution: 64}}
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


KILL_SEED_ENV = "BLOCKNERF_KILL_SEED"
"""Set it to the base seed a failed kill test printed, to draw the same kill moments again."""


@dataclass(frozen=True)
class Kill:
    """One SIGKILL sent from outside to a ``blocknerf`` process while it held a store's writer lease."""

    args: tuple[str, ...]
    where: str
    """``local`` or ``s3``."""
    seed: int
    delay_s: float
    """Seconds after the process was seen holding the lease (drawn from ``random.Random(seed)``)."""
    returncode: int
    log: str
    """The tail of what the process wrote (stdout and stderr)."""

    @property
    def landed(self) -> bool:
        """Whether the process was still running when the signal came (else it had finished)."""
        return self.returncode == -signal.SIGKILL

    def __str__(self) -> str:
        outcome = "killed" if self.landed else f"had exited (rc {self.returncode}) before"
        return (f"{self.where} `blocknerf {' '.join(self.args[:1])}` seed {self.seed}: {outcome} SIGKILL "
                f"{self.delay_s:.3f} s after it took the writer lease")


def kill_blocknerf(args: Sequence[str], *, url: str, seed: int, window_s: float, where: str, log: Path,
                   env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 120) -> Kill:
    """Start ``blocknerf ARGS`` (a real process writing the store at ``url``), wait until it holds
    the store's writer lease (from then on it writes), then SIGKILL it after a delay drawn
    uniformly from [0, ``window_s``) by ``random.Random(seed)``. Waits are bounded by ``timeout``."""
    from blocknerf.store.lease import read_holder
    from blocknerf.store.conditional import store_objects

    delay = random.Random(seed).uniform(0.0, window_s)
    objects = store_objects(url)
    with open(log, "w+") as out:
        proc = subprocess.Popen(blocknerf_command(args), stdout=out, stderr=subprocess.STDOUT, env=child_env(env), cwd=cwd)
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                holder, _ = read_holder(objects)
                if holder is not None and holder.pid == proc.pid:
                    break
                threading.Event().wait(0.01 if where == "local" else 0.05)
            else:
                if proc.poll() is None:
                    raise AssertionError(f"`blocknerf {args[0]}` (seed {seed}) did not take the writer lease within {timeout} s")
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            returncode = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        tail = out.read()[-2000:]
    return Kill(tuple(map(str, args)), where, seed, delay, returncode, tail)
