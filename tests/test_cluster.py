"""Training blocks on a real dask cluster, through the ``blocknerf train`` command.

A dask scheduler and two ``dask worker`` processes run on 127.0.0.1 as subprocesses. While the tiny
2-block city trains through ``--scheduler``, the worker process of a block that has a checkpoint is
killed: the scheduler must re-run that block on the other worker, which resumes from the checkpoint.
Then every block is published, loads and renders, and a second run trains nothing. A block whose
data is bad (a corrupt image) fails with its error while the other block finishes on a local cluster.

Every subprocess runs in its own process group, every wait on one is bounded, and all of them are
killed when the test (or the module) ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from blocknerf.cli.settings import Settings, storable
from blocknerf.config import read_preset, replace
from blocknerf.model.block import load_block
from blocknerf.store import BlockStore

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

STEPS = 60
CHECKPOINT_EVERY = 15
# The tiny preset with 2 blocks and a checkpoint every CHECKPOINT_EVERY steps, so that a block is
# killed between checkpoints, not before its first one or after its last one.
SETTINGS = replace(
    replace(Settings(), read_preset("tiny"), where="preset tiny"),
    {
        "partition": {"strategy": "clusters", "clusters": 2, "spacing_m": 60.0},
        "model": {"occupancy": {"warmup_steps": 8}},
        "train": {"steps": STEPS, "warmup_steps": 5, "checkpoint_every_steps": CHECKPOINT_EVERY},
    },
    where="tests/test_cluster.py SETTINGS",
)
# The most any one wait on a subprocess may take: generous, because this machine may be busy.
WAIT_S = 240.0
# One torch/BLAS thread per process: two workers share two cores.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class Processes:
    """Subprocesses started by a test, each in a new session (its own process group); ``close``
    kills every group, so that nothing (not even children a process started) outlives the test."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[subprocess.Popen] = []
        self.names: dict[int, str] = {}

    def start(self, name: str, argv: list[str], *, cwd: Path) -> subprocess.Popen:
        """Start ``argv``; stdout goes to ``<log_dir>/<name>.out``, stderr to ``<name>.err``."""
        env = {**os.environ, **ONE_THREAD}
        with open(self.log_dir / f"{name}.out", "wb") as out, open(self.log_dir / f"{name}.err", "wb") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True)
        self.started.append(proc)
        self.names[proc.pid] = name
        return proc

    def output(self, name: str) -> tuple[str, str]:
        """(stdout, stderr) a process wrote so far."""
        return tuple((self.log_dir / f"{name}.{kind}").read_text(errors="replace") for kind in ("out", "err"))

    def wait_until(self, condition, what: str, *, watch: subprocess.Popen, timeout_s: float = WAIT_S):  # noqa: ANN001, ANN201
        """Poll ``condition()`` until it returns something truthy (returned); fail after ``timeout_s``
        or as soon as ``watch`` exits. Between polls this blocks in ``watch.wait``, not in a sleep."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = condition()
            if found:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"gave up after {timeout_s:.0f} s waiting for {what}")
            try:
                code = watch.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            found = condition()
            if found:
                return found
            name = self.names[watch.pid]
            pytest.fail(f"{name} exited ({code}) while waiting for {what}:\n{self.output(name)[1][-3000:]}")

    def finish(self, proc: subprocess.Popen, timeout_s: float = WAIT_S) -> tuple[int, str, str]:
        """Wait for ``proc`` to exit: (exit status, stdout, stderr); fail after ``timeout_s``."""
        name = self.names[proc.pid]
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} did not finish in {timeout_s:.0f} s:\n{self.output(name)[1][-3000:]}")
        return (code, *self.output(name))

    def close(self) -> None:
        for proc in self.started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the group is gone already
            proc.wait(timeout=30)


def blocknerf(*args: str) -> list[str]:
    """The argv of a ``blocknerf`` command run by this interpreter."""
    return [sys.executable, "-m", "blocknerf", *args]


def make_store(city: Path, store: Path) -> BlockStore:
    """Plan ``city`` into 2 blocks and create ``store`` with SETTINGS, as ``blocknerf partition`` does."""
    from blocknerf.cli.main import main

    config = store.parent / "settings.yaml"
    config.write_text(yaml.safe_dump(storable(SETTINGS)))
    assert main(["partition", str(city), "--store", str(store), "--config", str(config), "--map", str(store.parent / "map.png"), "--json"]) == 0
    opened = BlockStore.open(store)
    assert len(opened.plan.ids) == 2
    return opened


def checkpoint_steps(store: Path) -> dict[str, int]:
    """Block id -> step of its newest complete checkpoint, read from the store's files."""
    steps = {}
    for meta in store.glob("blocks/*/checkpoints/s*/zarr.json"):
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, json.JSONDecodeError):
            continue  # being written or deleted right now
        if attrs.get("complete"):
            block_id = meta.parents[2].name
            steps[block_id] = max(steps.get(block_id, 0), int(attrs["step"]))
    return steps


def finished_blocks(store: Path) -> set[str]:
    """Blocks that have a complete version (published or not), read from the store's files."""
    done = set()
    for meta in store.glob("blocks/*/v*/zarr.json"):
        try:
            if json.loads(meta.read_text()).get("attributes", {}).get("complete"):
                done.add(meta.parents[1].name)
        except (OSError, json.JSONDecodeError):
            continue
    return done


def render_is_sane(store: BlockStore, block_id: str) -> None:
    """The published block loads and renders one of its held-out views to finite colours in [0, 1]."""
    block = load_block(store, block_id)
    by_id = {f.id: f for f in store.capture.frames}
    view = next(by_id[f] for f in store.plan.block(block_id).frames if by_id[f].split == "test")
    with torch.no_grad():
        out = block.render_view(view.c2w, view.intrinsics, exposure=view.exposure)
    assert out.rgb.shape == (view.intrinsics.height, view.intrinsics.width, 3)
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.depth).all()
    assert float(out.rgb.min()) >= 0.0 and float(out.rgb.max()) <= 1.0
    assert float(out.rgb.std()) > 0.0  # an image, not a constant


# -- the dask cluster ---------------------------------------------------------------------------------
@dataclass
class DaskCluster:
    """A ``dask scheduler`` and named ``dask worker`` processes (no nanny: a killed worker stays dead,
    so its task must move to another worker) on 127.0.0.1."""

    address: str
    workers: dict[str, subprocess.Popen]
    """Worker name -> its process (with --no-nanny, the worker itself)."""


def start_dask_cluster(procs: Processes, workdir: Path, n_workers: int) -> DaskCluster:
    scheduler_file = workdir / "scheduler.json"
    scheduler = procs.start(
        "scheduler",
        # --idle-timeout: should this test's process die without cleaning up, the scheduler (and
        # with --death-timeout its workers) still go away by themselves.
        [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file), "--idle-timeout", "600s"],
        cwd=workdir,
    )

    def address() -> str | None:
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, json.JSONDecodeError, KeyError):
            return None

    addr = procs.wait_until(address, "the dask scheduler's address", watch=scheduler)
    workers = {}
    for i in range(n_workers):
        name = f"w{i}"
        workers[name] = procs.start(
            f"worker-{name}",
            [sys.executable, "-m", "dask", "worker", addr, "--name", name, "--nworkers", "1", "--nthreads", "1",
             "--no-nanny", "--no-dashboard", "--death-timeout", "60s", "--local-directory", str(workdir / name)],
            cwd=workdir,
        )
    return DaskCluster(addr, workers)


@dataclass
class KillRun:
    """What happened in the scenario: a run through the scheduler with a worker killed mid-block."""

    store: Path
    code: int
    report: dict[str, Any]
    stderr: str
    victim: str
    """The block whose worker was killed."""
    killed_worker: str
    checkpoint_at_kill: int
    """The victim's newest checkpoint step when its worker was killed."""
    command: list[str]
    """The ``blocknerf train`` command that ran."""


@pytest.fixture(scope="module")
def kill_run(tiny_city: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillRun]:
    """Train the 2-block city through a dask scheduler with two workers; kill the worker process of
    a block that has a checkpoint and has not finished; wait for the command to end."""
    from distributed import Client

    work = tmp_path_factory.mktemp("cluster")
    procs = Processes(work)
    try:
        cluster = start_dask_cluster(procs, work, 2)
        store = work / "city.zarr"
        make_store(tiny_city, store)
        with Client(cluster.address, timeout="60s", set_as_default=False) as client:
            client.wait_for_workers(2, timeout=WAIT_S)
            # Which process is which worker: with --no-nanny the worker is the process we started.
            pids = client.run(os.getpid)
            names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
            assert {names[a]: pid for a, pid in pids.items()} == {n: p.pid for n, p in cluster.workers.items()}

            command = blocknerf("train", str(store), "--scheduler", cluster.address, "--threads-per-worker", "1", "--json")
            train = procs.start("train", command, cwd=work)
            procs.wait_until(lambda: checkpoint_steps(store), "a first checkpoint", watch=train)
            # Freeze both workers, so that what is running where cannot change while we choose.
            for proc in cluster.workers.values():
                os.kill(proc.pid, signal.SIGSTOP)
            steps, done = checkpoint_steps(store), finished_blocks(store)
            unfinished = sorted(b for b in steps if b not in done)
            assert unfinished, f"every block with a checkpoint had finished already ({steps}, done {done})"
            victim = unfinished[0]
            running = {names[addr]: [str(k) for k in keys] for addr, keys in client.processing().items()}
            killed = next(name for name, keys in running.items() if any(f"-{victim}-" in k for k in keys))
            cluster.workers[killed].kill()
            cluster.workers[killed].wait(timeout=30)
            for name, proc in cluster.workers.items():
                if name != killed:
                    os.kill(proc.pid, signal.SIGCONT)
            code, out, err = procs.finish(train)
        report = json.loads(out) if out.strip() else {}
        yield KillRun(store, code, report, err, victim, killed, steps[victim], command)
    finally:
        procs.close()


def test_every_block_completes_although_a_worker_was_killed(kill_run: KillRun) -> None:
    assert kill_run.code == 0, kill_run.stderr[-3000:]
    store = BlockStore.open(kill_run.store)
    assert kill_run.report["failed"] == {}
    assert set(kill_run.report["trained"]) == set(store.plan.ids)
    manifest = store.manifest()
    for block_id in store.plan.ids:
        assert manifest.version_of(block_id) == kill_run.report["trained"][block_id]
        assert store.latest_checkpoint(block_id) is None  # a finished block keeps no checkpoint
    # The killed block finished on the worker that survived.
    where = {row["block"]: row["worker"] for row in kill_run.report["timeline"]}
    assert where[kill_run.victim] != kill_run.killed_worker


def test_the_killed_block_resumed_from_its_checkpoint(kill_run: KillRun) -> None:
    store = BlockStore.open(kill_run.store)
    for block_id in store.plan.ids:
        stats = store.version_info(block_id, kill_run.report["trained"][block_id]).attrs["train"]
        assert stats == {k: v for k, v in kill_run.report["stats"][block_id].items() if k != "eval"}
        assert stats["steps"] == STEPS
        if block_id == kill_run.victim:
            # Its step log continues from the checkpoint it had when killed (or a later one, written
            # between the poll and the freeze), rather than restarting at step 0.
            assert kill_run.checkpoint_at_kill <= stats["resumed_from"] < STEPS
            assert stats["resumed_from"] % CHECKPOINT_EVERY == 0
        else:
            assert stats["resumed_from"] == 0


def test_the_stored_blocks_load_and_render(kill_run: KillRun) -> None:
    store = BlockStore.open(kill_run.store)
    for block_id in store.plan.ids:
        render_is_sane(store, block_id)


def test_a_second_run_with_nothing_changed_trains_nothing(kill_run: KillRun, tmp_path: Path) -> None:
    store = BlockStore.open(kill_run.store)
    before = store.manifest()
    versions_before = {b: [v.version for v in store.versions(b)] for b in store.plan.ids}
    procs = Processes(tmp_path)
    try:
        code, out, err = procs.finish(procs.start("again", kill_run.command, cwd=tmp_path))
    finally:
        procs.close()
    assert code == 0, err[-3000:]
    report = json.loads(out)
    assert report["trained"] == {} and report["failed"] == {}
    assert report["skipped"] == {b: f"up to date (v{before.version_of(b)})" for b in store.plan.ids}
    assert store.manifest() == before
    assert {b: [v.version for v in store.versions(b)] for b in store.plan.ids} == versions_before


# -- a block with bad data ----------------------------------------------------------------------------
def test_a_block_with_a_corrupt_image_fails_alone_and_the_exit_code_says_so(tiny_city: Path, tmp_path: Path) -> None:
    city = tmp_path / "city"
    shutil.copytree(tiny_city, city)
    store_path = tmp_path / "city.zarr"
    store = make_store(city, store_path)
    bad_block, good_block = store.plan.blocks
    by_id = {f.id: f for f in store.capture.frames}
    # A training image that only the first block uses: it fails, the second must not notice.
    only_bad = [f for f in bad_block.frames if f not in set(good_block.frames) and by_id[f].is_train]
    image = Path(by_id[only_bad[0]].image_path)
    image.write_bytes(b"this is not a PNG")

    procs = Processes(tmp_path)
    try:
        # A local cluster this time (no --scheduler): the default way the command runs.
        train = procs.start(
            "train", blocknerf("train", str(store_path), "--workers", "2", "--threads-per-worker", "1", "--steps", "10", "--json"), cwd=tmp_path
        )
        code, out, err = procs.finish(train)
    finally:
        procs.close()
    assert code == 1, err[-3000:]
    report = json.loads(out)
    assert set(report["failed"]) == {bad_block.id}
    assert str(image) in report["failed"][bad_block.id] and "unreadable" in report["failed"][bad_block.id]
    assert report["trained"] == {good_block.id: 1}
    assert "blocknerf train: 1 of 2 blocks failed" in err
    store = BlockStore.open(store_path)
    assert store.manifest().version_of(bad_block.id) is None
    assert store.version_info(good_block.id, 1).attrs["train"]["steps"] == 10
    render_is_sane(store, good_block.id)
