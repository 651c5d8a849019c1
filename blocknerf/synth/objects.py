"""Synthetic objects: small procedural things captured all around, to place into a city.

``blocknerf synth OUT --object KIND`` writes a 360-degree capture of one object standing at the
origin on z = 0 (metres, z up) against a plain background: two rings of cameras at different
elevations look at its middle; every ``test_every``-th frame is held out. Like the city it is
analytic -- a few coloured boxes, shaded with the city's sun and sky (``materials.lambert``) and
cast with the city's slab test -- so every view, depth included, is exact, and its size is known
(``object.json``). A NeRF trained on it (``partition.spacing_m: auto``) is an object to place
with ``blocknerf compose``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blocknerf.capture.frames import Capture, Frame, Intrinsics
from blocknerf.capture.images import save_image
from blocknerf.capture.transforms import write_capture
from blocknerf.errors import ConfigError, InputError
from blocknerf.synth.materials import lambert
from blocknerf.synth.raycast import _slab, centre_rays, pixel_rays
from blocknerf.synth.trajectory import look

__all__ = ["BACKGROUND", "BACKGROUND_HEX", "OBJECT_KINDS", "ObjectCaptureConfig", "SynthObject", "build_object", "render_object", "synthesize_object"]

BACKGROUND = (0.92, 0.92, 0.92)
"""The plain background: a light grey that no part of an object has."""
BACKGROUND_HEX = "#" + "".join(f"{round(255 * c):02x}" for c in BACKGROUND)
"""``BACKGROUND`` as ``object.json`` records it (``capture.background``): train over it
(``train.background``), so the backdrop is not learnt as matter around the object."""

_PARTS: dict[str, tuple[tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]], ...]] = {
    # (lo, hi, albedo) per box, metres; x east, y north, z up, standing on z = 0.
    "kiosk": (
        ((-1.0, -0.8, 0.0), (1.0, 0.8, 0.25), (0.35, 0.35, 0.38)),      # plinth
        ((-0.9, -0.7, 0.25), (0.9, 0.7, 2.1), (0.16, 0.45, 0.30)),      # green body
        ((-0.7, -0.72, 0.9), (0.7, -0.7, 1.8), (0.85, 0.80, 0.55)),     # lit serving hatch (south)
        ((-0.95, -1.05, 0.85), (0.95, -0.7, 0.95), (0.55, 0.32, 0.18)), # counter
        ((-1.2, -1.0, 2.1), (1.2, 1.0, 2.3), (0.70, 0.18, 0.14)),       # red roof slab
        ((-0.8, -0.1, 2.3), (0.8, 0.1, 2.8), (0.95, 0.78, 0.15)),       # yellow sign
    ),
    "car": (
        ((-2.1, -0.85, 0.3), (2.1, 0.85, 0.95), (0.20, 0.30, 0.65)),    # blue body
        ((-1.1, -0.75, 0.95), (1.0, 0.75, 1.45), (0.25, 0.30, 0.40)),   # cabin
        ((-1.7, -0.95, 0.0), (-1.0, -0.6, 0.6), (0.10, 0.10, 0.10)),    # wheels
        ((1.0, -0.95, 0.0), (1.7, -0.6, 0.6), (0.10, 0.10, 0.10)),
        ((-1.7, 0.6, 0.0), (-1.0, 0.95, 0.6), (0.10, 0.10, 0.10)),
        ((1.0, 0.6, 0.0), (1.7, 0.95, 0.6), (0.10, 0.10, 0.10)),
    ),
}
OBJECT_KINDS = tuple(sorted(_PARTS))


@dataclass(frozen=True, eq=False)
class SynthObject:
    """An analytic object: axis-aligned boxes with flat albedos."""

    kind: str
    lo: np.ndarray
    """(K, 3) float32 box corners (metres)."""
    hi: np.ndarray
    albedo: np.ndarray
    """(K, 3) float32."""

    @property
    def size_m(self) -> tuple[float, float, float]:
        """Extent of the bounding box (east, north, up)."""
        return tuple(float(v) for v in self.hi.max(axis=0) - self.lo.min(axis=0))  # type: ignore[return-value]

    @property
    def center(self) -> np.ndarray:
        """(3,) centre of the bounding box."""
        return 0.5 * (self.hi.max(axis=0) + self.lo.min(axis=0)).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1, "kind": self.kind, "size_m": list(self.size_m),
            "bounds_lo": self.lo.min(axis=0).tolist(), "bounds_hi": self.hi.max(axis=0).tolist(),
            "boxes": [{"lo": lo.tolist(), "hi": hi.tolist(), "albedo": c.tolist()} for lo, hi, c in zip(self.lo, self.hi, self.albedo)],
        }


@dataclass(frozen=True, slots=True)
class ObjectCaptureConfig:
    """How an object is captured."""

    kind: str = "kiosk"
    width: int = 96
    height: int = 72
    views: int = 64
    """Frames, split evenly between the two rings."""
    elevations_deg: tuple[float, float] = (12.0, 35.0)
    """Camera elevation of each ring above the object's middle."""
    distance_factor: float = 1.4
    """Camera distance from the object's middle, in object diagonals."""
    fov_x_deg: float = 50.0
    test_every: int = 8
    supersample: int = 2

    def validate(self) -> None:
        if self.kind not in _PARTS:
            raise ValueError(f"--object must be one of {', '.join(OBJECT_KINDS)}, got {self.kind!r}")
        if self.width < 8 or self.height < 8:
            raise ValueError("image size must be at least 8x8")
        if self.views < 4:
            raise ValueError(f"views must be at least 4, got {self.views}")


def build_object(kind: str) -> SynthObject:
    """The object ``kind`` (one of ``OBJECT_KINDS``)."""
    if kind not in _PARTS:
        raise ValueError(f"unknown object {kind!r} (kinds: {', '.join(OBJECT_KINDS)})")
    parts = _PARTS[kind]
    arr = lambda i: np.array([p[i] for p in parts], dtype=np.float32)  # noqa: E731
    return SynthObject(kind, arr(0), arr(1), arr(2))


def _cast(obj: SynthObject, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) distance to the nearest box (+inf: background) and (N, 3) rgb of (N, 3) unit rays."""
    o = np.asarray(origin, dtype=np.float32)
    inv = [(np.float32(1.0) / np.where(np.abs(dirs[:, a]) < 1e-9, np.float32(1e-9), dirs[:, a])).astype(np.float32)[None, :] for a in range(3)]
    tn, tf = _slab(o, inv, obj.lo[:, None, :], obj.hi[:, None, :])  # (K, N)
    t = np.where((tn <= tf) & (tn > 1e-4), tn, np.inf)
    k = t.argmin(axis=0)
    t_hit = t[k, np.arange(len(dirs))]
    hit = np.isfinite(t_hit)
    rgb = np.empty((len(dirs), 3), dtype=np.float32)
    rgb[:] = BACKGROUND
    if hit.any():
        kk, d = k[hit], dirs[hit]
        p = o + t_hit[hit, None] * d
        # The face entered: the axis whose slab the ray entered last.
        near = np.stack([np.minimum((obj.lo[kk, a] - o[a]) * inv[a][0, hit], (obj.hi[kk, a] - o[a]) * inv[a][0, hit]) for a in range(3)], 1)
        axis = near.argmax(axis=1)
        normals = np.zeros_like(p)
        normals[np.arange(len(p)), axis] = -np.sign(d[np.arange(len(p)), axis])
        rgb[hit] = np.clip(obj.albedo[kk] * lambert(normals)[:, None], 0.0, 1.0)
    return t_hit, rgb


def render_object(obj: SynthObject, c2w: np.ndarray, intrinsics: Intrinsics, *, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) float32 rgb (the mean of ``supersample**2`` rays per pixel) and (H, W) float32
    depth along the optical axis of each pixel's centre ray (+inf on the background)."""
    k = intrinsics
    origin = np.asarray(c2w, dtype=np.float64)[:3, 3]
    dirs, cos = centre_rays(c2w, k, slice(0, k.height))
    t, rgb = _cast(obj, origin, dirs)
    if supersample > 1:
        sub = (np.arange(supersample) + 0.5) / supersample
        v = (np.repeat(np.arange(k.height), k.width)[:, None, None] + sub[None, :, None] + np.zeros((1, 1, supersample))).reshape(-1)
        u = (np.tile(np.arange(k.width), k.height)[:, None, None] + sub[None, None, :] + np.zeros((1, supersample, 1))).reshape(-1)
        sdirs, _ = pixel_rays(c2w, k, u, v)
        rgb = _cast(obj, origin, sdirs)[1].reshape(-1, supersample * supersample, 3).mean(axis=1)
    return rgb.reshape(k.height, k.width, 3), (t * cos).reshape(k.height, k.width).astype(np.float32)


def synthesize_object(out_dir: str | os.PathLike[str], cfg: ObjectCaptureConfig) -> Capture:
    """Write the capture of ``cfg.kind`` into ``out_dir``: images/, depth/, transforms.json,
    object.json (kind, size, boxes). ``out_dir`` must be new or empty, or an earlier object capture."""
    try:
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(None, f"synth: {exc}") from None
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "object.json").is_file())):
        raise InputError(out, "exists and is not empty nor an earlier object capture; choose a new directory")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    obj = build_object(cfg.kind)
    intrinsics = Intrinsics.from_fov(cfg.width, cfg.height, math.radians(cfg.fov_x_deg))
    middle = obj.center
    distance = cfg.distance_factor * float(np.linalg.norm(obj.size_m))
    frames = []
    per_ring = [cfg.views // 2, cfg.views - cfg.views // 2]
    n = 0
    for ring, (count, elevation) in enumerate(zip(per_ring, cfg.elevations_deg)):
        for i in range(count):
            azimuth = 360.0 * (i + 0.5 * ring) / count
            a, e = math.radians(azimuth), math.radians(elevation)
            position = middle + distance * np.array([math.cos(a) * math.cos(e), math.sin(a) * math.cos(e), math.sin(e)])
            c2w = look(position, azimuth + 180.0, -elevation)
            name = f"r{ring}_{i:03d}"
            rgb, depth = render_object(obj, c2w, intrinsics, supersample=cfg.supersample)
            save_image(out / "images" / f"{name}.png", rgb)
            np.save(out / "depth" / f"{name}.npy", depth)
            frames.append(Frame(
                id=f"images/{name}.png", image_path=out / "images" / f"{name}.png", intrinsics=intrinsics, c2w=c2w,
                appearance_index=n, split="test" if n % cfg.test_every == cfg.test_every - 1 else "train",
                depth_path=out / "depth" / f"{name}.npy", extra={"azimuth_deg": azimuth, "elevation_deg": elevation},
            ))
            n += 1
    capture = Capture(root=out, frames=tuple(frames), extra={"synth": {"object": cfg.kind, "size_m": list(obj.size_m)}})
    write_capture(capture, out)
    (out / "object.json").write_text(json.dumps({**obj.to_dict(), "capture": {"views": cfg.views, "distance_m": distance, "background": BACKGROUND_HEX}}, indent=1))
    return capture
