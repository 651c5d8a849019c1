"""Incremental updates: merge a new capture into a store, retrain the blocks it changed, publish.

    from blocknerf.updating import UpdateConfig, update_store
    report = update_store("city.zarr", read_capture("recapture"), model_cfg, train_cfg,
                          ClusterConfig(in_process=True), UpdateConfig(), capture_path="recapture")

``merge`` holds the capture-record side (frame ids, superseding by timestamp, the plan and the
blocks it changes); ``run`` the update itself and ``rollback_block``; ``baking`` bakes published versions into new ones. See docs/updates.md.
"""

from blocknerf.updating.baking import BakeOutcome, bake_store
from blocknerf.updating.config import UpdateConfig
from blocknerf.updating.merge import (
    SUPERSEDED_KEY,
    CaptureMerge,
    block_causes,
    changed_blocks,
    merge_captures,
    merged_plan,
    record_id,
    superseded_ids,
)
from blocknerf.updating.run import PreparedUpdate, UpdateReport, prepare_update, rollback_block, run_update, update_store

__all__ = [
    "BakeOutcome",
    "SUPERSEDED_KEY",
    "CaptureMerge",
    "PreparedUpdate",
    "UpdateConfig",
    "UpdateReport",
    "bake_store",
    "block_causes",
    "changed_blocks",
    "merge_captures",
    "merged_plan",
    "prepare_update",
    "record_id",
    "rollback_block",
    "run_update",
    "superseded_ids",
    "update_store",
]
