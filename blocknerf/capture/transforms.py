"""Read and write ``transforms.json`` in the instant-ngp and nerfstudio conventions.

Intrinsics may be global (top level) or per frame; the focal length may be given as ``fl_x``/``fl_y``
or as ``camera_angle_x``/``camera_angle_y``; OpenCV distortion uses ``k1, k2, p1, p2``. Geo-registered
captures carry a top-level ``"geo_origin": {"lat", "lon", "alt"}`` and per-frame ``"gps"``; splits use
nerfstudio's top-level ``"train_filenames"`` / ``"test_filenames"`` lists.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import warnings
from pathlib import Path
from typing import Any

from blocknerf.capture.frames import Capture, Frame, Intrinsics, pose_problem
from blocknerf.errors import CaptureWarning, InputError
from blocknerf.capture.geo import LLA
from blocknerf.capture.images import image_size

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2", "camera_angle_x", "camera_angle_y")
# Keys we interpret; everything else is carried in ``extra`` and written back unchanged.
_TOP_KEYS = set(INTRINSIC_KEYS) | {"frames", "train_filenames", "test_filenames", "val_filenames", "geo_origin", "camera_model"}
_FRAME_KEYS = set(INTRINSIC_KEYS) | {
    "file_path", "transform_matrix", "appearance_id", "timestamp", "exposure", "gps", "depth_file_path",
}
_SUPPORTED_MODELS = {"OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "RADIAL", "SIMPLE_RADIAL"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def transforms_path(path: str | os.PathLike[str]) -> Path:
    """The transforms.json of a capture given as the file itself or its directory."""
    p = Path(path)
    return p / "transforms.json" if p.is_dir() else p


def read_capture(path: str | os.PathLike[str], *, allow_outside_paths: bool = False) -> Capture:
    """Load a capture from ``transforms.json`` (or the directory holding it).

    Frames whose image file does not exist are skipped with one CaptureWarning that says how many.
    Malformed input raises InputError naming the file and the problem; so does a ``file_path`` (or
    ``depth_file_path``) that resolves outside the capture's directory (absolute, ``..``, or a
    symbolic link leading out), unless ``allow_outside_paths``.
    """
    file = transforms_path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise InputError(file, "file not found (expected a transforms.json or a directory holding one)") from None
    except OSError as exc:
        raise InputError(file, f"cannot read ({exc.strerror})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(file, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return capture_from_dict(doc, root=file.parent.resolve(), where=str(file), confine=not allow_outside_paths)


def capture_from_dict(doc: Any, *, root: Path, where: str, require_images: bool = True, confine: bool = False) -> Capture:
    """Interpret a parsed transforms.json document whose image paths are relative to ``root``.

    ``confine``: refuse (InputError) image and depth paths that resolve outside ``root``.

    With ``require_images=False`` (a capture record kept in a block store, read on a machine that
    may not hold the images) frames are kept whether or not their image exists, and image sizes
    must be given in the document.
    """
    if not isinstance(doc, dict):
        raise InputError(where, "top level must be a JSON object")
    if "frames" not in doc:
        raise InputError(where, "missing key 'frames'")
    if not isinstance(doc["frames"], list):
        raise InputError(where, "'frames' must be a list")
    model = doc.get("camera_model", "OPENCV")
    if model not in _SUPPORTED_MODELS:
        raise InputError(where, f"camera_model {model!r} is not supported (pinhole or OpenCV k1, k2, p1, p2 only)")
    splits = _read_splits(doc, where)
    geo_origin = None if doc.get("geo_origin") is None else _lla(doc["geo_origin"], where, "geo_origin")
    # Kept in the capture's extra keys too, so that writing the capture back keeps it.
    depth_scale = _opt_float(doc.get("depth_unit_scale_factor"), where, "depth_unit_scale_factor")

    frames: list[Frame] = []
    missing: list[str] = []
    listed: set[str] = set()
    for i, entry in enumerate(doc["frames"]):
        label = f"frame {i}"
        if not isinstance(entry, dict):
            raise InputError(where, f"{label} is not a JSON object")
        for key in ("file_path", "transform_matrix"):
            if key not in entry:
                raise InputError(where, f"{label}: missing key '{key}'")
        frame_id = _normalise(entry["file_path"])
        label = f"frame '{frame_id}'"
        # The id is the key of a frame everywhere (splits, block plans, appearance codes): a second
        # entry for the same image would silently shadow the first.
        if frame_id in listed:
            raise InputError(where, f"{label} is listed more than once")
        listed.add(frame_id)
        if confine:
            for key in ("file_path", "depth_file_path"):
                if entry.get(key) is not None and not _inside_root(root, _normalise(entry[key])):
                    raise InputError(
                        where, f"{label}: {key} resolves outside the capture directory (pass --allow-outside-paths to allow it)"
                    )
        image_path = _find_image(root, frame_id) if require_images else (root / frame_id)
        if image_path is None:
            missing.append(frame_id)
            continue
        problem = pose_problem(entry["transform_matrix"]) if _is_matrix(entry["transform_matrix"]) else "transform_matrix must be a 4x4 list of numbers"
        if problem:
            raise InputError(where, f"{label}: {problem}")
        frames.append(
            Frame(
                id=frame_id,
                image_path=image_path,
                intrinsics=_intrinsics(doc, entry, image_path, where=where, label=label),
                c2w=entry["transform_matrix"],
                appearance_index=_int(entry.get("appearance_id", len(frames)), where, f"{label}: appearance_id"),
                timestamp=_opt_float(entry.get("timestamp"), where, f"{label}: timestamp"),
                exposure=_opt_float(entry.get("exposure"), where, f"{label}: exposure"),
                gps=None if entry.get("gps") is None else _lla(entry["gps"], where, f"{label}: gps"),
                split=splits.get(frame_id),
                depth_path=None if entry.get("depth_file_path") is None else (root / entry["depth_file_path"]),
                depth_unit_scale=1.0 if depth_scale is None else depth_scale,
                extra={k: v for k, v in entry.items() if k not in _FRAME_KEYS},
            )
        )
    unknown = sorted(set(splits) - listed)
    if unknown:
        raise InputError(
            where, f"{len(unknown)} split file names are not the file_path of any frame (first: {unknown[0]})"
        )
    if not frames:
        # One error, not a warning followed by an error: nothing of this capture is usable.
        if missing:
            raise InputError(where, f"none of the {len(missing)} listed images exists (first: {missing[0]})")
        raise InputError(where, "no frames")
    if missing:
        warnings.warn(
            f"{where}: {len(missing)} of {len(doc['frames'])} listed images are missing "
            f"(first: {missing[0]}); loaded {len(frames)} frames",
            CaptureWarning,
            stacklevel=2,
        )
    extra = {k: v for k, v in doc.items() if k not in _TOP_KEYS}
    _warn_ignored_distortion(doc, where)
    return Capture(root=root, frames=tuple(frames), geo_origin=geo_origin, extra=extra, missing=tuple(missing))


def write_capture(capture: Capture, path: str | os.PathLike[str]) -> Path:
    """Write ``capture`` as transforms.json at ``path`` (a file, or a directory to put it in).

    Image paths are written relative to the file's directory. Intrinsics shared by all frames are
    written once at the top level. The file is replaced atomically.
    """
    file = Path(path)
    if file.is_dir() or file.suffix != ".json":
        file = file / "transforms.json"
    file.parent.mkdir(parents=True, exist_ok=True)
    doc = capture_to_dict(capture, file.parent.resolve())
    tmp = file.with_name(f".{file.name}.partial")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, file)
    return file


def capture_to_dict(capture: Capture, out_dir: Path) -> dict[str, Any]:
    """The transforms.json document of ``capture`` with image paths relative to ``out_dir``."""
    shared = len({f.intrinsics for f in capture.frames}) == 1
    doc: dict[str, Any] = {"camera_model": "OPENCV"}
    if shared:
        doc.update(_intrinsics_to_dict(capture.frames[0].intrinsics))
    if capture.geo_origin is not None:
        doc["geo_origin"] = capture.geo_origin.to_dict()
    doc.update(capture.extra)
    frames_out = []
    for f in capture.frames:
        entry: dict[str, Any] = {
            "file_path": _file_path(f, out_dir),
            "transform_matrix": f.c2w.tolist(),
            "appearance_id": f.appearance_index,
        }
        if not shared:
            entry.update(_intrinsics_to_dict(f.intrinsics))
        if f.timestamp is not None:
            entry["timestamp"] = f.timestamp
        if f.exposure is not None:
            entry["exposure"] = f.exposure
        if f.gps is not None:
            entry["gps"] = f.gps.to_dict()
        if f.depth_path is not None:
            entry["depth_file_path"] = _relative(f.depth_path, out_dir)
        entry.update(f.extra)
        frames_out.append(entry)
    doc["frames"] = frames_out
    for split in ("train", "test"):
        names = [e["file_path"] for e, f in zip(frames_out, capture.frames) if f.split == split]
        if names:
            doc[f"{split}_filenames"] = names
    return doc


# -- helpers ---------------------------------------------------------------------------------------


def _normalise(file_path: Any) -> str:
    return posixpath.normpath(str(file_path).replace("\\", "/"))


def _inside_root(root: Path, relative: str) -> bool:
    """Whether ``root / relative`` (an absolute ``relative`` replaces root) resolves inside ``root``."""
    try:
        base = root.resolve()
        target = (base / relative).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop or a NUL byte: not a path we read
        return False
    return target == base or base in target.parents


def _relative(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), out_dir)).as_posix()


def _file_path(frame: Frame, out_dir: Path) -> str:
    """The ``file_path`` to write for ``frame``: its id when that still finds its image from
    ``out_dir`` (ids without a file extension, NeRF-synthetic style, stay as they were), else the
    image path relative to ``out_dir``."""
    found = _find_image(out_dir, frame.id)
    if found is not None and found.resolve() == Path(frame.image_path).resolve():
        return frame.id
    return _relative(frame.image_path, out_dir)


def _find_image(root: Path, frame_id: str) -> Path | None:
    candidate = root / frame_id
    if candidate.is_file():
        return candidate
    if not candidate.suffix:  # NeRF-synthetic style paths without extension
        for suffix in _IMAGE_SUFFIXES:
            if candidate.with_suffix(suffix).is_file():
                return candidate.with_suffix(suffix)
    return None


def _read_splits(doc: dict[str, Any], where: str) -> dict[str, str]:
    splits: dict[str, str] = {}
    for key, split in (("train_filenames", "train"), ("val_filenames", "test"), ("test_filenames", "test")):
        names = doc.get(key)
        if names is None:
            continue
        if not isinstance(names, list):
            raise InputError(where, f"'{key}' must be a list of file paths")
        for name in names:
            name = _normalise(name)
            if splits.get(name, split) != split:
                raise InputError(where, f"'{name}' is in both the train and the test split")
            splits[name] = split
    return splits


def _lla(value: Any, where: str, label: str) -> LLA:
    # Re-raised so that the error's path stays the transforms.json, with the key in the message.
    try:
        return LLA.from_dict(value, where=label)
    except InputError as exc:
        raise InputError(where, f"{label}: {exc.problem}") from None


def _is_matrix(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (3, 4)
        and all(isinstance(r, list) and len(r) == 4 and all(_is_number(v) for v in r) for r in value)
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any, where: str, label: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError(where, f"{label} must be a non-negative integer, got {v!r}")
    return v


def _opt_float(v: Any, where: str, label: str) -> float | None:
    if v is None:
        return None
    if not _is_number(v) or not math.isfinite(v):
        raise InputError(where, f"{label} must be a finite number, got {v!r}")
    return float(v)


def _intrinsics(doc: dict[str, Any], entry: dict[str, Any], image_path: Path, *, where: str, label: str) -> Intrinsics:
    def get(key: str) -> Any:
        value = entry.get(key, doc.get(key))
        if value is not None and not (_is_number(value) and math.isfinite(value)):
            raise InputError(where, f"{label}: '{key}' must be a finite number, got {value!r}")
        return value

    w, h = get("w"), get("h")
    if w is None or h is None:
        w, h = image_size(image_path)
    if w != int(w) or h != int(h):
        raise InputError(where, f"{label}: image size w={w!r} h={h!r} is not a whole number of pixels")
    w, h = int(w), int(h)
    fx, fy = get("fl_x"), get("fl_y")
    ax, ay = get("camera_angle_x"), get("camera_angle_y")
    if fx is None and ax is not None:
        fx = 0.5 * w / math.tan(0.5 * ax)
    if fy is None and ay is not None:
        fy = 0.5 * h / math.tan(0.5 * ay)
    if fx is None:
        fx = fy
    if fx is None:
        raise InputError(where, f"{label}: no focal length (need 'fl_x' or 'camera_angle_x')")
    fy = fx if fy is None else fy
    cx, cy = get("cx"), get("cy")
    try:
        return Intrinsics(
            fx=float(fx), fy=float(fy),
            cx=0.5 * w if cx is None else float(cx), cy=0.5 * h if cy is None else float(cy),
            width=w, height=h,
            k1=float(get("k1") or 0.0), k2=float(get("k2") or 0.0),
            p1=float(get("p1") or 0.0), p2=float(get("p2") or 0.0),
        )
    except ValueError as exc:
        raise InputError(where, f"{label}: bad intrinsics ({exc})") from None


def _intrinsics_to_dict(k: Intrinsics) -> dict[str, Any]:
    return {
        "fl_x": k.fx, "fl_y": k.fy, "cx": k.cx, "cy": k.cy, "w": k.width, "h": k.height,
        "k1": k.k1, "k2": k.k2, "p1": k.p1, "p2": k.p2,
        "camera_angle_x": 2.0 * math.atan(0.5 * k.width / k.fx),
        "camera_angle_y": 2.0 * math.atan(0.5 * k.height / k.fy),
    }


def _warn_ignored_distortion(doc: dict[str, Any], where: str) -> None:
    ignored = [k for k in ("k3", "k4") if doc.get(k)]
    if ignored:
        warnings.warn(f"{where}: distortion {', '.join(ignored)} is ignored (k1, k2, p1, p2 are used)", CaptureWarning, stacklevel=3)
