"""The ingest report: what registered, how well, how long; printed, as ``ingest.json`` and as a map.

The map is top-down (ENU x right, y up, or the SfM frame without GPS): GPS positions as rings,
geo-registered SfM camera centres as dots, a line from each to its GPS position (the residual).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class IngestReport:
    """The figures of one ingest."""

    total_images: int
    registered_images: int
    unregistered: tuple[str, ...]
    """Names of the images SfM could not register (not in transforms.json)."""
    mean_reprojection_error_px: float
    matcher: str
    camera_model: str
    focal_source: str
    gps_images: int
    """Registered images with a GPS position."""
    gps_residual_median_m: float | None = None
    gps_residual_max_m: float | None = None
    gps_outliers: tuple[str, ...] = ()
    """Images whose GPS the robust fit rejected."""
    geo_origin: dict[str, float] | None = None
    scale_m_per_unit: float | None = None
    """Metres per SfM unit (None without GPS)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Stage -> seconds (read, resize, features, matching, mapping, registration, write)."""
    source: str = "photos"
    """``photos`` (SfM here), ``colmap`` (an existing model) or ``update`` (new photos registered
    into an ingest's reconstruction, ``blocknerf.ingest.extend``)."""

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["schema_version"] = SCHEMA_VERSION
        doc["unregistered"] = list(self.unregistered)
        doc["gps_outliers"] = list(self.gps_outliers)
        return doc

    @classmethod
    def read(cls, path: str | Path) -> IngestReport:
        """The report ``write`` wrote (figures written as null read back as nan)."""
        doc = json.loads(Path(path).read_text())
        doc.pop("schema_version", None)
        doc["unregistered"] = tuple(doc["unregistered"])
        doc["gps_outliers"] = tuple(doc["gps_outliers"])
        if doc["mean_reprojection_error_px"] is None:
            doc["mean_reprojection_error_px"] = float("nan")
        return cls(**doc)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(_finite(self.to_dict()), indent=2))
        return path

    def format(self) -> str:
        """A few lines for the terminal."""
        if self.source == "update":
            return self._format_update()
        lines = [
            f"ingest: {self.registered_images}/{self.total_images} images registered "
            f"(matcher {self.matcher}, {self.camera_model}, focal from {self.focal_source}), "
            f"mean reprojection error {self.mean_reprojection_error_px:.2f} px",
        ]
        if self.gps_residual_median_m is not None:
            lines.append(
                f"  geo-registered to GPS of {self.gps_images} images: residual median {self.gps_residual_median_m:.2f} m, "
                f"max {self.gps_residual_max_m:.2f} m, {self.scale_m_per_unit:.4g} m per SfM unit"
                + (f", {len(self.gps_outliers)} GPS outliers ({_names(self.gps_outliers)})" if self.gps_outliers else "")
            )
        else:
            lines.append("  no GPS: poses in SfM units (partition with spacing auto)")
        return "\n".join(lines + self._tail())

    def _format_update(self) -> str:
        lines = [
            f"registered {self.registered_images}/{self.total_images} new photos into the capture's reconstruction "
            f"(matcher {self.matcher}; its cameras fixed), mean reprojection error {self.mean_reprojection_error_px:.2f} px",
        ]
        if self.gps_residual_median_m is not None:
            lines.append(
                f"  placed by the capture's geo-registration: the {self.gps_images} with GPS lie a median "
                f"{self.gps_residual_median_m:.2f} m (max {self.gps_residual_max_m:.2f} m) from their GPS positions"
            )
        else:
            lines.append("  no GPS on the new photos: placed by the capture's registration alone")
        return "\n".join(lines + self._tail())

    def _tail(self) -> list[str]:
        lines = []
        if self.unregistered:
            lines.append(f"  not registered ({len(self.unregistered)}): {_names(self.unregistered)}")
        lines.append("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return lines


def draw_registration_map(
    path: str | Path, centres: np.ndarray, gps_enu: np.ndarray | None, *, title: str, size_px: int = 900
) -> Path:
    """Top-down PNG of camera centres ``(N, 3)`` over GPS positions ``(N, 3)`` (nan rows: none)."""
    from PIL import Image, ImageDraw

    path = Path(path)
    points = [np.asarray(centres, dtype=np.float64).reshape(-1, 3)]
    if gps_enu is not None:
        gps_enu = np.asarray(gps_enu, dtype=np.float64).reshape(-1, 3)
        points.append(gps_enu[np.isfinite(gps_enu).all(axis=1)])
    xy = np.vstack(points)[:, :2]
    lo, hi = (xy.min(axis=0), xy.max(axis=0)) if len(xy) else (np.zeros(2), np.ones(2))
    span = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-9))
    margin, header = 40, 40
    scale = (size_px - 2 * margin) / span
    img = Image.new("RGB", (size_px, size_px + header), (250, 250, 247))
    draw = ImageDraw.Draw(img)

    def px(p: np.ndarray) -> tuple[float, float]:
        return (margin + (p[0] - lo[0]) * scale, header + size_px - margin - (p[1] - lo[1]) * scale)

    if gps_enu is not None:
        for c, g in zip(centres, gps_enu):
            if np.isfinite(g).all():
                draw.line([px(c), px(g)], fill=(232, 89, 12), width=1)
                x, y = px(g)
                draw.ellipse([x - 5, y - 5, x + 5, y + 5], outline=(232, 89, 12), width=2)
    for c in centres:
        x, y = px(c)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(28, 78, 140))
    bar = 10 ** math.floor(math.log10(span / 4)) if span > 0 else 1.0
    draw.line([(margin, header + size_px - 15), (margin + bar * scale, header + size_px - 15)], fill=(33, 37, 41), width=3)
    unit = "m" if gps_enu is not None else "SfM units"
    draw.text((margin, header + size_px - 32), f"{bar:g} {unit}", fill=(33, 37, 41))
    draw.text((margin, 12), title, fill=(33, 37, 41))
    draw.text((size_px - 300, 12), "dots: SfM centres  rings: GPS", fill=(120, 124, 130))
    img.save(path)
    return path


def _names(names: tuple[str, ...], shown: int = 10) -> str:
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more (see ingest.json)" if len(names) > shown else "")


def _finite(value: Any) -> Any:
    """JSON has no NaN: write missing figures as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


__all__ = ["IngestReport", "draw_registration_map"]
