"""Confinement: block ids, capture file paths and a store's recorded images stay where they belong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import zarr

from blocknerf.cli.main import main
from blocknerf.errors import StoreError
from blocknerf.store import BlockStore
from partitioning import BlockSpec, block_id_problem


@pytest.mark.parametrize("block_id", ["../x", "b003/../../etc", "B003_005", "", "b" * 41, "b003.005", "b003_005\n", "/abs"])
def test_bad_block_ids_are_refused_when_planned(block_id: str) -> None:
    assert block_id_problem(block_id)
    with pytest.raises(ValueError, match="invalid block id"):
        BlockSpec(block_id, (0.0, 0.0, 5.0), 30.0, 0.0, 10.0)


@pytest.mark.parametrize("block_id", ["b003_005", "bm02_013", "b001_002a", "b_empty"])
def test_lattice_ids_are_valid(block_id: str) -> None:
    assert block_id_problem(block_id) is None


def test_a_store_with_a_bad_block_id_is_refused_in_one_line(tiny_store_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    group = zarr.open_group(str(tiny_store_copy / "plan"), mode="r+")
    plan = dict(group.attrs["plan"])
    plan["blocks"] = [{**plan["blocks"][0], "id": "../../escape"}, *plan["blocks"][1:]]
    group.attrs.put({"plan": plan})
    with pytest.raises(StoreError, match="invalid block id"):
        BlockStore.open(tiny_store_copy)
    assert main(["info", str(tiny_store_copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid block id" in err


def test_writing_a_version_with_a_bad_id_is_refused(tiny_store_copy: Path) -> None:
    store = BlockStore.open(tiny_store_copy, writable=True)
    with pytest.raises(StoreError, match="invalid block id"):
        store.write_version("../outside", {}, {})
    assert not (tiny_store_copy.parent / "outside").exists()


@pytest.mark.parametrize("file_path", ["../secret.png", "/etc/hostname", "images/../../secret.png"], ids=["dotdot", "absolute", "climb"])
def test_file_paths_outside_the_capture_are_refused(tiny_city: Path, tmp_path: Path, file_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "capture"
    shutil.copytree(tiny_city, capture)
    shutil.copy(next((capture / "images").iterdir()), tmp_path / "secret.png")
    doc = json.loads((capture / "transforms.json").read_text())
    doc["frames"][0]["file_path"] = file_path
    for split in ("train_filenames", "test_filenames", "val_filenames"):
        doc.pop(split, None)
    (capture / "transforms.json").write_text(json.dumps(doc))
    assert main(["inspect", str(capture), "--headers-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "resolves outside the capture directory" in err
    if file_path != "/etc/hostname":
        assert main(["inspect", str(capture), "--headers-only", "--allow-outside-paths"]) == 0


def test_a_symlink_leading_out_of_the_capture_is_refused(tiny_city: Path, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    shutil.copytree(tiny_city, capture)
    doc = json.loads((capture / "transforms.json").read_text())
    first = capture / doc["frames"][0]["file_path"]
    shutil.move(first, tmp_path / "outside.png")
    first.symlink_to(tmp_path / "outside.png")
    assert main(["inspect", str(capture), "--headers-only"]) == 2


def test_a_store_recording_images_nobody_lists_is_refused(tiny_store_copy: Path, tiny_city: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store someone sent, whose record points its root at another directory: eval would read
    images there; no transforms.json there lists them, so it refuses."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_city / "images", elsewhere / "images")  # images, but no capture listing them
    group = zarr.open_group(str(tiny_store_copy / "capture"), mode="r+")
    group.attrs.put({**dict(group.attrs), "root": str(elsewhere)})
    assert main(["eval", str(tiny_store_copy), "--views", "1", "--no-composite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no transforms.json above it lists" in err
