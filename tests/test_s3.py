"""The whole pipeline on a real S3 API: moto in server mode on 127.0.0.1, reached through s3fs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import TINY_CONFIG, assert_store_sound, run_blocknerf

pytestmark = pytest.mark.integration


def test_partition_train_render_update_gc_fsck_on_s3_with_a_kill_during_publish(
    s3_env: dict[str, str], tiny_city: Path, change_city: Path, tmp_path: Path
) -> None:
    from blocknerf.store import FAULT_EXIT_CODE, BlockStore

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    url = f"s3://{s3_env['BUCKET']}/city.zarr"

    def ok(*args: str, **kw) -> str:  # noqa: ANN003
        proc = run_blocknerf(args, env=s3_env, cwd=tmp_path, **kw)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    ok("partition", str(tiny_city), "--store", url, "--config", str(config), "--map", str(tmp_path / "map.png"))
    ok("train", url, "--in-process", "--threads-per-worker", "1")
    assert assert_store_sound(url) == 2
    ok("render", url, "--auto", "--frames", "2", "--size", "16x12", "--frames-dir", str(tmp_path / "frames"), "--quiet")
    assert len(list((tmp_path / "frames").glob("*.png"))) == 2
    before = BlockStore.open(url).manifest()

    # A kill halfway through publishing the update: readers keep the manifest before it.
    killed = run_blocknerf(["update", url, str(change_city), "--in-process", "--steps", "4", "--all"],
                           env={**s3_env, "BLOCKNERF_FAULT": "during_manifest_swap"}, cwd=tmp_path)
    assert killed.returncode == FAULT_EXIT_CODE, killed.stderr[-2000:]
    assert BlockStore.open(url).manifest() == before
    assert_store_sound(url)
    # The lease of the killed process lapses at once (its process is gone): the rerun finishes the job.
    out = json.loads(ok("update", url, str(change_city), "--in-process", "--steps", "4", "--json", "--all"))
    assert out["published"], out
    after = BlockStore.open(url).manifest()
    assert after.serial > before.serial
    ok("gc", url, "--keep", "1")
    assert ok("fsck", url).rstrip().endswith("clean")
    assert assert_store_sound(url) == 2


def test_a_reader_sees_groups_another_process_wrote_after_it_listed(s3_env: dict[str, str], tmp_path: Path) -> None:
    """s3fs caches listings per process: a store open in this process must still see the records
    revision or block version that another process (here: a file system of its own) added later."""
    import s3fs
    import zarr

    from blocknerf.store.deletion import child_groups

    url = f"s3://{s3_env['BUCKET']}/groups.zarr"
    root = zarr.open_group(url, mode="w")
    root.require_group("records").require_group("r1")
    records = zarr.open_group(url, mode="r")["records"]
    assert child_groups(records) == ["r1"]  # listed (and cached) by this process
    other = s3fs.S3FileSystem(skip_instance_cache=True)  # another writer, as a second process would be
    other.pipe(f"{s3_env['BUCKET']}/groups.zarr/records/r2/zarr.json", json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}).encode())
    assert child_groups(records) == ["r1", "r2"]
