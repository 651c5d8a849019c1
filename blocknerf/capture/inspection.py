"""What a user wants to know about a capture before training on it (``blocknerf inspect``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from blocknerf.capture.frames import Capture
from blocknerf.errors import InputError
from blocknerf.capture.images import image_size, load_image


def check_images(capture: Capture, *, decode: bool = True, progress: Callable[[int], None] | None = None) -> None:
    """Raise InputError for the first image that is unreadable, truncated or of the wrong size.

    ``decode=False`` reads headers only (fast); ``decode=True`` decodes every pixel, which is what
    catches truncated files.
    """
    for frame in capture.frames:
        k = frame.intrinsics
        if decode:
            h, w = load_image(frame.image_path).shape[:2]
        else:
            w, h = image_size(frame.image_path)
        if (w, h) != (k.width, k.height):
            raise InputError(frame.image_path, f"image is {w}x{h} but its intrinsics say {k.width}x{k.height}")
        if progress is not None:
            progress(1)


def summarize(capture: Capture) -> dict[str, Any]:
    """A JSON-ready summary: counts, splits, image sizes, intrinsics, camera extent, geo origin."""
    frames = capture.frames
    positions = capture.positions()
    sizes = Counter(f"{f.intrinsics.width}x{f.intrinsics.height}" for f in frames)
    intrinsics = Counter(f.intrinsics for f in frames)
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    timestamps = [f.timestamp for f in frames if f.timestamp is not None]
    return {
        "capture": str(capture.root),
        "frames": len(frames),
        "listed": len(frames) + len(capture.missing),
        "missing_images": len(capture.missing),
        "train": sum(f.split == "train" or f.split is None for f in frames),
        "test": sum(f.split == "test" for f in frames),
        "image_sizes": dict(sizes),
        "intrinsics": [dict(k.to_dict(), frames=n) for k, n in intrinsics.most_common(5)],
        "distinct_intrinsics": len(intrinsics),
        "distortion": any(k.has_distortion for k in intrinsics),
        "extent": {
            "min": lo.tolist(),
            "max": hi.tolist(),
            "size": (hi - lo).tolist(),
            "diagonal": float(np.linalg.norm(hi - lo)),
        },
        "gps_frames": sum(f.gps is not None for f in frames),
        "exposure_frames": sum(f.exposure is not None for f in frames),
        "timestamps": None if not timestamps else {"min": min(timestamps), "max": max(timestamps)},
        "geo_origin": None if capture.geo_origin is None else capture.geo_origin.to_dict(),
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary as aligned text lines for the terminal."""
    ext = s["extent"]
    lines = [
        f"capture         {s['capture']}",
        f"frames          {s['frames']} loaded of {s['listed']} listed ({s['missing_images']} missing images)",
        f"splits          train {s['train']}, test {s['test']}",
        "image sizes     " + ", ".join(f"{k} ({v} frames)" for k, v in s["image_sizes"].items()),
    ]
    for k in s["intrinsics"][:3]:
        dist = f", k1={k['k1']:.4g} k2={k['k2']:.4g} p1={k['p1']:.4g} p2={k['p2']:.4g}" if s["distortion"] else ""
        lines.append(
            f"intrinsics      fx={k['fx']:.2f} fy={k['fy']:.2f} cx={k['cx']:.2f} cy={k['cy']:.2f}{dist} ({k['frames']} frames)"
        )
    if s["distinct_intrinsics"] > 3:
        lines.append(f"                ... {s['distinct_intrinsics']} distinct intrinsics in all")
    fmt = lambda v: "[" + ", ".join(f"{x:.2f}" for x in v) + "]"  # noqa: E731
    lines.append(f"camera extent   min {fmt(ext['min'])}  max {fmt(ext['max'])}  size {fmt(ext['size'])}")
    geo = s["geo_origin"]
    lines.append(
        "geo origin      "
        + ("none (local frame only)" if geo is None else f"lat {geo['lat']:.7f}, lon {geo['lon']:.7f}, alt {geo['alt']:.2f} m")
    )
    lines.append(f"gps             {s['gps_frames']} of {s['frames']} frames")
    if s["exposure_frames"]:
        lines.append(f"exposure        {s['exposure_frames']} of {s['frames']} frames")
    if s["timestamps"]:
        lines.append(f"timestamps      {s['timestamps']['min']:.3f} .. {s['timestamps']['max']:.3f}")
    return "\n".join(lines)
