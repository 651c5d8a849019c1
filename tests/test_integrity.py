"""Integrity: checksums verified on every load, renders that skip corrupt blocks, fsck and repair."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blocknerf.cli.main import main
from blocknerf.errors import StoreError, StoreWarning
from blocknerf.model.block import load_block
from blocknerf.store import BlockStore


def corrupt_block(store_path: Path, block_id: str, version: int) -> None:
    """Flip bytes in the largest chunk of a stored version, as a bad disk or a bad copy would."""
    chunks = [p for p in (store_path / "blocks" / block_id / f"v{version}").rglob("c/*") if p.is_file()]
    chunk = max(chunks, key=lambda p: p.stat().st_size)
    data = bytearray(chunk.read_bytes())
    for i in range(0, len(data), max(1, len(data) // 16)):
        data[i] ^= 0xFF
    chunk.write_bytes(bytes(data))


def test_a_corrupt_block_fails_to_load_in_one_line_naming_block_and_version(tiny_store_copy: Path) -> None:
    store = BlockStore.open(tiny_store_copy)
    block_id = store.plan.ids[0]
    version = store.manifest().version_of(block_id)
    corrupt_block(tiny_store_copy, block_id, version)
    with pytest.raises(StoreError, match=rf"block {block_id} version {version} is (corrupt|unusable)") as info:
        load_block(store, block_id)
    assert "\n" not in str(info.value)


def test_fsck_is_clean_then_finds_and_repairs_a_damaged_block(tiny_store_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fsck", str(tiny_store_copy)]) == 0
    store = BlockStore.open(tiny_store_copy, writable=True)
    block_id = store.plan.ids[0]
    # A second version, published, so that an intact earlier one exists to fall back to.
    arrays, attrs = store.read_version(block_id, 1)
    v2 = store.write_version(block_id, arrays, {k: v for k, v in attrs.items() if k not in ("checksum", "version", "created", "complete", "block_id")})
    store.publish({block_id: v2})
    corrupt_block(tiny_store_copy, block_id, v2)
    capsys.readouterr()
    assert main(["fsck", str(tiny_store_copy), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(p["block"], p["version"]) for p in report["problems"]] == [(block_id, v2)]
    assert main(["fsck", str(tiny_store_copy), "--repair"]) == 0
    out = capsys.readouterr().out
    assert f"{block_id}: v{v2} is damaged; republished intact v1 as v{v2 + 1}" in out
    assert main(["fsck", str(tiny_store_copy)]) == 0
    assert BlockStore.open(tiny_store_copy).manifest().version_of(block_id) == v2 + 1


def test_a_render_continues_without_a_corrupt_block_and_counts_it(tiny_store_copy: Path) -> None:
    from blocknerf.capture.frames import Intrinsics
    from streaming import BlockStreamer, Compositor
    from streaming.config import StreamConfig
    from streaming.protocol import CameraView

    store = BlockStore.open(tiny_store_copy)
    plan = store.plan
    bad = plan.ids[0]
    corrupt_block(tiny_store_copy, bad, store.manifest().version_of(bad))
    streamer = BlockStreamer.open(store, StreamConfig(visibility_threshold=0.0))
    comp = Compositor(streamer)
    k = Intrinsics(fx=20.0, fy=20.0, cx=8.0, cy=6.0, width=16, height=12)
    c2w = np.eye(4)
    c2w[:3, 3] = np.asarray(plan.blocks[0].center) + np.array([0.0, 0.0, 2.0])
    with pytest.warns(StoreWarning, match=f"rendering without block {bad}"):
        first = comp.render(CameraView(c2w, k))
    second = comp.render(CameraView(c2w, k))  # no second warning (filterwarnings = error)
    for frame in (first, second):
        assert any(s.startswith(bad) for s in frame.skipped)
        assert frame.to_dict()["skipped_blocks"]
        assert np.isfinite(frame.rgb).all()
