"""The block store: records round-trip, versions and records revisions are invisible until
published, publication history, checkpoints, gc, fault injection."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import zarr

from blocknerf.capture.transforms import read_capture
from blocknerf.errors import StoreError
from blocknerf.store import FAULT_ENV, FAULT_EXIT_CODE, FAULT_POINTS, BlockStore, checksum_arrays
from partitioning import PartitionConfig, plan_blocks


@pytest.fixture(scope="module")
def capture(tiny_city):
    return read_capture(tiny_city)


@pytest.fixture(scope="module")
def plan(capture):
    return plan_blocks(capture.camera_arrays(), PartitionConfig(spacing_m=60.0))


@pytest.fixture
def store(tmp_path, capture, plan):
    return BlockStore.create(tmp_path / "city.zarr", plan=plan, capture=capture, config={"train": {"steps": 5}})


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"field.w": rng.standard_normal((4, 3)).astype(np.float32), "occupancy_bits": rng.integers(0, 255, 16, dtype=np.uint8)}


def test_records_round_trip(store, capture, plan):
    again = BlockStore.open(store.url)
    assert again.plan == plan
    assert again.capture.frames == capture.frames
    assert again.capture.geo_origin == capture.geo_origin
    assert again.config == {"train": {"steps": 5}}
    assert again.geo_origin == capture.geo_origin.to_dict()


def test_create_refuses_to_overwrite_without_force(store, capture, plan):
    with pytest.raises(StoreError, match="already exists"):
        BlockStore.create(store.url, plan=plan, capture=capture)
    BlockStore.create(store.url, plan=plan, capture=capture, force=True)


@pytest.mark.parametrize("kind", ["missing", "plain-directory", "foreign-zarr"])
def test_open_rejects_what_is_not_a_store(tmp_path, kind):
    path = tmp_path / "x.zarr"
    if kind == "plain-directory":
        path.mkdir()
    elif kind == "foreign-zarr":
        zarr.open_group(str(path), mode="w").attrs["other"] = 1
    with pytest.raises(StoreError) as err:
        BlockStore.open(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_version_is_invisible_until_published(store):
    block = store.plan.ids[0]
    v = store.write_version(block, _arrays(), {"note": "first"})
    assert v == 1
    assert store.manifest().version_of(block) is None
    with pytest.raises(StoreError, match="no published version"):
        store.read_published(block)
    store.publish({block: v})
    version, arrays, attrs = store.read_published(block)
    assert version == 1 and attrs["note"] == "first" and attrs["checksum"] == checksum_arrays(_arrays())
    assert all(np.array_equal(arrays[k], _arrays()[k]) for k in arrays)
    # A reader opened before the publication sees it too: the manifest is re-read.
    assert BlockStore.open(store.url).manifest().version_of(block) == 1


def test_incomplete_versions_are_ignored_and_never_published(store):
    block = store.plan.ids[0]
    store.write_version(block, _arrays(), {})
    # A crashed writer leaves arrays but no "complete" attribute.
    partial = zarr.open_group(store.url, mode="r+").require_group(f"blocks/{block}/v2")
    partial.create_array("field.w", data=np.zeros((4, 3), np.float32))
    assert [v.version for v in store.versions(block)] == [1]
    with pytest.raises(StoreError, match="not complete"):
        store.publish({block: 2})
    assert store.write_version(block, _arrays(1), {}) == 3


def test_checksum_detects_corruption(store):
    block = store.plan.ids[0]
    v = store.write_version(block, _arrays(), {})
    zarr.open_array(store.url, path=f"blocks/{block}/v{v}/field.w", mode="r+")[0, 0] = 42.0
    with pytest.raises(StoreError, match="checksum"):
        store.read_version(block, v, verify=True)


def test_checkpoints_keep_only_the_newest(store):
    block = store.plan.ids[0]
    assert store.latest_checkpoint(block) is None
    store.save_checkpoint(block, 10, {"a": np.arange(3)}, {"loop": {"step": 10}})
    store.save_checkpoint(block, 20, {"a": np.arange(4)}, {"loop": {"step": 20}})
    ckpt = store.latest_checkpoint(block)
    assert ckpt.step == 20 and np.array_equal(ckpt.arrays["a"], np.arange(4)) and ckpt.attrs["loop"]["step"] == 20
    assert list(zarr.open_group(store.url, path=f"blocks/{block}/checkpoints", mode="r").group_keys()) == ["s000000020"]
    store.clear_checkpoints(block)
    assert store.latest_checkpoint(block) is None


def test_publish_records_each_blocks_history(store):
    a, b = store.plan.ids[0], "b_other"  # the store does not check ids against the plan
    for seed in range(4):
        store.write_version(a, _arrays(seed), {})
    store.write_version(b, _arrays(9), {})
    serials = [store.publish({a: 1, b: 1}).serial, store.publish({a: 3}).serial, store.publish({a: 2}).serial]
    manifest = store.manifest()
    assert serials == [1, 2, 3] and manifest.serial == 3
    assert (manifest.blocks[a].version, manifest.blocks[a].history) == (2, (1, 3))
    assert (manifest.blocks[b].version, manifest.blocks[b].history) == (1, ())
    assert manifest.blocks[a].checksum == checksum_arrays(_arrays(1))
    # Publishing the published version again changes nothing about the block.
    assert store.publish({a: 2}).blocks[a] == manifest.blocks[a]


@pytest.mark.parametrize(("keep", "left"), [(1, [3]), (2, [2, 3]), (3, [1, 2, 3])], ids=["keep-1", "keep-2", "keep-3"])
def test_gc_keeps_the_published_and_recently_published_versions(store, keep, left):
    block = store.plan.ids[0]
    for seed in range(5):
        store.write_version(block, _arrays(seed), {})
    for v in (1, 2, 3):  # published in turn; 4 and 5 never were
        store.publish({block: v})
    partial = zarr.open_group(store.url, mode="r+").require_group(f"blocks/{block}/v6")  # a killed write
    partial.create_array("field.w", data=np.zeros(2, np.float32))
    assert store.gc(keep, dry_run=True).versions == tuple((block, v) for v in range(1, 7) if v not in left)
    assert [v.version for v in store.versions(block)] == [1, 2, 3, 4, 5]  # a dry run deletes nothing
    result = store.gc(keep)
    assert result.versions == tuple((block, v) for v in range(1, 7) if v not in left)
    assert [v.version for v in store.versions(block)] == left
    assert "v6" not in zarr.open_group(store.url, path=f"blocks/{block}", mode="r")
    with pytest.raises(StoreError, match="published"):
        store.delete_version(block, 3)
    with pytest.raises(StoreError, match="at least 1"):
        store.gc(0)


def test_a_manifest_without_history_counts_older_versions_as_published(store):
    block = store.plan.ids[0]
    for seed in range(3):
        store.write_version(block, _arrays(seed), {})
    store.publish({block: 2})
    # A store written before manifests recorded history (schema 1).
    root = zarr.open_group(store.url, mode="r+")
    legacy = dict(root.attrs["manifest"], schema_version=1)
    legacy["blocks"] = {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in legacy["blocks"].items()}
    del legacy["records"]
    root.attrs["manifest"] = legacy
    manifest = store.manifest()
    assert manifest.records == 0 and manifest.blocks[block].history is None
    assert store.published_history(block, manifest.blocks[block]) == (1,)
    assert store.publish({block: 3}).blocks[block].history == (1, 2)
    assert store.gc(keep=2).versions == ((block, 1),)


def test_records_revisions_are_invisible_until_published(store, capture, plan):
    fewer = dataclasses.replace(capture, frames=capture.frames[:-5])
    smaller = dataclasses.replace(plan, blocks=tuple(dataclasses.replace(b, frames=b.frames[:3], shares=b.shares[:3]) for b in plan.blocks))
    assert store.write_records(capture, plan) == 0  # the published content: nothing to write
    revision = store.write_records(fewer, smaller)
    assert revision == 1 and store.write_records(fewer, smaller) == 1  # the same content is reused
    assert store.plan == plan and len(store.capture) == len(capture)
    assert store.read_plan(1) == smaller and len(store.read_capture(1)) == len(capture) - 5
    reader = BlockStore.open(store.url)
    store.publish({}, records=1, config={"train": {"steps": 7}})
    # One write switched the manifest, the records and the settings for every reader.
    assert reader.plan == smaller and reader.capture.frames == fewer.frames
    assert reader.manifest().records == 1 and reader.config == {"train": {"steps": 7}}
    assert store.write_records(capture, plan) == 2
    assert store.gc(keep=1).records == (0, 2)
    assert store.records_revisions() == [1] and BlockStore.open(store.url).plan == smaller
    with pytest.raises(StoreError, match="records revision 5 is not complete"):
        store.publish({}, records=5)


def test_gc_removes_the_temporary_files_of_killed_writes(store):
    torn = os.path.join(store.url, "zarr.0123abcd.partial")
    with open(torn, "w") as fh:
        fh.write('{"zarr_format": 3, "node_type": "gro')
    assert BlockStore.open(store.url).manifest().serial == 0  # the store opens regardless
    assert store.gc(keep=1).temporary == ("zarr.0123abcd.partial",)
    assert not os.path.exists(torn)


@pytest.mark.parametrize("armed", [False, True], ids=["unset", "set"])
def test_a_fault_point_exits_only_when_named(armed):
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if armed:
        env[FAULT_ENV] = "during_manifest_swap"
    code = "from blocknerf.store import fault_point; fault_point('during_training'); fault_point('during_manifest_swap'); print('alive')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout.strip()) == ((FAULT_EXIT_CODE, "") if armed else (0, "alive"))
    assert {"during_training", "during_manifest_swap"} <= set(FAULT_POINTS)


def test_read_only_store_refuses_writes(store):
    ro = BlockStore.open(store.url)
    with pytest.raises(StoreError, match="read-only"):
        ro.write_version(ro.plan.ids[0], _arrays(), {})
    with pytest.raises(StoreError, match="read-only"):
        ro.publish({})


def test_documents_round_trip(store):
    assert store.read_document("appearance") is None
    store.write_document("appearance", {"b": [1.0, 2.0]})
    assert BlockStore.open(store.url).read_document("appearance") == {"b": [1.0, 2.0]}
