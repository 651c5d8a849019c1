"""Kills from outside: SIGKILL real ``blocknerf`` processes at random moments while they write a
store (``train``, ``update``, ``bake``, ``gc``), on a local directory and on S3
(moto server, s3fs). After every kill the store opens, fsck is clean and every published block
renders; then the killed command, run again, completes and publishes.

The moments are drawn from seeded RNGs; the seeds are printed and named in every assertion
message. ``BLOCKNERF_KILL_SEED=<base> pytest tests/test_kills.py`` draws the same moments again.
"""

from __future__ import annotations

import itertools
import random
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import KILL_SEED_ENV, TINY_CONFIG, Kill, assert_store_sound, kill_blocknerf, run_blocknerf

TRAIN_WINDOW_S = 3.0
"""Kill moments of ``train`` and ``update``: up to this long after the process took the lease
(it trains, checkpoints every 4 steps, writes versions and publishes in that time)."""
GC_WINDOW_S = 0.3
"""Kill moments of ``gc``: it deletes for a fraction of a second."""
ATTEMPTS_PER_KILL = 3
"""A process that finished before its moment is not a kill: the next try halves the window."""


@dataclass(frozen=True)
class Plan:
    """How many kills each command gets on one store."""

    train: int
    update: int
    bake: int
    gc: int


LOCAL = Plan(train=6, update=5, bake=3, gc=5)
S3 = Plan(train=1, update=1, bake=0, gc=2)


@pytest.fixture(scope="module")
def kill_seed() -> int:
    """The base seed of this run's kill moments: ``BLOCKNERF_KILL_SEED`` or a fresh one (printed)."""
    import os

    seed = int(os.environ.get(KILL_SEED_ENV) or random.SystemRandom().randrange(1 << 31))
    print(f"kill moments: base seed {seed} (reproduce: {KILL_SEED_ENV}={seed} pytest tests/test_kills.py)")
    return seed


@pytest.fixture(scope="module")
def partitioned(tiny_city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local store of ``tiny_city`` partitioned with ``TINY_CONFIG``, not trained (copied by each test)."""
    from blocknerf.cli.main import main

    root = tmp_path_factory.mktemp("kills")
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    url = root / "city.zarr"
    assert main(["partition", str(tiny_city), "--store", str(url), "--config", str(config), "--map", str(root / "map.png")]) == 0
    return url


@dataclass
class Victims:
    """Where the killed commands run: a store URL, its kind, the environment, a scratch directory."""

    url: str
    where: str
    env: Mapping[str, str]
    scratch: Path
    base_seed: int
    seeds: Iterator[int]

    def reproduce(self) -> str:
        """The command line that draws this run's kill moments again."""
        return f"reproduce: {KILL_SEED_ENV}={self.base_seed} pytest tests/test_kills.py -k {self.where}"

    def kill_then_rerun(self, args: Sequence[str], *, kills: int, window_s: float) -> list[Kill]:
        """Kill ``blocknerf ARGS`` until ``kills`` kills landed, checking the store after each; then
        run it again to completion. Returns every kill sent (a process may finish before its moment)."""
        sent: list[Kill] = []
        misses = 0
        while sum(k.landed for k in sent) < kills:
            assert len(sent) < ATTEMPTS_PER_KILL * kills, (
                f"only {sum(k.landed for k in sent)} of {len(sent)} kills landed:\n" + "\n".join(map(str, sent)) + f"\n{self.reproduce()}"
            )
            kill = kill_blocknerf(args, url=self.url, seed=next(self.seeds), window_s=window_s / 2**misses, where=self.where,
                                  log=self.scratch / f"kill{len(sent)}.log", env=self.env, cwd=self.scratch)
            sent.append(kill)
            misses = 0 if kill.landed else misses + 1
            if not kill.landed:
                assert kill.returncode == 0, f"{kill}: it failed on its own:\n{kill.log}\n{self.reproduce()}"
            checked = time.perf_counter()
            try:
                assert_store_sound(self.url)
            except AssertionError as exc:
                raise AssertionError(f"after {kill}: the store is not sound: {exc}\n{self.reproduce()}") from None
            print(f"{kill}; sound ({time.perf_counter() - checked:.1f} s to check)")
        rerun_started = time.perf_counter()
        rerun = run_blocknerf(args, env=self.env, cwd=self.scratch)
        print(f"{self.where} `blocknerf {args[0]}` rerun: rc {rerun.returncode} in {time.perf_counter() - rerun_started:.1f} s")
        assert rerun.returncode == 0, f"rerun after {sent[-1]} failed:\n{rerun.stdout[-1500:]}{rerun.stderr[-1500:]}\n{self.reproduce()}"
        return sent


def kill_pipeline(victims: Victims, plan: Plan, recapture: Path, *, train_flags: Sequence[str] = (), steps: int = 4) -> list[Kill]:
    """Train (with ``train_flags``), update (``steps`` per block) and gc a store, each killed
    ``plan`` times and then rerun; checks that each rerun finished its command's work. Returns
    every kill sent."""
    from blocknerf.store import BlockStore

    url, where = victims.url, victims.where
    started = time.perf_counter()
    before = BlockStore.open(url).manifest()
    train = ["train", url, "--in-process", "--threads-per-worker", "1", *train_flags]
    sent = victims.kill_then_rerun(train, kills=plan.train, window_s=TRAIN_WINDOW_S)
    store = BlockStore.open(url)
    trained = store.manifest()
    assert set(trained.blocks) == set(store.plan.ids), f"{where} train rerun left blocks unpublished: {trained.blocks}\n{victims.reproduce()}"
    assert trained.serial > before.serial, f"{where} train rerun published nothing\n{victims.reproduce()}"

    update = ["update", url, str(recapture), "--in-process", "--threads-per-worker", "1", "--steps", str(steps), "--all"]
    sent += victims.kill_then_rerun(update, kills=plan.update, window_s=TRAIN_WINDOW_S)
    updated = BlockStore.open(url).manifest()
    assert updated.records != trained.records and updated.serial > trained.serial, f"{where} update not published\n{victims.reproduce()}"
    assert any(updated.version_of(b) != trained.version_of(b) for b in trained.blocks), victims.reproduce()

    if plan.bake:
        sent += victims.kill_then_rerun(["bake", url, "--force", "--quiet"], kills=plan.bake, window_s=TRAIN_WINDOW_S)
        baked = BlockStore.open(url)
        rebaked = baked.manifest()
        assert all(rebaked.version_of(b) > updated.version_of(b) for b in updated.blocks), f"{where} bake rerun published nothing\n{victims.reproduce()}"
        assert all(baked.version_info(b, v.version).attrs.get("baked") for b, v in rebaked.blocks.items()), victims.reproduce()
        updated = rebaked
    sent += victims.kill_then_rerun(["gc", url, "--keep", "1"], kills=plan.gc, window_s=GC_WINDOW_S)
    store = BlockStore.open(url)
    manifest = store.manifest()
    assert manifest.blocks == updated.blocks, f"{where} gc changed what is published\n{victims.reproduce()}"
    for block_id, entry in manifest.blocks.items():
        assert [v.version for v in store.versions(block_id)] == [entry.version], f"{where} gc left versions of {block_id}\n{victims.reproduce()}"
    assert store.records_revisions() == [manifest.records], victims.reproduce()
    assert assert_store_sound(url) == len(store.plan.ids)
    landed = sum(k.landed for k in sent)
    print(f"{where}: {landed} kills landed of {len(sent)} sent ({dict(_by_command(sent))}) in {time.perf_counter() - started:.1f} s")
    return sent


def _by_command(kills: Sequence[Kill]) -> Iterator[tuple[str, int]]:
    """(command, kills that landed) for each command in the order they ran."""
    for command, group in itertools.groupby(kills, key=lambda k: k.args[0]):
        yield command, sum(k.landed for k in group)


@pytest.fixture(scope="module")
def recapture(change_city: Path) -> Path:
    """The re-capture every update of these tests merges."""
    return change_city


def test_kills_during_train_update_bake_and_gc_on_a_local_store(partitioned: Path, recapture: Path, kill_seed: int, tmp_path: Path) -> None:
    url = tmp_path / "city.zarr"
    shutil.copytree(partitioned, url)
    victims = Victims(str(url), "local", {}, tmp_path, kill_seed, itertools.count(kill_seed))
    kills = kill_pipeline(victims, LOCAL, recapture)
    assert sum(k.landed for k in kills) == LOCAL.train + LOCAL.update + LOCAL.bake + LOCAL.gc


@pytest.fixture(scope="module")
def trained(partitioned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``partitioned`` trained in this process (a copy): where the S3 kills start, as requests to
    moto make training on S3 slow."""
    import torch

    from blocknerf.cli.main import main

    url = tmp_path_factory.mktemp("trained") / "city.zarr"
    shutil.copytree(partitioned, url)
    threads = torch.get_num_threads()
    try:
        assert main(["train", str(url), "--in-process", "--threads-per-worker", "1", "--json"]) == 0
    finally:
        torch.set_num_threads(threads)
    return url


@pytest.mark.integration
def test_kills_during_train_update_and_gc_on_s3(s3_env: dict[str, str], trained: Path, recapture: Path, kill_seed: int,
                                                 tmp_path: Path) -> None:
    import s3fs

    from blocknerf.store import BlockStore

    url = f"s3://{s3_env['BUCKET']}/city.zarr"
    s3fs.S3FileSystem().put(str(trained), url.removeprefix("s3://"), recursive=True)
    victims = Victims(url, "s3", s3_env, tmp_path, kill_seed, itertools.count(kill_seed + 1000))
    one = BlockStore.open(url).plan.ids[0]
    # Every request goes through moto: one block retrained, 2 steps a run (no checkpoints; the local
    # test kills those), so that the S3 kills stay within the test budget.
    kills = kill_pipeline(victims, S3, recapture, train_flags=["--blocks", one, "--force", "--steps", "2"], steps=2)
    assert sum(k.landed for k in kills) == S3.train + S3.update + S3.bake + S3.gc


def test_an_interrupted_deletion_is_skipped_by_readers_and_finished_by_gc(tiny_store_copy: Path) -> None:
    """What a kill inside a deletion leaves, made on purpose: a tombstoned version missing a chunk,
    an empty version directory and a torn temporary file. fsck is clean, nothing warns (warnings
    are errors here), and gc removes all of it."""
    import zarr

    from blocknerf.model.block import load_block
    from blocknerf.store import BlockStore
    from blocknerf.store.deletion import TOMBSTONE
    from blocknerf.store.integrity import check_store

    store = BlockStore.open(tiny_store_copy, writable=True)
    block = store.plan.ids[0]
    arrays, attrs = store.read_version(block, 1)
    store.publish({block: store.write_version(block, arrays, attrs)})  # v1 is now published before v2
    v1 = tiny_store_copy / "blocks" / block / "v1"
    zarr.open_group(str(v1), mode="r+").attrs.put(dict(TOMBSTONE))
    next(p for p in v1.rglob("c/*") if p.is_file()).unlink()
    (tiny_store_copy / "blocks" / block / "v9").mkdir()
    (tiny_store_copy / "blocks" / block / "zarr.0123.partial").write_text("{")
    assert [v.version for v in store.versions(block)] == [2]
    assert check_store(store, load=load_block).clean
    result = store.gc(1)
    assert (block, 1) in result.versions and "zarr.0123.partial" in " ".join(result.temporary)
    assert not v1.exists() and not any((tiny_store_copy / ".trash").iterdir())
    assert assert_store_sound(str(tiny_store_copy)) == 2
