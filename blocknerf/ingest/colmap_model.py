"""A COLMAP reconstruction as blocknerf cameras: OpenGL camera-to-world poses and OpenCV intrinsics.

COLMAP stores world-to-camera poses with the camera looking down +z (y down); blocknerf, like
instant-ngp and nerfstudio, stores camera-to-world with the camera looking down -z (y up).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blocknerf.capture.frames import Intrinsics
from blocknerf.errors import InputError

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiplying a camera-to-world by this flips the camera's y and z axes (OpenCV <-> OpenGL)."""
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass(frozen=True)
class RegisteredImage:
    """One image of a reconstruction."""

    name: str
    """The image's name in the model (its path relative to the image folder)."""
    c2w: np.ndarray
    """(4, 4) float64 camera-to-world, OpenGL convention, in the model's units."""
    intrinsics: Intrinsics


def read_model(sparse_dir: str | Path):  # noqa: ANN201 - pycolmap.Reconstruction, imported lazily
    """Load a COLMAP model (``cameras``, ``images``, ``points3D`` as ``.bin`` or ``.txt``)."""
    import pycolmap

    path = Path(sparse_dir)
    if not path.is_dir():
        raise InputError(path, "not a directory (expected a COLMAP sparse model folder, e.g. sparse/0)")
    found = [p for p in ("cameras.bin", "cameras.txt") if (path / p).is_file()]
    if not found:
        sub = sorted(p for p in path.iterdir() if p.is_dir() and any((p / f).is_file() for f in ("cameras.bin", "cameras.txt")))
        if len(sub) == 1:
            return read_model(sub[0])
        raise InputError(path, "no cameras.bin or cameras.txt (not a COLMAP sparse model)")
    try:
        return pycolmap.Reconstruction(path)
    except Exception as exc:  # noqa: BLE001 - pycolmap raises plain RuntimeError/ValueError on bad files
        raise InputError(path, f"unreadable COLMAP model ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None


def camera_intrinsics(camera, *, where: str | Path = "model") -> Intrinsics:  # noqa: ANN001 - pycolmap.Camera
    """The pinhole + OpenCV (k1, k2, p1, p2) intrinsics of a COLMAP camera."""
    p = [float(v) for v in camera.params]
    model = camera.model_name if hasattr(camera, "model_name") else str(camera.model).split(".")[-1]
    w, h = int(camera.width), int(camera.height)
    if model == "SIMPLE_PINHOLE":
        fx = fy = p[0]
        cx, cy, dist = p[1], p[2], (0.0, 0.0, 0.0, 0.0)
    elif model == "PINHOLE":
        fx, fy, cx, cy = p[:4]
        dist = (0.0, 0.0, 0.0, 0.0)
    elif model == "SIMPLE_RADIAL":
        fx = fy = p[0]
        cx, cy, dist = p[1], p[2], (p[3], 0.0, 0.0, 0.0)
    elif model == "RADIAL":
        fx = fy = p[0]
        cx, cy, dist = p[1], p[2], (p[3], p[4], 0.0, 0.0)
    elif model == "OPENCV":
        fx, fy, cx, cy = p[:4]
        dist = tuple(p[4:8])
    else:
        raise InputError(where, f"camera model {model} is not supported ({', '.join(SUPPORTED_MODELS)})")
    k1, k2, p1, p2 = dist
    return Intrinsics(fx, fy, cx, cy, w, h, k1, k2, p1, p2)


def registered_images(reconstruction, *, where: str | Path = "model") -> list[RegisteredImage]:  # noqa: ANN001
    """Every registered image of ``reconstruction``, sorted by name."""
    out = []
    for image in reconstruction.images.values():
        if not image.has_pose:
            continue
        w2c = np.eye(4)
        w2c[:3, :4] = image.cam_from_world().matrix()
        c2w = np.linalg.inv(w2c) @ OPENCV_TO_OPENGL
        out.append(RegisteredImage(image.name, c2w, camera_intrinsics(image.camera, where=where)))
    return sorted(out, key=lambda r: r.name)


def mean_reprojection_error_px(reconstruction) -> float:  # noqa: ANN001
    """Mean reprojection error of the model's 3D points in pixels (nan without points)."""
    if reconstruction.num_points3D() == 0:
        return float("nan")
    return float(reconstruction.compute_mean_reprojection_error())


__all__ = [
    "OPENCV_TO_OPENGL", "RegisteredImage", "camera_intrinsics", "mean_reprojection_error_px",
    "read_model", "registered_images",
]
