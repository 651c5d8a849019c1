"""The block store: versioned blocks, capture records and a manifest in one zarr v3 group.

    from blocknerf.store import BlockStore
    store = BlockStore.open("city.zarr")
    version, arrays, attrs = store.read_published("b000_000")

See ``block_store`` for the layout and the publication protocol.
"""

from blocknerf.store.block_store import FORMAT_VERSION, BlockStore
from blocknerf.store.checkpoints import Checkpoint
from blocknerf.store.faults import FAULT_ENV, FAULT_EXIT_CODE, FAULT_POINTS, fault_point
from blocknerf.store.manifest import MANIFEST_SCHEMA, Manifest, PublishedBlock, PublishedObject
from blocknerf.store.records import decode_strings, encode_strings
from blocknerf.store.versions import GcResult, VersionInfo, checksum_arrays

__all__ = [
    "FAULT_ENV",
    "FAULT_EXIT_CODE",
    "FAULT_POINTS",
    "FORMAT_VERSION",
    "MANIFEST_SCHEMA",
    "BlockStore",
    "Checkpoint",
    "GcResult",
    "Manifest",
    "PublishedBlock",
    "PublishedObject",
    "VersionInfo",
    "checksum_arrays",
    "decode_strings",
    "encode_strings",
    "fault_point",
]
