"""Incremental updates: merge a new capture into a store, retrain the blocks it changed, publish.

    from blocknerf.updating import UpdateConfig, update_store
    report = update_store("city.zarr", read_capture("recapture"), model_cfg, train_cfg,
                          ClusterConfig(in_process=True), UpdateConfig(), capture_path="recapture")

``merge`` holds the capture-record side (frame ids, superseding by timestamp, the plan and the
blocks it changes); ``detector`` where the city changed (``difference``: changed pixels of a frame
against the store's rendering, after a ``colour_transform``; ``change_points``: those pixels
lifted to world points); ``run`` the update itself and ``rollback_block``; ``baking`` bakes
published versions into new ones. See docs/updates.md.
"""

from blocknerf.updating.baking import BakeOutcome, bake_store
from blocknerf.updating.change_points import ChangePoints, lift_changes
from blocknerf.updating.colour_transform import (
    apply_colour_transform,
    fit_colour_transform,
)
from blocknerf.updating.config import ChangeConfig, UpdateConfig
from blocknerf.updating.detector import (
    BlockChange,
    ChangeReport,
    StoreRenderer,
    block_changes,
    detect_changes,
)
from blocknerf.updating.difference import (
    FrameChange,
    FrameRender,
    FrameRenderer,
    frame_change,
)
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
from blocknerf.updating.run import (
    PreparedUpdate,
    UpdateReport,
    prepare_update,
    rollback_block,
    run_update,
    update_store,
)

__all__ = [
    "BakeOutcome",
    "SUPERSEDED_KEY",
    "BlockChange",
    "CaptureMerge",
    "ChangeConfig",
    "ChangePoints",
    "ChangeReport",
    "FrameChange",
    "FrameRender",
    "FrameRenderer",
    "PreparedUpdate",
    "StoreRenderer",
    "UpdateConfig",
    "UpdateReport",
    "apply_colour_transform",
    "bake_store",
    "block_causes",
    "block_changes",
    "changed_blocks",
    "detect_changes",
    "fit_colour_transform",
    "frame_change",
    "lift_changes",
    "merge_captures",
    "merged_plan",
    "prepare_update",
    "record_id",
    "rollback_block",
    "run_update",
    "superseded_ids",
    "update_store",
]
