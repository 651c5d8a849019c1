"""One contract for every ``streaming.streamer.BlockSource``: the fake the streaming tests use and
the store source over a trained store pass the same tests (zarr-python's ``StoreTests`` style).

A subclass provides the source (the ``source`` fixture) and the two things a source has no method
for: publishing a new version of a block and storing an appearance document.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from blocknerf.errors import InputError
from blocknerf.model.renderer import Rays
from blocknerf.store import BlockStore
from streaming.appearance import AppearanceTable, MatchedCode
from streaming.protocol import RenderableBlock
from streaming.streamer import BlockSource, StoreSource

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def rays_from_the_centre(block: RenderableBlock, n: int = 8) -> Rays:
    """``n`` level rays from the centre of a block's region, spread over all headings."""
    angles = torch.arange(n, dtype=torch.float32) * (2.0 * torch.pi / n)
    directions = torch.stack([torch.cos(angles), torch.sin(angles), torch.zeros(n)], dim=-1)
    origins = torch.tensor(block.bounds.center, dtype=torch.float32).expand(n, 3).contiguous()
    return Rays(origins, directions)


class BlockSourceContract:
    """The tests every BlockSource passes; subclasses provide ``source`` and the two hooks."""

    @pytest.fixture
    def source(self) -> BlockSource:
        raise NotImplementedError

    def publish_new_version(self, source: BlockSource, block_id: str) -> int:
        """Publish a new version of ``block_id`` (a copy of the published one); its number."""
        raise NotImplementedError

    def store_appearance_document(self, source: BlockSource, doc: dict) -> None:
        """Store ``doc`` as the source's appearance-matching document."""
        raise NotImplementedError

    def test_published_versions_load_as_those_versions(self, source: BlockSource) -> None:
        serial, versions = source.published()
        assert isinstance(serial, int) and versions
        for block_id, version in versions.items():
            block = source.load((block_id, version, 0))
            assert isinstance(block, RenderableBlock)
            assert (block.block_id, block.version) == (block_id, version)

    def test_regions_align_with_ids_and_cover_every_published_block(self, source: BlockSource) -> None:
        ids, centers, radii = source.regions()
        assert len(set(ids)) == len(ids)
        assert np.shape(centers) == (len(ids), 3) and np.shape(radii) == (len(ids),)
        assert np.isfinite(centers).all() and (np.asarray(radii) > 0).all()
        assert set(source.published()[1]) <= set(ids)

    def test_a_loaded_block_stands_in_its_region(self, source: BlockSource) -> None:
        ids, centers, radii = source.regions()
        for block_id, version in source.published()[1].items():
            block = source.load((block_id, version, 0))
            i = ids.index(block_id)
            np.testing.assert_allclose(block.bounds.center, centers[i], rtol=0, atol=1e-9)
            assert block.bounds.radius == pytest.approx(radii[i], abs=1e-9)

    def test_the_size_estimate_bounds_the_loaded_size_closely(self, source: BlockSource) -> None:
        # The cache charges the estimate before loading: below the loaded size it would overfill
        # the budget, far above it it would waste the budget. Every level of detail is charged alone.
        for block_key in source.published()[1].items():
            for level in range(len(source.levels(block_key))):
                key = (*block_key, level)
                estimate = source.estimate_nbytes(key)
                block = source.load(key)
                assert isinstance(estimate, int) and block.nbytes > 0
                assert block.nbytes <= estimate <= 1.1 * block.nbytes, (key, estimate, block.nbytes)

    def test_levels_go_from_coarse_to_fine(self, source: BlockSource) -> None:
        for block_key in source.published()[1].items():
            voxels = source.levels(block_key)
            assert len(voxels) >= 1 and all(v >= 0 for v in voxels)
            assert all(a > b for a, b in zip(voxels, voxels[1:])), voxels  # each level finer than the last

    def test_loading_a_key_twice_gives_equal_blocks(self, source: BlockSource) -> None:
        key = (*min(source.published()[1].items()), 0)
        first, second = source.load(key), source.load(key)
        assert (second.block_id, second.version, second.nbytes) == (first.block_id, first.version, first.nbytes)
        rays = rays_from_the_centre(first)
        a, b = first.render_rays(rays), second.render_rays(rays)
        for name in ("rgb", "depth", "opacity", "visibility"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name

    def test_a_loaded_block_renders_rays(self, source: BlockSource) -> None:
        key = (*min(source.published()[1].items()), 0)
        block = source.load(key)
        out = block.render_rays(rays_from_the_centre(block, 8))
        assert out.rgb.shape == (8, 3) and out.depth.shape == out.opacity.shape == out.visibility.shape == (8,)
        for name in ("rgb", "opacity", "visibility"):
            value = getattr(out, name)
            assert bool(((value >= 0) & (value <= 1)).all()), (name, value)
        assert bool((out.depth >= 0).all())
        code = block.appearance_code(None)  # the zero code: the typical look
        assert code is None or (code.dim() == 1 and not bool(code.any()))

    @pytest.mark.parametrize("which", ["unknown-block", "unknown-version"])
    def test_an_unknown_key_is_a_one_line_input_error(self, source: BlockSource, which: str) -> None:
        block_id, version = min(source.published()[1].items())
        key = ("nope", 1, 0) if which == "unknown-block" else (block_id, version + 99, 0)
        with pytest.raises(InputError, match=rf"block {key[0]} .*version {key[1]}\b") as err:
            source.load(key)
        assert "\n" not in str(err.value)

    def test_a_new_publication_is_seen_by_published(self, source: BlockSource) -> None:
        serial, before = source.published()
        block_id, old = min(before.items())
        new = self.publish_new_version(source, block_id)
        serial_after, after = source.published()
        assert serial_after > serial and new != old
        assert after == {**before, block_id: new}
        assert before[block_id] == old  # what published() returned earlier is a snapshot
        assert source.load((block_id, new, 0)).version == new
        assert source.load((block_id, old, 0)).version == old  # versions are immutable, not replaced

    def test_the_appearance_document_reads_back_what_was_stored(self, source: BlockSource) -> None:
        assert source.appearance_document() is None
        serial, versions = source.published()
        block_id, version = min(versions.items())
        table = AppearanceTable(codes={block_id: MatchedCode(version, (0.25, -0.5, 1.0))}, roots=(block_id,), manifest_serial=serial)
        self.store_appearance_document(source, table.to_dict())
        assert AppearanceTable.from_dict(source.appearance_document()) == table


class TestFakeSource(BlockSourceContract):
    """``FakeSource`` of conftest over a 2x2 grid of fake blocks."""

    @pytest.fixture
    def source(self, fakes: SimpleNamespace) -> BlockSource:
        blocks = fakes.grid(2)
        blocks[0] = fakes.Block(blocks[0].block_id, center=blocks[0].bounds.center, radius=10.0, level_voxels_m=(2.0, 1.0), level_nbytes=(20, 100))
        return fakes.Source(blocks)

    def publish_new_version(self, source: BlockSource, block_id: str) -> int:
        old = source.blocks[(block_id, source.versions[block_id])]
        new = type(old)(block_id, version=old.version + 1, center=old.bounds.center, radius=old.bounds.radius, color=old.color, nbytes=old.nbytes,
                         level_voxels_m=old.level_voxels_m, level_nbytes=old.level_nbytes)
        source.publish(new)
        return new.version

    def store_appearance_document(self, source: BlockSource, doc: dict) -> None:
        source.document = doc


class TestStoreSource(BlockSourceContract):
    """``StoreSource`` over a private copy of the trained tiny store, opened read-only as the
    streamer opens it; the hooks write through a second, writable handle."""

    @pytest.fixture
    def source(self, tiny_store_copy: Path) -> BlockSource:
        return StoreSource(BlockStore.open(tiny_store_copy))

    @staticmethod
    def _writable(source: StoreSource) -> BlockStore:
        return BlockStore.open(source.store.url, writable=True)

    def publish_new_version(self, source: StoreSource, block_id: str) -> int:
        store = self._writable(source)
        arrays, attrs = store.read_version(block_id, store.manifest().version_of(block_id))
        own = ("block_id", "version", "checksum", "complete", "created")  # write_version sets these
        new = store.write_version(block_id, arrays, {k: v for k, v in attrs.items() if k not in own})
        store.publish({block_id: new})
        return new

    def store_appearance_document(self, source: StoreSource, doc: dict) -> None:
        AppearanceTable.from_dict(doc).save(self._writable(source))
