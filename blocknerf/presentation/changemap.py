"""What an update's change detection found, as pictures: the change map and per-frame masks.

``change_map.png`` is a top-down view (world x right, y up): every block's region as a circle,
blocks to retrain filled red, blocks the new frames see but that stay as they are outlined blue,
the changed world points in dark red, the new cameras as grey dots and, when known (the synthetic
city's ``change.json``), the true change regions dashed green. ``masks/<frame>.png`` show each new
frame's changed pixels (white) and pixels looking into space the store never saw (grey).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from blocknerf.presentation.blockmap import _BLOCK as _SEEN
from blocknerf.presentation.blockmap import _INK, _PAPER, _font
from partitioning.plan import BlockPlan

_RETRAIN = (214, 48, 39)
_POINT = (140, 10, 10)
_CAMERA = (150, 150, 150)
_TRUTH = (30, 150, 60)


def draw_change_map(
    plan: BlockPlan,
    report: object,
    path: str | Path,
    *,
    cameras_xy: np.ndarray | None = None,
    regions: Sequence[tuple[tuple[float, float], float]] = (),
    size_px: int = 900,
) -> Path:
    """Draw ``report`` (a ``blocknerf.updating.ChangeReport``) over ``plan`` and save a PNG.

    ``cameras_xy``: (N, 2) new camera positions; ``regions``: known change regions as
    ((x, y), radius)."""
    path = Path(path)
    blocks = report.blocks
    points = report.points.points
    lo = (plan.centers[:, :2] - plan.radii[:, None]).min(axis=0)
    hi = (plan.centers[:, :2] + plan.radii[:, None]).max(axis=0)
    pad = 0.05 * float(np.max(hi - lo))
    lo, hi = lo - pad, hi + pad
    header = 48
    scale = size_px / float(np.max(hi - lo))
    width, height = math.ceil((hi[0] - lo[0]) * scale), math.ceil((hi[1] - lo[1]) * scale) + header
    img = Image.new("RGB", (width, height), _PAPER)
    draw = ImageDraw.Draw(img, "RGBA")

    def px(x: float, y: float) -> tuple[float, float]:
        return ((x - lo[0]) * scale, header + (hi[1] - y) * scale)

    def circle(x: float, y: float, r: float, **kw: object) -> None:
        cx, cy = px(x, y)
        draw.ellipse([cx - r * scale, cy - r * scale, cx + r * scale, cy + r * scale], **kw)  # type: ignore[arg-type]

    for spec in plan.blocks:
        verdict = blocks.get(spec.id)
        x, y = spec.center_xy
        if verdict is not None and verdict.retrain:
            circle(x, y, spec.radius_m, fill=_RETRAIN + (40,), outline=_RETRAIN, width=3)
        elif verdict is not None:
            circle(x, y, spec.radius_m, outline=_SEEN, width=2)
        else:
            circle(x, y, spec.radius_m, outline=(190, 190, 190), width=1)
    for (x, y), r in regions:
        cx, cy = px(x, y)
        rr = r * scale
        for k in range(0, 360, 12):
            draw.arc([cx - rr, cy - rr, cx + rr, cy + rr], k, k + 6, fill=_TRUTH, width=3)
    if cameras_xy is not None:
        for x, y in np.asarray(cameras_xy).reshape(-1, 2):
            cx, cy = px(x, y)
            draw.ellipse([cx - 1.5, cy - 1.5, cx + 1.5, cy + 1.5], fill=_CAMERA)
    if len(points):
        step = max(1, len(points) // 20000)
        for x, y in points[::step, :2]:
            cx, cy = px(x, y)
            draw.point((cx, cy), fill=_POINT + (160,))
    font = _font(14)
    for spec in plan.blocks:
        cx, cy = px(*spec.center_xy)
        draw.text((cx, cy), spec.id, fill=_INK, font=font, anchor="mm")
    retrain = [b for b, v in blocks.items() if v.retrain]
    draw.text((8, 6), f"change map: {len(retrain)} of {len(plan)} blocks to retrain ({', '.join(retrain) or 'none'}); "
              f"{len(points)} changed points", fill=_INK, font=font)
    legend = [(_RETRAIN, "retrain"), (_SEEN, "seen, kept"), (_POINT, "changed points"), (_CAMERA, "new cameras")]
    if regions:
        legend.append((_TRUTH, "true change"))
    x = 8
    for colour, label in legend:
        draw.rectangle([x, 28, x + 10, 38], fill=colour)
        draw.text((x + 14, 26), label, fill=_INK, font=font)
        x += 24 + int(draw.textlength(label, font=font))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_change_masks(report: object, directory: str | Path) -> list[Path]:
    """One PNG per new frame with changed pixels: white changed, grey unseen, black unchanged."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for change in report.frames:
        if not change.n_changed:
            continue
        mask = np.where(change.changed, 255, 0).astype(np.uint8)
        mask[change.unseen] = 128
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(change.frame_id).stem) + ".png"
        Image.fromarray(mask, "L").save(directory / name)
        out.append(directory / name)
    return out


__all__ = ["draw_change_map", "write_change_masks"]
