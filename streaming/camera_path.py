"""Camera paths: nerfstudio's ``camera_path.json``, and an automatic path along the capture.

The nerfstudio format (what its viewer exports and ``ns-render camera-path`` reads)::

    {"camera_type": "perspective", "render_width": 640, "render_height": 480,
     "fps": 30, "seconds": 4.0,
     "camera_path": [{"camera_to_world": [16 floats, row-major 4x4], "fov": 50.0, "aspect": 1.33}, ...],
     "keyframes": [{"matrix": [16 floats, row-major 4x4], "fov": 50.0, "aspect": 1.33,
                    "override_transition_enabled": false, "override_transition_sec": null}, ...],
     "default_fov": 50.0, "default_transition_sec": 2.0, "is_cycle": false, "smoothness_value": 0.5}

``camera_to_world`` is OpenGL-convention camera-to-world (as in transforms.json) and ``fov`` is the
*vertical* field of view in degrees (focal length ``H / (2 tan(fov / 2))``, square pixels, centred
principal point). When ``camera_path`` lists frames they are rendered as they are (as ns-render
does); a file with only ``keyframes`` is interpolated here: positions by a cubic spline, rotations
by spherical linear interpolation, fov linearly, each keyframe lasting its transition time
(``default_transition_sec`` or its override; the old three.js viewer wrote ``matrix`` as a string
of 16 numbers in column-major order, which is read too). Poses are taken in the block store's world
frame (the frame of the capture's transforms.json).

The automatic path (``auto_path``) runs through the capture's training camera positions in time
order: cameras of a rig (closer than ``merge_m``) form one stop, positions are smoothed by a
smoothing spline over arc length, rotations are the capture's (per stop, the camera facing most
nearly along the direction of travel), smoothed over the same length scale and interpolated by
scipy's Slerp, and frames are placed at equal arc-length steps, i.e. at constant speed.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blocknerf.errors import InputError
from streaming.config import AutoPathConfig
from streaming.protocol import CameraView

DEFAULT_FPS = 30.0
DEFAULT_TRANSITION_S = 2.0


@dataclass(frozen=True, eq=False)
class CameraPath:
    """Poses to render in order, with their vertical field of view, image size and frame rate."""

    c2w: np.ndarray
    """(N, 4, 4) float64 camera-to-world, OpenGL convention."""
    fov_y_deg: np.ndarray
    """(N,) float64 vertical field of view in degrees."""
    fps: float = DEFAULT_FPS
    width: int | None = None
    """Image width the path asks for (None: the renderer's default)."""
    height: int | None = None
    source: str = ""
    """Where the path came from (a file, or ``auto``)."""

    def __post_init__(self) -> None:
        c2w = np.array(self.c2w, dtype=np.float64).reshape(-1, 4, 4)
        fov = np.array(self.fov_y_deg, dtype=np.float64).reshape(-1)
        if len(c2w) == 0 or len(fov) != len(c2w):
            raise ValueError(f"a camera path needs poses and one fov per pose ({len(c2w)} poses, {len(fov)} fovs)")
        if not np.all((fov > 0) & (fov < 180)):
            raise ValueError("fov must be in (0, 180) degrees")
        if not self.fps > 0:
            raise ValueError("fps must be positive")
        c2w.setflags(write=False)
        fov.setflags(write=False)
        object.__setattr__(self, "c2w", c2w)
        object.__setattr__(self, "fov_y_deg", fov)

    def __len__(self) -> int:
        return len(self.c2w)

    @property
    def positions(self) -> np.ndarray:
        """(N, 3) float64 camera centres."""
        return self.c2w[:, :3, 3]

    @property
    def seconds(self) -> float:
        return len(self) / self.fps

    def size(self, default: tuple[int, int]) -> tuple[int, int]:
        """(width, height): the path's own size, else ``default``."""
        if self.width and self.height:
            return self.width, self.height
        return default

    def view(self, i: int, size: tuple[int, int]) -> CameraView:
        """Frame ``i`` as a camera of ``size`` (width, height) pixels (vertical fov kept)."""
        from blocknerf.capture.frames import Intrinsics

        w, h = size
        f = 0.5 * h / math.tan(0.5 * math.radians(float(self.fov_y_deg[i])))
        return CameraView(self.c2w[i], Intrinsics(f, f, 0.5 * w, 0.5 * h, w, h), time_s=i / self.fps)

    def to_nerfstudio(self, size: tuple[int, int] | None = None) -> dict[str, Any]:
        """The path as a nerfstudio camera_path.json document (frames in ``camera_path``)."""
        w, h = size or self.size((320, 240))
        return {
            "camera_type": "perspective",
            "render_width": int(w),
            "render_height": int(h),
            "fps": self.fps,
            "seconds": self.seconds,
            "camera_path": [
                {"camera_to_world": m.reshape(-1).tolist(), "fov": float(f), "aspect": w / h}
                for m, f in zip(self.c2w, self.fov_y_deg)
            ],
            "keyframes": [],
        }

    def write(self, path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> None:
        Path(path).write_text(json.dumps(self.to_nerfstudio(size), indent=1))


# -- reading nerfstudio camera paths ----------------------------------------------------------------
def read_camera_path(path: str | os.PathLike[str]) -> CameraPath:
    """Read a nerfstudio camera_path.json (see the module docstring); InputError naming the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "camera path file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read camera path ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return camera_path_from_dict(doc, where=str(path))


def camera_path_from_dict(doc: Any, *, where: str = "camera path") -> CameraPath:
    """Interpret a parsed camera_path.json document; InputError naming ``where``."""
    if not isinstance(doc, dict):
        raise InputError(where, "a camera path must be a JSON object")
    camera_type = doc.get("camera_type", "perspective")
    if camera_type != "perspective":
        raise InputError(where, f"camera_type '{camera_type}' is not supported (perspective only)")
    width = _opt_int(doc, "render_width", where)
    height = _opt_int(doc, "render_height", where)
    entries = doc.get("camera_path")
    keyframes = doc.get("keyframes")
    if entries is not None and not isinstance(entries, list):
        raise InputError(where, "'camera_path' must be a list")
    if keyframes is not None and not isinstance(keyframes, list):
        raise InputError(where, "'keyframes' must be a list")
    seconds = _opt_float(doc, "seconds", where)
    fps = _opt_float(doc, "fps", where)
    if entries:
        c2w = np.stack([_matrix(e, "camera_to_world", f"camera_path[{i}]", where) for i, e in enumerate(entries)])
        fov = np.array([_fov(e, doc, f"camera_path[{i}]", where) for i, e in enumerate(entries)])
        if fps is None:
            fps = len(entries) / seconds if seconds else DEFAULT_FPS
    elif keyframes:
        c2w, fov, fps = _interpolate_keyframes(doc, keyframes, fps, seconds, where)
    else:
        raise InputError(where, "no 'camera_path' frames and no 'keyframes'")
    try:
        return CameraPath(c2w, fov, fps=fps, width=width, height=height, source=where)
    except ValueError as exc:
        raise InputError(where, str(exc)) from None


def keyframe_document(
    c2w: np.ndarray,
    fov_y_deg: np.ndarray,
    size: tuple[int, int],
    *,
    fps: float = DEFAULT_FPS,
    transition_s: float = DEFAULT_TRANSITION_S,
) -> dict[str, Any]:
    """A nerfstudio camera_path.json document through keyframes (K, 4, 4) with vertical fovs (K,).

    It holds the ``keyframes`` as nerfstudio's viewer writes them and the ``camera_path`` frames
    interpolated between them as ``read_camera_path`` interpolates keyframes, ``transition_s``
    apart at ``fps``: keyframe k is frame ``k * round(transition_s * fps)``, with its pose and fov
    exactly as given, so the frame renders to what the viewer showed at that keyframe.
    """
    mats = np.array(c2w, dtype=np.float64).reshape(-1, 4, 4)
    fovs = np.array(fov_y_deg, dtype=np.float64).reshape(-1)
    if len(mats) == 0 or len(fovs) != len(mats):
        raise ValueError(f"need one fov per keyframe and at least one keyframe ({len(mats)} poses, {len(fovs)} fovs)")
    if not (fps > 0 and transition_s > 0):
        raise ValueError("fps and transition_s must be positive")
    w, h = size
    step = max(1, round(transition_s * fps))
    doc: dict[str, Any] = {
        "camera_type": "perspective",
        "render_width": int(w),
        "render_height": int(h),
        "fps": float(fps),
        "seconds": ((len(mats) - 1) * step + 1) / fps,
        "keyframes": [
            {"matrix": m.reshape(-1).tolist(), "fov": float(f), "aspect": w / h,
             "override_transition_enabled": False, "override_transition_sec": None}
            for m, f in zip(mats, fovs)
        ],
        "default_fov": float(fovs[-1]),
        "default_transition_sec": step / fps,
        "is_cycle": False,
        "smoothness_value": 0.5,
    }
    if len(mats) == 1:
        frames, frame_fovs = mats, fovs
    else:
        path = camera_path_from_dict({**doc, "camera_path": None}, where="keyframes")
        frames, frame_fovs = path.c2w.copy(), path.fov_y_deg.copy()
        frames[::step], frame_fovs[::step] = mats, fovs
    doc["camera_path"] = [
        {"camera_to_world": m.reshape(-1).tolist(), "fov": float(f), "aspect": w / h} for m, f in zip(frames, frame_fovs)
    ]
    return doc


def _interpolate_keyframes(
    doc: Mapping[str, Any], keyframes: list[Any], fps: float | None, seconds: float | None, where: str
) -> tuple[np.ndarray, np.ndarray, float]:
    from scipy.interpolate import CubicSpline
    from scipy.spatial.transform import Rotation, Slerp

    mats = [_matrix(k, "matrix", f"keyframes[{i}]", where) for i, k in enumerate(keyframes)]
    fovs = [_fov(k, doc, f"keyframes[{i}]", where) for i, k in enumerate(keyframes)]
    default_s = _opt_float(doc, "default_transition_sec", where) or DEFAULT_TRANSITION_S
    durations = []
    for k in keyframes:
        t = k.get("override_transition_sec") if k.get("override_transition_enabled") else None
        durations.append(float(t) if isinstance(t, (int, float)) and t > 0 else default_s)
    if doc.get("is_cycle") and len(mats) > 1:
        mats.append(mats[0])
        fovs.append(fovs[0])
    else:
        durations = durations[:-1]
    fps = fps or DEFAULT_FPS
    if len(mats) == 1:
        n = max(1, round((seconds or 0.0) * fps))
        return np.repeat(mats[0][None], n, axis=0), np.full(n, fovs[0]), fps
    times = np.concatenate([[0.0], np.cumsum(durations)])
    total = seconds if seconds else float(times[-1])
    n = max(2, round(total * fps))
    # nerfstudio spreads the frames over the keyframe timeline whatever ``seconds`` says.
    t = np.linspace(0.0, times[-1], n, endpoint=False) if doc.get("is_cycle") else np.linspace(0.0, times[-1], n)
    mats_a = np.stack(mats)
    pos = mats_a[:, :3, 3]
    positions = CubicSpline(times, pos, axis=0, bc_type="natural")(t) if len(mats) > 2 else _lerp(times, pos, t)
    rotations = Slerp(times, Rotation.from_matrix(mats_a[:, :3, :3]))(t).as_matrix()
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = rotations
    out[:, :3, 3] = positions
    return out, np.interp(t, times, np.array(fovs)), fps


def _lerp(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(t, x, y[:, k]) for k in range(y.shape[1])], axis=1)


def _matrix(entry: Any, key: str, label: str, where: str) -> np.ndarray:
    from blocknerf.capture.frames import pose_problem

    if not isinstance(entry, dict) or key not in entry:
        raise InputError(where, f"{label}: missing '{key}'")
    value = entry[key]
    column_major = False
    if isinstance(value, str):
        # The old (three.js) viewer stored keyframe matrices as a string, column-major.
        value = [float(v) for v in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", value)]
        column_major = True
    try:
        m = np.array(value, dtype=np.float64).reshape(4, 4)
    except (TypeError, ValueError, OverflowError):
        raise InputError(where, f"{label}: '{key}' must be 16 numbers (a 4x4 matrix)") from None
    if column_major:
        m = m.T
    problem = pose_problem(m)
    if problem:
        raise InputError(where, f"{label}: {problem.replace('transform_matrix', key)}")
    return m


def _fov(entry: Mapping[str, Any], doc: Mapping[str, Any], label: str, where: str) -> float:
    fov = entry.get("fov", doc.get("default_fov"))
    if isinstance(fov, bool) or not isinstance(fov, (int, float)) or not 0.0 < fov < 180.0:
        raise InputError(where, f"{label}: 'fov' must be the vertical field of view in degrees, in (0, 180), got {fov!r}")
    return float(fov)


def _opt_int(doc: Mapping[str, Any], key: str, where: str) -> int | None:
    v = doc.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 1 or int(v) != v:
        raise InputError(where, f"'{key}' must be a positive integer, got {v!r}")
    return int(v)


def _opt_float(doc: Mapping[str, Any], key: str, where: str) -> float | None:
    v = doc.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise InputError(where, f"'{key}' must be a positive number, got {v!r}")
    return float(v)


# -- the automatic path ------------------------------------------------------------------------------
def auto_path(
    cameras: Any,
    cfg: AutoPathConfig = AutoPathConfig(),
    *,
    frames: int | None = None,
    seconds: float | None = None,
    speed_mps: float | None = None,
    fov_y_deg: float | None = None,
    size: tuple[int, int] | None = None,
) -> CameraPath:
    """A smooth path along a capture's training cameras (``partitioning.CameraArrays``; see the
    module docstring). Length and timing:

    * neither ``frames`` nor ``seconds``: the whole trajectory at ``speed_mps`` (or the config's);
    * ``frames`` N or ``seconds`` S (N = S x fps): N frames over the whole trajectory, or, with
      ``speed_mps``, over its first ``speed_mps x (N - 1) / fps`` metres.

    ``fov_y_deg`` defaults to the capture's median vertical field of view.
    """
    from scipy.spatial.transform import Rotation, Slerp

    c2w = np.asarray(cameras.c2w, dtype=np.float64)
    keep = np.asarray(cameras.is_train, dtype=bool)
    if not keep.any():
        keep = np.ones(len(c2w), dtype=bool)
    times = np.asarray(cameras.timestamps, dtype=np.float64)
    idx = np.flatnonzero(keep)
    if np.all(np.isfinite(times[idx])):
        idx = idx[np.argsort(times[idx], kind="stable")]
    stops, keys = _stops(c2w[idx], cfg.merge_m)
    if len(stops) < 2:
        raise InputError(None, "the capture has fewer than two distinct camera positions; an automatic path needs a trajectory")
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(stops, axis=0), axis=1))])
    length = float(s[-1])
    spline = _position_spline(s, stops, cfg.smoothing_m)

    fps = cfg.fps
    if frames is None and seconds is None:
        speed = speed_mps or cfg.speed_mps
        n = max(2, math.ceil(length / speed * fps) + 1)
        covered = length
    else:
        n = int(frames) if frames is not None else max(2, round(float(seconds) * fps))  # type: ignore[arg-type]
        if n < 1:
            raise InputError(None, f"a path needs at least one frame, got {n}")
        covered = length if not speed_mps else min(length, speed_mps * max(n - 1, 0) / fps)
    # Equal steps along the smoothed curve: constant speed.
    u = np.linspace(0.0, length, max(256, 16 * len(stops)))
    pts = spline(u)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    target = np.linspace(0.0, arc[-1] * covered / length, n)
    u_frames = np.interp(target, arc, u)
    positions = spline(u_frames)

    key_s = np.array([s[i] for i, _ in keys])
    if len(keys) >= 2:
        # Slerp between the capture's rotations along the trajectory, then smooth over the same
        # length scale as the positions (in distance along the smoothed path).
        slerp = Slerp(key_s, Rotation.from_matrix(np.stack([r for _, r in keys])))
        along = slerp(np.clip(u, key_s[0], key_s[-1]))
        rotations = _smooth_rotations(arc, along, target, cfg.smoothing_m).as_matrix()
    elif len(keys) == 1:
        rotations = np.repeat(keys[0][1][None], n, axis=0)
    else:
        rotations = _look_along(spline, u_frames, length)
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = rotations
    out[:, :3, 3] = positions
    if fov_y_deg is None:
        fy, h = np.asarray(cameras.intrinsics)[idx, 1], np.asarray(cameras.sizes)[idx, 1]
        fov_y_deg = float(np.median(np.degrees(2.0 * np.arctan(0.5 * h / fy))))
    w, hh = size if size else (None, None)
    return CameraPath(out, np.full(n, fov_y_deg), fps=fps, width=w, height=hh, source="auto")


def _stops(c2w: np.ndarray, merge_m: float) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Group consecutive cameras into stops: (S, 3) stop positions and, per stop with a usable
    orientation, (stop index, (3, 3) rotation)."""
    groups: list[list[int]] = []
    for i, p in enumerate(c2w[:, :3, 3]):
        if groups and np.linalg.norm(p - c2w[groups[-1][0], :3, 3]) <= merge_m:
            groups[-1].append(i)
        else:
            groups.append([i])
    stops = np.array([c2w[g, :3, 3].mean(axis=0) for g in groups])
    # Drop stops that do not advance (a camera standing still and coming back).
    step = np.linalg.norm(np.diff(stops, axis=0), axis=1)
    keep = np.concatenate([[True], step > 1e-6])
    groups = [g for g, k in zip(groups, keep) if k]
    stops = stops[keep]
    travel = np.gradient(stops, axis=0) if len(stops) > 1 else np.zeros_like(stops)
    keys = []
    for j, g in enumerate(groups):
        if len(g) == 1:
            keys.append((j, c2w[g[0], :3, :3]))
            continue
        # A rig: the camera facing most nearly along the travel direction, if one does (45 deg).
        t = travel[j] / max(np.linalg.norm(travel[j]), 1e-12)
        forward = -c2w[g, :3, 2]
        cos = forward @ t / np.maximum(np.linalg.norm(forward, axis=1), 1e-12)
        best = int(np.argmax(cos))
        if cos[best] >= math.cos(math.radians(45.0)):
            keys.append((j, c2w[g[best], :3, :3]))
    return stops, keys


def _position_spline(s: np.ndarray, points: np.ndarray, smoothing_m: float) -> Any:
    """A smooth curve through (S, 3) ``points`` at arc lengths ``s`` (S,): a cubic smoothing
    spline whose penalty gives an equivalent smoothing length of about ``smoothing_m``."""
    from scipy.interpolate import make_interp_spline, make_smoothing_spline

    n = len(s)
    if smoothing_m > 0 and n >= 5:
        # The smoothing spline's equivalent kernel has bandwidth ~ (lam / density)^(1/4).
        lam = (n / max(s[-1], 1e-9)) * smoothing_m**4
        return make_smoothing_spline(s, points, lam=lam)
    return make_interp_spline(s, points, k=min(3, n - 1))


def _smooth_rotations(at: np.ndarray, rotations: Any, where: np.ndarray, smoothing_m: float) -> Any:
    """Rotations (M,) sampled at distances ``at`` (M,) -> their Gaussian-weighted means (sigma =
    smoothing_m / 2) at distances ``where`` (N,); plain interpolation without smoothing."""
    from scipy.spatial.transform import Rotation, Slerp

    if smoothing_m <= 0:
        return Slerp(at, rotations)(np.clip(where, at[0], at[-1]))
    sigma = 0.5 * smoothing_m
    out = []
    for d in where:
        w = np.exp(-0.5 * ((at - d) / sigma) ** 2)
        near = w > 1e-4
        out.append(rotations[near].mean(weights=w[near]).as_matrix())
    return Rotation.from_matrix(np.stack(out))


def _look_along(spline: Any, u: np.ndarray, length: float) -> np.ndarray:
    """(N, 3, 3) level cameras looking along the curve (when the capture gives no orientation)."""
    from partitioning.layouts import heading_poses

    du = 1e-3 * max(length, 1.0)
    tangent = spline(np.clip(u + du, 0, length)) - spline(np.clip(u - du, 0, length))
    yaw = np.arctan2(tangent[:, 1], tangent[:, 0])
    return heading_poses(np.zeros((len(u), 3)), yaw)[:, :3, :3]


__all__ = ["CameraPath", "auto_path", "camera_path_from_dict", "keyframe_document", "read_camera_path"]
