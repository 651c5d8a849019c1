"""Merging a new capture into a store's capture record, and the plan and blocks it changes.

Frames keep stable ids: a new frame's id in the record is its image path relative to the record's
root, so two captures never clash as long as their images are different files. A frame already
recorded (same id, same pose and time) is recognised, so merging the same capture twice changes
nothing.

Newer frames of the same place supersede older ones: two frames are of the same place when their
camera centres are at most ``supersede_distance`` apart and their viewing directions at most
``supersede_angle_deg`` apart; of such a pair, the one with the later timestamp wins (a frame
without a timestamp counts as older than the capture being added). Only pairs of a new and an
already recorded frame are compared, so an update never changes what it was not shown. A
superseded frame stays in the record, marked ``superseded_by`` (a key of the frame in the record's
transforms.json), and leaves the plan's blocks: it is no longer trained on nor evaluated against.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from blocknerf.capture.frames import Capture, Frame
from blocknerf.capture.geo import LLA, GeoFrame
from blocknerf.errors import InputError
from partitioning import BlockPlan, affected_blocks, extend_plan

SUPERSEDED_KEY = "superseded_by"
"""Frame key (in the record's transforms.json) naming the newer frame that replaces a frame."""


@dataclass(frozen=True)
class CaptureMerge:
    """A capture record with a new capture merged into it."""

    capture: Capture
    """The merged record: every frame recorded before plus the new ones, superseded ones marked."""
    added: tuple[str, ...] = ()
    """Record ids of the new capture's frames that were not recorded before."""
    known: tuple[str, ...] = ()
    """Record ids of the new capture's frames that were recorded already (a repeated update)."""
    superseded: Mapping[str, str] = field(default_factory=dict)
    """Frame id -> id of the newer frame that supersedes it, for every pair with a frame of the
    new capture (including pairs found by an earlier merge of the same frames)."""
    marked: tuple[str, ...] = ()
    """Ids of the frames this merge marked superseded (none when the frames were merged before)."""

    @property
    def incoming(self) -> tuple[str, ...]:
        """Record ids of all frames of the new capture."""
        return self.added + self.known

    @property
    def changed(self) -> bool:
        """Whether the record differs from the one merged into."""
        return bool(self.added or self.marked)


def merge_captures(
    record: Capture, new: Capture, *, distance: float, angle_deg: float, where: str | os.PathLike[str]
) -> CaptureMerge:
    """Merge ``new`` into ``record`` (see the module docstring); ``where`` names ``new`` in errors.

    Poses of ``new`` are moved into the record's world frame when both captures are
    geo-registered at different origins; otherwise they are taken to share it.
    """
    to_record = _enu_to_enu(new.geo_origin, record.geo_origin)
    by_id = {f.id: f for f in record.frames}
    next_index = 1 + max((f.appearance_index for f in record.frames), default=-1)
    added: list[Frame] = []
    added_ids: set[str] = set()
    known: list[str] = []
    for f in new.frames:
        frame_id = record_id(f.image_path, record.root)
        c2w = to_record @ f.c2w
        old = by_id.get(frame_id)
        if old is not None:
            if not (np.allclose(old.c2w, c2w, rtol=0.0, atol=1e-6) and old.timestamp == f.timestamp):
                raise InputError(
                    where, f"frame '{frame_id}' is recorded already with another pose or timestamp; give new images new file names"
                )
            known.append(frame_id)
            continue
        if frame_id in added_ids:
            raise InputError(where, f"frame '{frame_id}' is listed twice")
        added_ids.add(frame_id)
        added.append(
            dataclasses.replace(
                f, id=frame_id, c2w=c2w, appearance_index=next_index + len(added),
                extra={k: v for k, v in f.extra.items() if k != SUPERSEDED_KEY},
            )
        )
    merged_frames = list(record.frames) + added
    incoming = [f.id for f in added] + known
    winners = _supersede(merged_frames, incoming, distance=distance, angle_deg=angle_deg)
    marked = []
    frames_out = []
    for f in merged_frames:
        winner = winners.get(f.id)
        if winner is not None and f.extra.get(SUPERSEDED_KEY) != winner:
            f = dataclasses.replace(f, extra={**f.extra, SUPERSEDED_KEY: winner})
            marked.append(f.id)
        frames_out.append(f)
    incoming_set = set(incoming)
    superseded = {
        f.id: str(f.extra[SUPERSEDED_KEY])
        for f in frames_out
        if SUPERSEDED_KEY in f.extra and (f.id in incoming_set or f.extra[SUPERSEDED_KEY] in incoming_set)
    }
    return CaptureMerge(
        capture=dataclasses.replace(record, frames=tuple(frames_out)),
        added=tuple(f.id for f in added),
        known=tuple(known),
        superseded=superseded,
        marked=tuple(marked),
    )


def record_id(image_path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """The id of an image in a capture record rooted at ``root``: its relative POSIX path."""
    return Path(os.path.relpath(Path(image_path).resolve(), Path(root).resolve())).as_posix()


def merged_plan(plan: BlockPlan, merge: CaptureMerge, *, workers: int = 1) -> BlockPlan:
    """``plan`` with the merged frames assigned to its blocks (``extend_plan``) and every
    superseded frame taken out; regions and ids stay as they are."""
    superseded = superseded_ids(merge.capture)
    fresh = [f for f in merge.added if f not in superseded]
    out = extend_plan(plan, merge.capture.subset(fresh).camera_arrays(), workers=workers) if fresh else plan
    blocks = []
    for b in out.blocks:
        rows = [(f, s) for f, s in zip(b.frames, b.shares) if f not in superseded]
        if len(rows) != len(b.frames):
            b = dataclasses.replace(b, frames=tuple(f for f, _ in rows), shares=tuple(s for _, s in rows))
        blocks.append(b)
    return dataclasses.replace(out, blocks=tuple(blocks))


def changed_blocks(before: BlockPlan, after: BlockPlan, merge: CaptureMerge, *, workers: int = 1) -> tuple[str, ...]:
    """Blocks an update must consider, in plan order: those the new capture's frames (and the
    frames they supersede) observe (``affected_blocks``), and those whose frames changed.

    The first set makes a repeated update find the same blocks after its frames were merged; the
    fingerprints of those blocks then tell which still need training."""
    incoming = set(merge.incoming)
    observed = [f for f in merge.incoming if f not in merge.superseded] + [
        f for f, winner in merge.superseded.items() if winner in incoming
    ]
    seen = set(affected_blocks(after, merge.capture.subset(observed).camera_arrays(), workers=workers)) if observed else set()
    moved = {b.id for b in after.blocks if b.frames != before.block(b.id).frames}
    return tuple(b for b in after.ids if b in seen | moved)


def block_causes(before: BlockPlan, after: BlockPlan, merge: CaptureMerge, block_id: str) -> tuple[list[str], list[str]]:
    """(new frames of the capture now in the block, frames superseded out of the block)."""
    incoming = set(merge.incoming)
    gained = [f for f in after.block(block_id).frames if f in incoming]
    kept = set(after.block(block_id).frames)
    lost = [f for f in before.block(block_id).frames if f not in kept and f in merge.superseded]
    return gained, lost


def superseded_ids(capture: Capture) -> set[str]:
    """Ids of the frames marked superseded in a capture record."""
    return {f.id for f in capture.frames if SUPERSEDED_KEY in f.extra}


def _supersede(frames: list[Frame], incoming: Iterable[str], *, distance: float, angle_deg: float) -> dict[str, str]:
    """Frame id -> the newest frame of the same place that is newer than it, for pairs of an
    incoming and a recorded frame (frames already superseded take no part)."""
    incoming = set(incoming)
    live = [f for f in frames if SUPERSEDED_KEY not in f.extra or f.id in incoming]
    new = [f for f in live if f.id in incoming]
    old = [f for f in live if f.id not in incoming]
    winners: dict[str, Frame] = {}
    if not new or not old:
        return {}
    tree = cKDTree(np.array([f.position for f in old]))
    cos_max = math.cos(math.radians(angle_deg))
    for f in new:
        for i in tree.query_ball_point(f.position, r=distance):
            o = old[i]
            if float(np.dot(_forward(f), _forward(o))) < cos_max - 1e-12:
                continue
            if f.timestamp is not None and o.timestamp is not None:
                if f.timestamp == o.timestamp:
                    continue  # taken together (e.g. a multi-camera rig): neither replaces the other
                later, earlier = (f, o) if f.timestamp > o.timestamp else (o, f)
            else:
                later, earlier = f, o  # the frame being added counts as the newer one
            best = winners.get(earlier.id)
            if best is None or _rank(later) > _rank(best):
                winners[earlier.id] = later
    # A winner that is itself superseded hands its place on to its own winner.
    out = {}
    for loser, winner in winners.items():
        seen = {loser}
        while winner.id in winners and winner.id not in seen:
            seen.add(winner.id)
            winner = winners[winner.id]
        out[loser] = winner.id
    return out


def _rank(f: Frame) -> tuple[float, str]:
    return (-math.inf if f.timestamp is None else f.timestamp, f.id)


def _forward(f: Frame) -> np.ndarray:
    d = -f.c2w[:3, 2]
    return d / np.linalg.norm(d)


def _enu_to_enu(source: LLA | None, target: LLA | None) -> np.ndarray:
    """(4, 4) map from ENU at ``source`` to ENU at ``target``; identity unless both are given and
    differ. Exact: both frames are rigid (affine) images of ECEF."""
    if source is None or target is None or source == target:
        return np.eye(4)
    # Plain floats: GeoFrame writes the origin into a PROJ string with repr().
    src, dst = (GeoFrame(LLA(float(o.lat), float(o.lon), float(o.alt))) for o in (source, target))
    points = dst.ecef_to_enu(src.enu_to_ecef(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])))
    out = np.eye(4)
    out[:3, :3] = (points[1:] - points[0]).T
    out[:3, 3] = points[0]
    return out


__all__ = [
    "SUPERSEDED_KEY",
    "CaptureMerge",
    "block_causes",
    "changed_blocks",
    "merge_captures",
    "merged_plan",
    "record_id",
    "superseded_ids",
]
