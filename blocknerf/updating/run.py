"""Running an update: merge the new capture, retrain the blocks it changed, publish them at once.

The order makes every step safe to interrupt:

1. merge the new capture into the published capture record and assign its frames to the plan's
   blocks (``merge``), and write both as a new, unpublished records revision (``prepare_update``);
2. retrain the blocks that changed (warm-started from their published versions), each written as
   a new, unpublished version;
3. publish all new versions, the records revision and the settings in one atomic manifest write
   (2 and 3: ``run_update``).

Until step 3 readers see the store exactly as before; a failed or killed update publishes
nothing. Running the same update again redoes the merge (which gives the same records revision),
publishes blocks that finished the first time without retraining them (their fingerprints match),
and resumes the others from their checkpoints; once published, running it again does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from blocknerf.capture.frames import Capture
from blocknerf.errors import StoreError
from blocknerf.store import BlockStore
from blocknerf.training.cluster import (
    ClusterConfig,
    ProgressSink,
    TrainReport,
    train_blocks,
)
from blocknerf.updating.config import UpdateConfig
from blocknerf.updating.detector import ChangeReport, detect_changes
from blocknerf.updating.difference import FrameRenderer
from blocknerf.updating.merge import (
    CaptureMerge,
    block_causes,
    changed_blocks,
    merge_captures,
    merged_plan,
)
from partitioning import BlockPlan

VERSION_KEYS = ("block_id", "version", "checksum", "complete", "created")
"""Attributes the store sets on every version it writes (a copied version gets new ones)."""


@dataclass
class UpdateReport:
    """Outcome of ``update_store``."""

    capture: str
    """The new capture, as given."""
    added: tuple[str, ...] = ()
    """Ids of the frames added to the capture record."""
    known: int = 0
    """Frames of the new capture that were recorded already."""
    superseded: dict[str, str] = field(default_factory=dict)
    """Frame id -> the newer frame of the same place that replaces it."""
    affected: tuple[str, ...] = ()
    """Blocks retrained: those holding a change (or, with ``--all``, every block the new frames
    touch or whose frames changed)."""
    seen: tuple[str, ...] = ()
    """Blocks the new frames touch or whose frames changed (``changed_blocks``)."""
    change: dict[str, Any] | None = None
    """What change detection found (``ChangeReport.to_dict``); None when it was not run."""
    train: TrainReport = field(default_factory=TrainReport)
    """Training of the affected blocks (``skipped``: up to date)."""
    published: dict[str, int] = field(default_factory=dict)
    """Block id -> version published by this update."""
    records: int | None = None
    """Records revision published, None when the capture record did not change."""
    manifest_serial: int | None = None
    """Serial of the manifest published, None when nothing was published."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.train.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "capture": self.capture,
            "added_frames": len(self.added),
            "known_frames": self.known,
            "superseded_frames": len(self.superseded),
            "affected": list(self.affected),
            "seen": list(self.seen),
            "change": self.change,
            "published": self.published,
            "up_to_date": self.train.skipped,
            "failed": self.train.failed,
            "records": self.records,
            "manifest_serial": self.manifest_serial,
            "seconds": round(self.seconds, 2),
            "timeline": self.train.timeline,
            "stats": self.train.stats,
        }


@dataclass(frozen=True)
class PreparedUpdate:
    """Step 1 of an update (see the module docstring): the merge and what it changes."""

    store_url: str
    capture_path: str
    merge: CaptureMerge
    records: int | None
    """Records revision holding the merged capture record and plan (None: the record is unchanged)."""
    published_records: int
    """The records revision published when the update began."""
    affected: tuple[str, ...]
    """Blocks to retrain, in plan order: those ``change`` found changed, or without change
    detection all of ``seen``."""
    seen: tuple[str, ...]
    """Blocks the new frames see or whose frames changed, in plan order (``changed_blocks``); those
    not affected get the new frames in their frame lists for their next retrain."""
    change: ChangeReport | None
    """What change detection found; None when every seen block is retrained (``update --all``)."""
    warm_start: Mapping[str, int]
    """Block id -> its published version when the update began (what warm starts begin from)."""
    causes: Mapping[str, Mapping[str, Any]]
    """Block id -> ``caused_by`` of its new version: the capture, its frames in the block, the
    frames superseded out of the block and, with change detection, the change in its region."""
    dry_run: bool = False
    """Nothing was written: the update can be shown, not run."""


def prepare_update(
    store_url: str,
    capture: Capture,
    update_cfg: UpdateConfig,
    *,
    capture_path: str,
    renderer: FrameRenderer | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PreparedUpdate:
    """Merge ``capture`` into the store's published record and write the merged record and plan
    as an unpublished records revision (not with ``dry_run``); find the blocks to retrain.
    Readers see no change.

    ``renderer``: how the published store renders a new frame (e.g. ``StoreRenderer(store)``);
    with one, only blocks where the new frames show a change are retrained (``detect_changes``);
    without, every block the new frames see (``update --all``).
    """
    store = BlockStore.open(store_url, writable=not dry_run)
    manifest = store.manifest()
    plan = store.read_plan(manifest.records)
    merge = merge_captures(
        store.read_capture(manifest.records), capture,
        distance=update_cfg.distance_for(plan.radii), angle_deg=update_cfg.supersede_angle_deg, where=capture_path,
    )
    new_plan = merged_plan(plan, merge)
    records = store.write_records(merge.capture, new_plan) if merge.changed and not dry_run else None
    seen = changed_blocks(plan, new_plan, merge)
    change = None
    affected = seen
    if renderer is not None and seen:
        change = detect_changes(
            _fresh_frames(merge), renderer, new_plan, update_cfg.change, seen_blocks=seen,
            references=_references(merge), progress=progress,
        )
        affected = change.affected
    return PreparedUpdate(
        store_url=store_url,
        capture_path=capture_path,
        merge=merge,
        records=records,
        published_records=manifest.records,
        affected=affected,
        seen=seen,
        change=change,
        warm_start={b: v for b in affected if (v := manifest.version_of(b)) is not None},
        causes={b: _cause(plan, new_plan, merge, b, capture_path, change) for b in affected},
        dry_run=dry_run,
    )


def run_update(
    prepared: PreparedUpdate,
    model_cfg: Any,
    train_cfg: Any,
    cluster_cfg: ClusterConfig,
    *,
    from_scratch: bool = False,
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
    config: Mapping[str, Any] | None = None,
    sink: ProgressSink | None = None,
    on_cluster: Callable[[str, Any], None] | None = None,
) -> UpdateReport:
    """Steps 2 and 3 of an update: retrain the affected blocks that are out of date and publish
    them, the records revision and ``config`` in one atomic write (nothing if any block failed).

    ``from_scratch``: do not start from the published versions; ``overrides``: training settings
    of this update's runs that do not change what the blocks are trained for, e.g. ``steps``
    (default: ``train_cfg.warm_start_steps``, or ``steps`` from scratch) or ``time_budget_s``;
    ``force``: retrain the affected blocks even when they are up to date.
    """
    if prepared.dry_run:
        raise ValueError("a dry-run update cannot be run: prepare it again without dry_run")
    began = time.time()
    merge = prepared.merge
    changed_records = prepared.records is not None and prepared.records != prepared.published_records
    report = UpdateReport(
        capture=prepared.capture_path, added=merge.added, known=len(merge.known), superseded=dict(merge.superseded),
        affected=prepared.affected, records=prepared.records if changed_records else None, seen=prepared.seen,
        change=None if prepared.change is None else prepared.change.to_dict(),
    )
    if prepared.affected:
        report.train = train_blocks(
            prepared.store_url, prepared.affected, model_cfg, train_cfg, cluster_cfg,
            force=force, sink=sink, on_cluster=on_cluster, records=prepared.records,
            warm_start={} if from_scratch else prepared.warm_start, overrides=overrides,
            record={b: {"reason": "update", "caused_by": dict(prepared.causes[b])} for b in prepared.affected},
            publish=False,
        )
    if report.train.failed:
        report.seconds = time.time() - began
        return report  # publish nothing: readers keep the previous store; a rerun reuses what finished
    if report.train.trained or report.records is not None:
        store = BlockStore.open(prepared.store_url, writable=True)
        published = store.publish(report.train.trained, records=report.records, config=config)
        report.published = dict(report.train.trained)
        report.manifest_serial = published.serial
    report.seconds = time.time() - began
    return report


def update_store(
    store_url: str,
    capture: Capture,
    model_cfg: Any,
    train_cfg: Any,
    cluster_cfg: ClusterConfig,
    update_cfg: UpdateConfig,
    *,
    capture_path: str,
    renderer: FrameRenderer | None = None,
    **options: Any,
) -> UpdateReport:
    """Merge ``capture`` into a store, retrain the blocks it changes and publish them atomically
    (``prepare_update`` then ``run_update``; ``renderer`` as for ``prepare_update``, ``options``
    those of ``run_update``)."""
    began = time.time()
    prepared = prepare_update(store_url, capture, update_cfg, capture_path=capture_path, renderer=renderer)
    report = run_update(prepared, model_cfg, train_cfg, cluster_cfg, **options)
    report.seconds = time.time() - began
    return report


def rollback_block(store: BlockStore, block_id: str, to: int | None = None) -> tuple[int, int]:
    """Publish an older version of a block again; returns (new version, version copied).

    The older version (default: the one published before the current one) is copied, verified
    against its checksum, into a new version with ``reason: "rollback"``, which is then published
    atomically; versions stay immutable and numbers only grow, so readers see an ordinary update.
    """
    entry = store.manifest().blocks.get(block_id)
    if entry is None:
        raise StoreError(store.url, f"block {block_id} has no published version to roll back")
    if to is None:
        history = store.published_history(block_id, entry)
        if not history:
            raise StoreError(store.url, f"block {block_id}: no version was published before v{entry.version}; name one with --to")
        to = history[-1]
    if to == entry.version:
        raise StoreError(store.url, f"block {block_id}: v{to} is the published version already")
    if store.version_info(block_id, to) is None:
        known = ", ".join(f"v{v.version}" for v in store.versions(block_id)) or "none"
        raise StoreError(store.url, f"block {block_id} has no complete version {to} (versions: {known})")
    arrays, attrs = store.read_version(block_id, to, verify=True)
    kept = {k: v for k, v in attrs.items() if k not in VERSION_KEYS}
    version = store.write_version(
        block_id, arrays, {**kept, "reason": "rollback", "caused_by": {"rollback_to": to, "replaced": entry.version}}
    )
    store.publish({block_id: version})
    return version, to


def _cause(
    before: BlockPlan, after: BlockPlan, merge: CaptureMerge, block_id: str, capture_path: str, change: ChangeReport | None
) -> dict[str, Any]:
    """Why a block is updated: the capture, its new frames in the block, the frames superseded
    and, with change detection, the change found in its region (points, pixels, world box)."""
    gained, lost = block_causes(before, after, merge, block_id)
    cause: dict[str, Any] = {"capture": capture_path, "frames": gained, "count": len(gained), "superseded": lost}
    if change is not None and block_id in change.blocks:
        found = change.blocks[block_id].to_dict()
        cause["change"] = {k: found[k] for k in ("points", "pixels", "frames", "box")}
    return cause


def _fresh_frames(merge: CaptureMerge) -> list[Any]:
    """The new capture's frames that nothing supersedes: what change detection compares."""
    return [merge.capture.frame(f) for f in merge.incoming if f not in merge.superseded]


def _references(merge: CaptureMerge) -> dict[str, Any]:
    """New frame id -> a recorded frame it supersedes (the same place, photographed before)."""
    out: dict[str, Any] = {}
    for old, new in sorted(merge.superseded.items()):
        if old not in merge.incoming:
            out.setdefault(new, merge.capture.frame(old))
    return out



__all__ = ["PreparedUpdate", "UpdateReport", "prepare_update", "rollback_block", "run_update", "update_store"]
