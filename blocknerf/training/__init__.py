"""Training blocks: one block's data and optimisation loop, and many blocks on a dask cluster.

``config`` (settings), ``data`` (the pixels a block trains on), ``state`` (checkpoints),
``trainer`` (``train_block``) and ``cluster`` (``train_blocks``: one dask task per block, a local
cluster by default). Names load on first use (torch, dask).
"""

from blocknerf.lazy import lazy_exports

_EXPORTS = {
    "BlockJob": "blocknerf.training.cluster",
    "ClusterConfig": "blocknerf.training.cluster",
    "TrainReport": "blocknerf.training.cluster",
    "train_blocks": "blocknerf.training.cluster",
    "TrainConfig": "blocknerf.training.config",
    "BlockResult": "blocknerf.training.trainer",
    "train_block": "blocknerf.training.trainer",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
