"""The block map: a top-down picture of a plan, its blocks and the cameras they were made from.

Blocks are translucent discs composited over each other, so the more blocks cover a place the
darker it is; outlines and ids on top; cameras as dots with a short tick in their viewing direction
(or, for large captures, as a density layer); a scale bar, a north arrow (ENU +y) and a legend.
Everything is drawn at twice the size and downsampled, which anti-aliases the lines and text.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from partitioning.cameras import CameraArrays
from partitioning.plan import BlockPlan

SUPERSAMPLE = 2
DOTS_UP_TO = 6000
"""Cameras are drawn one by one up to this many; beyond, as a density layer."""

_BACKGROUND = (246, 245, 241)
_PAPER = (255, 255, 255)
_INK = (33, 37, 41)
_MUTED = (120, 124, 130)
_GRID = (226, 224, 218)
_BLOCK = (52, 120, 190)
_OUTLINE = (28, 78, 140)
_TRAIN = (30, 40, 60)
_HELD_OUT = (232, 89, 12)
_FILL_ALPHA = 0.16


def draw_block_map(
    plan: BlockPlan,
    cameras: CameraArrays,
    path: str | Path,
    *,
    size_px: int = 1200,
    title: str | None = None,
) -> Path:
    """Draw the plan over the cameras (top-down, world x right, y up) and save a PNG at ``path``."""
    path = Path(path)
    s = SUPERSAMPLE
    width = int(size_px) * s
    header, footer, margin = 64 * s, 92 * s, 56 * s

    # World window: every disc and camera, 4 % margin, equal scale on both axes.
    xy = cameras.positions[:, :2] if len(cameras) else np.zeros((0, 2))
    lo = np.min(np.vstack([xy, plan.centers[:, :2] - plan.radii[:, None]]), axis=0) if len(plan) or len(xy) else np.zeros(2)
    hi = np.max(np.vstack([xy, plan.centers[:, :2] + plan.radii[:, None]]), axis=0) if len(plan) or len(xy) else np.ones(2)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - 0.04 * span, hi + 0.04 * span
    map_w = width - 2 * margin
    aspect = float(np.clip((hi[1] - lo[1]) / (hi[0] - lo[0]), 0.45, 1.6))
    map_h = int(round(map_w * aspect))
    scale = min(map_w / (hi[0] - lo[0]), map_h / (hi[1] - lo[1]))  # pixels per metre
    mid = 0.5 * (lo + hi)
    ox, oy = margin + 0.5 * map_w, header + 0.5 * map_h
    height = header + map_h + footer

    def to_px(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        return np.stack([ox + (p[..., 0] - mid[0]) * scale, oy - (p[..., 1] - mid[1]) * scale], axis=-1)

    img = Image.new("RGB", (width, height), _PAPER)
    draw = ImageDraw.Draw(img)
    box = (margin, header, margin + map_w, header + map_h)
    draw.rectangle(box, fill=_BACKGROUND)
    font = _fonts(s)
    _draw_grid(draw, box, to_px, scale, mid, font)

    # Block fills: coverage count per pixel -> alpha of that many stacked translucent discs.
    centers_px = to_px(plan.centers[:, :2]) if len(plan) else np.zeros((0, 2))
    radii_px = plan.radii * scale
    count = np.zeros((height, width), dtype=np.float32)
    for (cx, cy), r in zip(centers_px, radii_px):
        x0, x1 = max(int(cx - r) - 1, box[0]), min(int(cx + r) + 2, box[2])
        y0, y1 = max(int(cy - r) - 1, box[1]), min(int(cy + r) + 2, box[3])
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        count[y0:y1, x0:x1] += ((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r).astype(np.float32)
    alpha = 1.0 - (1.0 - _FILL_ALPHA) ** count
    base = np.asarray(img, dtype=np.float32)
    base = base * (1.0 - alpha[..., None]) + np.asarray(_BLOCK, np.float32) * alpha[..., None]
    img = Image.fromarray(np.clip(base + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)

    _draw_cameras(img, draw, cameras, to_px, box, s)

    line = max(1, round(1.3 * s))
    for (cx, cy), r in zip(centers_px, radii_px):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=_OUTLINE, width=line)
    _draw_labels(draw, plan, centers_px, radii_px, s)

    draw.rectangle(box, outline=_MUTED, width=max(1, s))
    _draw_north_arrow(draw, box, s, font, geo=plan.geo_origin is not None)
    _draw_header(draw, plan, cameras, title, width, s, font)
    _draw_footer(draw, plan, cameras, box, scale, s, font)

    out = img.resize((width // s, height // s), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, format="PNG", optimize=True)
    return path


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fonts(s: int) -> dict[str, ImageFont.FreeTypeFont | ImageFont.ImageFont]:
    return {"title": _font(20 * s), "text": _font(13 * s), "small": _font(11 * s)}


def nice_length(target: float) -> float:
    """The largest of 1, 2, 5 x 10^k not above ``target`` (> 0)."""
    k = math.floor(math.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * 10.0**k <= target:
            return m * 10.0**k
    return 10.0**k


def _format_length(metres: float, unit: str) -> str:
    if unit == "m" and metres >= 1000.0:
        return f"{metres / 1000.0:g} km"
    return f"{metres:g} {unit}"


def _draw_grid(draw: ImageDraw.ImageDraw, box, to_px, scale: float, mid: np.ndarray, font) -> None:  # noqa: ANN001
    x0, y0, x1, y1 = box
    step = nice_length((x1 - x0) / scale / 6.0)
    wx0, wx1 = mid[0] - (to_px(np.array([mid[0], 0.0]))[0] - x0) / scale, mid[0] + (x1 - to_px(np.array([mid[0], 0.0]))[0]) / scale
    wy_top = mid[1] + (to_px(np.array([0.0, mid[1]]))[1] - y0) / scale
    wy_bottom = mid[1] - (y1 - to_px(np.array([0.0, mid[1]]))[1]) / scale
    for gx in np.arange(math.ceil(wx0 / step) * step, wx1, step):
        px = to_px(np.array([gx, 0.0]))[0]
        draw.line((px, y0, px, y1), fill=_GRID, width=1)
        draw.text((px, y1 + 6), f"{gx:g}", font=font["small"], fill=_MUTED, anchor="mt")
    for gy in np.arange(math.ceil(wy_bottom / step) * step, wy_top, step):
        py = to_px(np.array([0.0, gy]))[1]
        draw.line((x0, py, x1, py), fill=_GRID, width=1)
        draw.text((x0 - 6, py), f"{gy:g}", font=font["small"], fill=_MUTED, anchor="rm")


def _draw_cameras(img: Image.Image, draw: ImageDraw.ImageDraw, cameras: CameraArrays, to_px, box, s: int) -> None:  # noqa: ANN001
    if len(cameras) == 0:
        return
    p = to_px(cameras.positions[:, :2])
    if len(cameras) <= DOTS_UP_TO:
        fwd = cameras.forward[:, :2]
        norm = np.linalg.norm(fwd, axis=1, keepdims=True)
        fwd = np.where(norm > 1e-9, fwd / np.maximum(norm, 1e-9), 0.0)
        tick = 7.0 * s
        dot = 1.8 * s
        for (x, y), (fx, fy), train in zip(p, fwd, cameras.is_train):
            color = _TRAIN if train else _HELD_OUT
            draw.line((x, y, x + fx * tick, y - fy * tick), fill=color, width=max(1, s))
        for (x, y), train in zip(p, cameras.is_train):  # held-out last so they stay visible
            if train:
                draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=_TRAIN)
        for (x, y), train in zip(p, cameras.is_train):
            if not train:
                draw.ellipse((x - 1.3 * dot, y - 1.3 * dot, x + 1.3 * dot, y + 1.3 * dot), fill=_HELD_OUT)
        return
    # Density layer: darkness grows with the log of the cameras per pixel; the colour blends the
    # training and held-out colours by their counts there.
    w, h = img.size
    counts = []
    for mask in (cameras.is_train, ~cameras.is_train):
        q = p[mask]
        ix = np.clip(q[:, 0].astype(np.int64), box[0], box[2] - 1)
        iy = np.clip(q[:, 1].astype(np.int64), box[1], box[3] - 1)
        hits = np.zeros((h, w), dtype=np.float32)
        np.add.at(hits, (iy, ix), 1.0)
        counts.append(_dilate(hits, s))
    total = counts[0] + counts[1]
    held = np.divide(counts[1], total, out=np.zeros_like(total), where=total > 0)[..., None]
    color = (1.0 - held) * np.asarray(_TRAIN, np.float32) + held * np.asarray(_HELD_OUT, np.float32)
    a = (np.log1p(total) / math.log1p(max(float(total.max()), 1.0)) * 0.55 + (total > 0) * 0.4)[..., None]
    arr = np.asarray(img, dtype=np.float32)
    arr = arr * (1.0 - a) + color * a
    img.paste(Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)))


def _draw_labels(draw: ImageDraw.ImageDraw, plan: BlockPlan, centers_px: np.ndarray, radii_px: np.ndarray, s: int) -> None:
    """Block ids at the centres, as large as fits between neighbouring centres (none if too small)."""
    if len(plan) == 0:
        return
    if len(plan) > 1:
        d = np.linalg.norm(centers_px[:, None] - centers_px[None], axis=2) if len(plan) <= 4000 else None
        if d is None:
            return
        np.fill_diagonal(d, np.inf)
        room = float(np.median(d.min(axis=1)))
    else:
        room = 2.0 * float(radii_px[0])
    longest = max(plan.ids, key=len)
    size = 20 * s
    while size >= 8 * s and draw.textlength(longest, font=_font(size)) + size // 3 > 0.85 * room:
        size -= s
    if size < 8 * s:
        return
    font = _font(size)
    for b, (cx, cy) in zip(plan.blocks, centers_px):
        draw.ellipse((cx - 2.5 * s, cy - 2.5 * s, cx + 2.5 * s, cy + 2.5 * s), fill=_OUTLINE, outline=_PAPER)
        draw.text((cx, cy - 5 * s), b.id, font=font, fill=_OUTLINE, anchor="md",
                  stroke_width=max(2, size // 7), stroke_fill=_PAPER)


def _dilate(hits: np.ndarray, radius: int) -> np.ndarray:
    out = hits.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx or dy:
                out += np.roll(np.roll(hits, dy, axis=0), dx, axis=1)
    return out


def _draw_north_arrow(draw: ImageDraw.ImageDraw, box, s: int, font, *, geo: bool) -> None:  # noqa: ANN001
    x = box[2] - 30 * s
    y = box[1] + 24 * s
    half, length = 9 * s, 30 * s
    draw.polygon([(x, y), (x - half, y + length), (x, y + length - 8 * s)], fill=_INK)
    draw.polygon([(x, y), (x + half, y + length), (x, y + length - 8 * s)], fill=_PAPER, outline=_INK)
    draw.text((x, y - 4 * s), "N" if geo else "+y", font=font["text"], fill=_INK, anchor="md",
              stroke_width=2 * s, stroke_fill=_BACKGROUND)


def _draw_header(draw: ImageDraw.ImageDraw, plan: BlockPlan, cameras: CameraArrays, title, width: int, s: int, font) -> None:  # noqa: ANN001
    cfg = plan.config
    spacing = "auto" if cfg.auto_spacing else f"{float(cfg.spacing_m):g} m"
    default = f"{len(plan)} blocks  ·  {plan.strategy}  ·  spacing {spacing}  ·  overlap {cfg.overlap:.0%}"
    draw.text((24 * s, 14 * s), title or default, font=font["title"], fill=_INK)
    where = "no geo origin" if plan.geo_origin is None else "origin {:.6f}, {:.6f}".format(*plan.geo_origin[:2])
    sub = f"{len(cameras):,} frames  ·  {sum(len(b.frames) for b in plan.blocks):,} frame-block assignments  ·  {where}"
    if plan.dropped:
        sub += f"  ·  {len(plan.dropped)} blocks merged or dropped"
    draw.text((24 * s, 40 * s), sub, font=font["text"], fill=_MUTED)


def _draw_footer(draw: ImageDraw.ImageDraw, plan: BlockPlan, cameras: CameraArrays, box, scale: float, s: int, font) -> None:  # noqa: ANN001
    unit = "m" if plan.geo_origin is not None else "units"
    y = box[3] + 34 * s
    # Scale bar: four alternating segments.
    length = nice_length((box[2] - box[0]) / scale / 5.0)
    bar = length * scale
    x = box[0]
    for i in range(4):
        seg = (x + i * bar / 4, y, x + (i + 1) * bar / 4, y + 7 * s)
        draw.rectangle(seg, fill=_INK if i % 2 == 0 else _PAPER, outline=_INK, width=max(1, s // 2))
    draw.text((x, y + 11 * s), "0", font=font["small"], fill=_INK, anchor="mt")
    draw.text((x + bar, y + 11 * s), _format_length(length, unit), font=font["small"], fill=_INK, anchor="mt")

    # Legend.
    lx = box[0] + bar + 70 * s
    ly = y + 3 * s
    n_train = int(np.count_nonzero(cameras.is_train))
    items: list[tuple[str, str]] = [("train", f"training cameras ({n_train:,})")]
    if n_train < len(cameras):
        items.append(("held", f"held-out cameras ({len(cameras) - n_train:,})"))
    radius = f"{float(np.median(plan.radii)):.0f} {unit}" if len(plan) else "-"
    items.append(("block", f"block region (radius {radius})"))
    items.append(("overlap", "1, 2, 3, 4 blocks overlapping"))
    for kind, text in items:
        if kind in ("train", "held"):
            color = _TRAIN if kind == "train" else _HELD_OUT
            draw.ellipse((lx, ly - 4 * s, lx + 8 * s, ly + 4 * s), fill=color)
            tx = lx + 14 * s
        elif kind == "block":
            draw.ellipse((lx - 2 * s, ly - 7 * s, lx + 12 * s, ly + 7 * s), outline=_OUTLINE, width=max(1, round(1.3 * s)))
            tx = lx + 18 * s
        else:
            for i in range(4):
                a = 1.0 - (1.0 - _FILL_ALPHA) ** (i + 1)
                c = tuple(int(round(_BACKGROUND[k] * (1 - a) + _BLOCK[k] * a)) for k in range(3))
                draw.rectangle((lx + i * 12 * s, ly - 6 * s, lx + (i + 1) * 12 * s, ly + 6 * s), fill=c)
            tx = lx + 54 * s
        draw.text((tx, ly), text, font=font["text"], fill=_INK, anchor="lm")
        lx = tx + draw.textlength(text, font=font["text"]) + 26 * s


__all__ = ["draw_block_map", "nice_length", "DOTS_UP_TO"]
