"""blocknerf: city-scale neural radiance fields as many small hash-grid NeRF blocks.

The packages follow the pipeline (see docs/architecture.md):

``capture`` (images, poses, GPS) -> ``partitioning`` (a separate package: overlapping blocks) ->
``training`` (one block, or many on a dask cluster) -> ``store`` (versioned blocks, atomic
publish) -> ``streaming`` (a separate package: load, render and blend blocks) ->
``presentation`` (block map, GeoJSON, demo report); ``model`` is the per-block NeRF, ``evaluation``
scores it, ``updating`` retrains what a new capture changed, ``synth`` makes the synthetic city and
``cli`` is the ``blocknerf`` command. Importing this package is cheap; the names below load on use.
"""

from blocknerf.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "BlockNerfError": "blocknerf.errors",
    "ConfigError": "blocknerf.errors",
    "InputError": "blocknerf.errors",
    "StoreError": "blocknerf.errors",
    "read_capture": "blocknerf.capture.transforms",
    "load_block": "blocknerf.model.block",
    "BlockStore": "blocknerf.store.block_store",
    "train_blocks": "blocknerf.training.cluster",
}

__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
