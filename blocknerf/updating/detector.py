"""Where the city changed: new frames against the published store, and the blocks to retrain.

``detect_changes`` renders every new frame through a ``FrameRenderer`` (``StoreRenderer``: the
blocks around the camera, loaded from the store; a faster renderer plugs in as any callable),
finds its changed pixels (``difference``), lifts them to world points that several frames agree on
(``change_points``), and says, for every block the new frames see, whether it holds changed
points (with a margin) and so must be retrained, and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blocknerf.capture.frames import Frame, Intrinsics
from blocknerf.capture.images import load_image
from blocknerf.updating.change_points import ChangePoints, lift_changes
from blocknerf.updating.config import ChangeConfig
from blocknerf.updating.difference import (
    FrameChange,
    FrameRender,
    FrameRenderer,
    colour_difference,
    detection_intrinsics,
    downsample,
    frame_change,
)
from partitioning import BlockPlan


@dataclass(frozen=True)
class BlockChange:
    """The verdict on one block the new frames see."""

    block_id: str
    retrain: bool
    points: int
    """Changed world points inside the block's region (with the margin)."""
    pixels: int
    """Changed pixels (of all new frames, at the detection resolution) whose points lie there."""
    frames: int
    """New frames with such pixels."""
    box: tuple[tuple[float, float, float], tuple[float, float, float]] | None
    """World box (min, max corner) of those points; None without any."""

    @property
    def reason(self) -> str:
        """One line: why the block is (not) retrained."""
        if not self.points:
            return "no change in its region"
        lo, hi = self.box or ((0.0,) * 3, (0.0,) * 3)
        box = "(" + ", ".join(f"{a:.1f}..{b:.1f}" for a, b in zip(lo, hi)) + ")"
        what = f"{self.points} changed points from {self.pixels} changed pixels in {self.frames} frames, box x, y, z {box}"
        return what if self.retrain else f"only {what}: below the threshold"

    def to_dict(self) -> dict[str, Any]:
        return {
            "retrain": self.retrain,
            "reason": self.reason,
            "points": self.points,
            "pixels": self.pixels,
            "frames": self.frames,
            "box": None if self.box is None else [list(self.box[0]), list(self.box[1])],
        }


@dataclass(frozen=True)
class ChangeReport:
    """Everything change detection found for one new capture."""

    frames: tuple[FrameChange, ...]
    points: ChangePoints
    blocks: Mapping[str, BlockChange] = field(default_factory=dict)
    """Per block the new frames see, in plan order."""
    margin_m: float = 0.0

    @property
    def affected(self) -> tuple[str, ...]:
        """Blocks to retrain, in plan order."""
        return tuple(b for b, c in self.blocks.items() if c.retrain)

    @property
    def changed_pixels(self) -> int:
        return sum(f.n_changed for f in self.frames)

    def to_dict(self) -> dict[str, Any]:
        box = _box(self.points.points) if len(self.points) else None
        return {
            "frames": len(self.frames),
            "changed_pixels": self.changed_pixels,
            "unseen_pixels": sum(int(f.unseen.sum()) for f in self.frames),
            "changed_points": len(self.points),
            "box": None if box is None else [list(box[0]), list(box[1])],
            "margin_m": round(self.margin_m, 3),
            "affected": list(self.affected),
            "blocks": {b: c.to_dict() for b, c in self.blocks.items()},
        }


def detect_changes(
    frames: Sequence[Frame],
    renderer: FrameRenderer,
    plan: BlockPlan,
    cfg: ChangeConfig,
    *,
    seen_blocks: Iterable[str],
    references: Mapping[str, Frame] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ChangeReport:
    """Compare ``frames`` (the new capture) with ``renderer``'s renderings and decide, for each of
    ``seen_blocks`` (the blocks the frames see), whether it changed.

    ``references``: new frame id -> the recorded frame it supersedes (same place, older); its
    difference from its own rendering is subtracted (see ``difference``). ``progress(done, total)``
    is called after each frame.
    """
    references = references or {}
    changes = []
    for n, frame in enumerate(frames):
        k = detection_intrinsics(frame.intrinsics, cfg.width_px)
        renders = list(renderer(frame, k))
        photo = downsample(_photo(frame), k)
        reference = None
        old = references.get(frame.id)
        if old is not None and (old.intrinsics.width, old.intrinsics.height) == (frame.intrinsics.width, frame.intrinsics.height):
            old_renders = list(renderer(old, k))
            old_photo = downsample(_photo(old), k)
            reference = np.min(np.stack([colour_difference(old_photo, r, cfg) for r in old_renders]), axis=0)
        changes.append(frame_change(frame, photo, renders, cfg, reference=reference))
        if progress is not None:
            progress(n + 1, len(frames))
    radii = plan.radii
    far_m = float(plan.far_m) if plan.far_m else 2.0 * float(np.median(radii))
    points = lift_changes(changes, cfg, near_m=0.0, far_m=far_m)
    margin = cfg.margin_for(radii)
    return ChangeReport(
        frames=tuple(changes), points=points, blocks=block_changes(plan, points, cfg, seen_blocks, margin=margin), margin_m=margin
    )


def block_changes(
    plan: BlockPlan, points: ChangePoints, cfg: ChangeConfig, seen_blocks: Iterable[str], *, margin: float
) -> dict[str, BlockChange]:
    """Per block of ``seen_blocks`` (in plan order): the changed points within its region grown by
    ``margin``, and whether there are enough to retrain it: ``cfg.min_points`` points, lifted from
    the changed pixels of at least ``cfg.min_views`` new frames (a change seen by fewer frames is
    where the visual hull of one or two frames' rays reaches, not where the frames agree)."""
    seen = set(seen_blocks)
    out = {}
    for spec in plan.blocks:
        if spec.id not in seen:
            continue
        p = points.points
        inside = (
            (np.linalg.norm(p[:, :2] - spec.center_xy, axis=1) <= spec.radius_m + margin)
            & (p[:, 2] >= spec.z_min - margin)
            & (p[:, 2] <= spec.z_max + margin)
        ) if len(points) else np.zeros(0, dtype=bool)
        n = int(inside.sum())
        pixels = {(int(f), int(q)) for f, q in zip(points.frame[inside], points.pixel[inside])}
        frames = len({f for f, _ in pixels})
        out[spec.id] = BlockChange(
            block_id=spec.id,
            retrain=n >= cfg.min_points and frames >= cfg.min_views,
            points=n,
            pixels=len(pixels),
            frames=frames,
            box=_box(p[inside]) if n else None,
        )
    return out


class StoreRenderer:
    """A ``FrameRenderer`` over a store's published blocks: renders a camera with each of the
    ``candidates`` blocks whose centres are nearest to it (zero appearance code, the frame's
    exposure), from their bakes where they have them (``renderer``: ``baked`` or ``neural``, as
    ``blocknerf.model.loading``). Loaded blocks are kept for the renderer's lifetime."""

    def __init__(self, store: Any, *, candidates: int = 2, device: str = "cpu", renderer: str = "baked") -> None:
        manifest = store.manifest()
        published = manifest.blocks
        plan = store.read_plan(manifest.records)
        self.store = store
        self.versions = {b: published[b].version for b in published}
        self.renderer = renderer
        self.ids = [b for b in plan.ids if b in published]
        self.centres = np.array([plan.block(b).center_xy for b in self.ids]).reshape(-1, 2)
        self.candidates = candidates
        self.device = device
        self._blocks: dict[str, Any] = {}

    def __call__(self, frame: Frame, intrinsics: Intrinsics) -> list[FrameRender]:
        if not self.ids:
            raise ValueError("the store has no published block to render")
        import torch

        from blocknerf.model.loading import load_renderable

        distance = np.linalg.norm(self.centres - np.asarray(frame.position)[:2], axis=1)
        out = []
        for i in np.argsort(distance, kind="stable")[: self.candidates]:
            block_id = self.ids[int(i)]
            if block_id not in self._blocks:
                self._blocks[block_id] = load_renderable(self.store, block_id, self.versions[block_id], renderer=self.renderer, device=self.device)
            with torch.no_grad():
                view = self._blocks[block_id].render_view(frame.c2w, intrinsics, exposure=frame.exposure)
            out.append(
                FrameRender(
                    rgb=view.rgb.clamp(0.0, 1.0).cpu().numpy().astype(np.float32),
                    depth=view.depth.cpu().numpy().astype(np.float32),
                    opacity=view.opacity.cpu().numpy().astype(np.float32),
                )
            )
        return out


def _photo(frame: Frame) -> np.ndarray:
    image = np.asarray(load_image(frame.image_path))
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def _box(points: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    lo, hi = points.min(axis=0), points.max(axis=0)
    return tuple(round(float(v), 2) for v in lo), tuple(round(float(v), 2) for v in hi)  # type: ignore[return-value]


__all__ = ["BlockChange", "ChangeReport", "StoreRenderer", "block_changes", "detect_changes"]
