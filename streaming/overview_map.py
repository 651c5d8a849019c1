"""The viewer's top-down block map: block circles coloured by state, the capture and the camera.

Drawn with Pillow into an RGB array for the viewer's side panel. World x (east) points right and
y (north) up. A block is *on disk* (published, not in memory), *loaded* (in the cache) or
*blended* into the frame shown; a blended block's fill grows stronger with its weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np


class BlockState(str, Enum):
    """Where a published block is, as the map shows it."""

    ON_DISK = "on disk"
    LOADED = "loaded"
    BLENDED = "blended"


STATE_COLORS: dict[BlockState, tuple[int, int, int]] = {
    BlockState.ON_DISK: (150, 150, 150),
    BlockState.LOADED: (40, 110, 230),
    BlockState.BLENDED: (235, 120, 20),
}
CAMERA_COLOR = (200, 20, 40)
CAPTURE_COLOR = (90, 90, 90)


@dataclass(frozen=True, eq=False)
class MapFrame:
    """The world rectangle a map shows and the pixel size it is drawn at."""

    lo: np.ndarray
    """(2,) float64 lower-left corner (x, y) in world units."""
    hi: np.ndarray
    """(2,) float64 upper-right corner."""
    px: int
    """Side of the (square) image in pixels."""

    @classmethod
    def around(cls, centers: np.ndarray, radii: np.ndarray, px: int, margin: float = 0.05) -> MapFrame:
        """The square that holds every block circle (centres (B, 3), radii (B,)) with a margin."""
        c = np.asarray(centers, dtype=np.float64).reshape(-1, 3)[:, :2]
        r = np.asarray(radii, dtype=np.float64).reshape(-1, 1)
        lo, hi = (c - r).min(axis=0), (c + r).max(axis=0)
        mid, half = 0.5 * (lo + hi), 0.5 * float(max(hi - lo)) * (1.0 + 2.0 * margin)
        half = max(half, 1e-6)
        return cls(mid - half, mid + half, int(px))

    @property
    def scale(self) -> float:
        """Pixels per world unit."""
        return self.px / float(self.hi[0] - self.lo[0])

    def to_px(self, xy: np.ndarray) -> np.ndarray:
        """World (..., 2+) -> pixel (..., 2) coordinates (row 0 at the top: north)."""
        p = np.asarray(xy, dtype=np.float64)[..., :2]
        return np.stack([(p[..., 0] - self.lo[0]) * self.scale, (self.hi[1] - p[..., 1]) * self.scale], axis=-1)


def draw_overview(
    frame: MapFrame,
    centers: Mapping[str, np.ndarray],
    radii: Mapping[str, float],
    states: Mapping[str, BlockState],
    weights: Mapping[str, float],
    *,
    camera_c2w: np.ndarray | None = None,
    capture_xy: np.ndarray | None = None,
) -> np.ndarray:
    """(px, px, 3) uint8 map: every block of ``centers`` as a circle of its radius, outlined and
    filled in its state's colour (``weights`` strengthen blended blocks), the capture positions
    (N, 2+) as dots and the camera as a dot with its viewing direction."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (frame.px, frame.px), (255, 255, 255))
    draw = ImageDraw.Draw(image, "RGBA")
    if capture_xy is not None and len(capture_xy):
        for x, y in frame.to_px(np.asarray(capture_xy)):
            draw.point((float(x), float(y)), fill=CAPTURE_COLOR)
    order = sorted(centers, key=lambda b: list(BlockState).index(states.get(b, BlockState.ON_DISK)))
    for block in order:
        state = states.get(block, BlockState.ON_DISK)
        color = STATE_COLORS[state]
        x, y = frame.to_px(centers[block])
        r = float(radii[block]) * frame.scale
        alpha = 30 if state is not BlockState.BLENDED else int(40 + 140 * min(max(weights.get(block, 0.0), 0.0), 1.0))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(*color, alpha), outline=(*color, 255), width=2)
        draw.text((x - 3 * len(block), y - 5), block, fill=(30, 30, 30))
    if camera_c2w is not None:
        c2w = np.asarray(camera_c2w, dtype=np.float64)
        x, y = frame.to_px(c2w[:3, 3])
        forward = -c2w[:2, 2]
        n = float(np.linalg.norm(forward))
        if n > 1e-9:
            # The heading in pixels: north is up, so the y component flips.
            tip = np.array([x, y]) + 14.0 * np.array([forward[0], -forward[1]]) / n
            draw.line((x, y, float(tip[0]), float(tip[1])), fill=CAMERA_COLOR, width=3)
        draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=CAMERA_COLOR)
    return np.asarray(image, dtype=np.uint8)


__all__ = ["BlockState", "MapFrame", "STATE_COLORS", "draw_overview"]
