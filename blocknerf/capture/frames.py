"""The capture model: frames (image, intrinsics, camera-to-world pose, metadata) and their capture.

Conventions (see README, "Conventions"): camera-to-world matrices are 4x4 in the OpenGL convention
of instant-ngp and nerfstudio (x right, y up, the camera looks down -z). A frame's id is its image
path as written in ``transforms.json`` (relative to the capture root); it is stable across updates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from blocknerf.capture.geo import LLA, GeoFrame
from partitioning.cameras import CameraArrays

Split = Literal["train", "test"]


@dataclass(frozen=True, slots=True)
class Intrinsics:
    """Pinhole intrinsics in pixels plus optional OpenCV distortion (k1, k2 radial; p1, p2 tangential)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size {self.width}x{self.height} is not positive")
        values = (self.fx, self.fy, self.cx, self.cy, self.k1, self.k2, self.p1, self.p2)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("non-finite intrinsics")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal length ({self.fx}, {self.fy}) is not positive")

    @property
    def has_distortion(self) -> bool:
        return any(v != 0.0 for v in (self.k1, self.k2, self.p1, self.p2))

    @property
    def distortion(self) -> tuple[float, float, float, float]:
        return (self.k1, self.k2, self.p1, self.p2)

    @classmethod
    def from_fov(cls, width: int, height: int, fov_x_rad: float) -> Intrinsics:
        """Intrinsics of a centred pinhole camera with horizontal field of view ``fov_x_rad``."""
        f = 0.5 * width / math.tan(0.5 * fov_x_rad)
        return cls(f, f, 0.5 * width, 0.5 * height, width, height)

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera at another resolution (distortion is resolution independent)."""
        sx, sy = width / self.width, height / self.height
        return dataclasses.replace(
            self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy, width=width, height=height
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class Frame:
    """One image of a capture with its camera and metadata."""

    id: str
    """Stable id: the image path as written in transforms.json, relative to the capture root."""
    image_path: Path
    """Absolute path of the image file."""
    intrinsics: Intrinsics
    c2w: np.ndarray
    """(4, 4) float64 camera-to-world, OpenGL convention (read-only)."""
    appearance_index: int
    """Index into a block's per-image appearance embeddings."""
    timestamp: float | None = None
    """Capture time in seconds (any epoch); newer frames of a place supersede older ones."""
    exposure: float | None = None
    """Relative exposure (linear multiplier of scene radiance) when the capture records it."""
    gps: LLA | None = None
    """WGS84 position of the camera when the capture records it."""
    split: Split | None = None
    """``"train"``, ``"test"`` (held out) or None (no split given: used for training)."""
    depth_path: Path | None = None
    """Depth along the optical axis (``.npy``, or a 16-bit ``.png`` as nerfstudio writes), e.g. the
    synthetic city's ground truth (metres; +inf for sky) or a sensor's; 0 or non-finite: no depth."""
    depth_unit_scale: float = 1.0
    """Multiplier from stored depth values to world units (nerfstudio's top-level
    ``depth_unit_scale_factor``, e.g. 0.001 for depth PNGs in millimetres)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other per-frame keys of transforms.json, kept so that writing the capture loses nothing."""

    def __post_init__(self) -> None:
        c2w = np.array(self.c2w, dtype=np.float64)
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
        c2w.setflags(write=False)
        object.__setattr__(self, "c2w", c2w)

    @property
    def position(self) -> np.ndarray:
        """(3,) camera centre in world coordinates."""
        return self.c2w[:3, 3]

    @property
    def is_train(self) -> bool:
        return self.split != "test"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name))
            if f.name == "c2w"
            else getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
        )

    __hash__ = None  # type: ignore[assignment]


def pose_problem(c2w: np.ndarray, *, tol: float = 1e-3) -> str | None:
    """Why ``c2w`` is not a usable camera-to-world matrix, or None when it is a rigid transform."""
    m = np.asarray(c2w, dtype=np.float64)
    if m.shape not in ((4, 4), (3, 4)):
        return f"transform_matrix has shape {m.shape}, expected 4x4"
    if not np.all(np.isfinite(m)):
        return "transform_matrix contains non-finite values"
    if m.shape == (4, 4) and not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=tol):
        return "transform_matrix last row is not [0, 0, 0, 1]"
    r = m[:3, :3]
    if not np.allclose(r.T @ r, np.eye(3), atol=tol):
        return "transform_matrix is not rigid (rotation columns are not orthonormal)"
    if np.linalg.det(r) < 0:
        return "transform_matrix is a reflection (rotation determinant is -1)"
    return None


@dataclass(frozen=True, eq=True)
class Capture:
    """A set of posed frames: what a user captured, or what the synthetic city rendered."""

    root: Path
    """Directory that frame ids are relative to (where transforms.json lives)."""
    frames: tuple[Frame, ...]
    geo_origin: LLA | None = None
    """WGS84 origin of the local ENU world frame, when the capture is geo-registered."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other top-level keys of transforms.json, kept for a lossless round trip."""
    missing: tuple[str, ...] = field(default=(), compare=False)
    """Frames listed in transforms.json whose image files do not exist (skipped)."""

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def geo(self) -> GeoFrame | None:
        """The ENU frame of this capture, or None when it has no geo origin."""
        return None if self.geo_origin is None else GeoFrame(self.geo_origin)

    @property
    def train_frames(self) -> tuple[Frame, ...]:
        return tuple(f for f in self.frames if f.is_train)

    @property
    def test_frames(self) -> tuple[Frame, ...]:
        return tuple(f for f in self.frames if f.split == "test")

    def frame(self, frame_id: str) -> Frame:
        for f in self.frames:
            if f.id == frame_id:
                return f
        raise KeyError(frame_id)

    def subset(self, frame_ids: Iterable[str]) -> Capture:
        """The frames with the given ids, in capture order."""
        wanted = set(frame_ids)
        return dataclasses.replace(self, frames=tuple(f for f in self.frames if f.id in wanted))

    def positions(self) -> np.ndarray:
        """(N, 3) float64 camera centres."""
        return np.array([f.position for f in self.frames], dtype=np.float64).reshape(-1, 3)

    def camera_arrays(self) -> CameraArrays:
        """The frames as the arrays that partitioning works on (no images, no torch)."""
        k = np.array([[f.intrinsics.fx, f.intrinsics.fy, f.intrinsics.cx, f.intrinsics.cy] for f in self.frames])
        wh = np.array([[f.intrinsics.width, f.intrinsics.height] for f in self.frames])
        return CameraArrays(
            ids=tuple(f.id for f in self.frames),
            c2w=np.array([f.c2w for f in self.frames], dtype=np.float64).reshape(-1, 4, 4),
            intrinsics=k.reshape(-1, 4).astype(np.float64),
            sizes=wh.reshape(-1, 2).astype(np.int64),
            is_train=np.array([f.is_train for f in self.frames], dtype=bool),
            timestamps=np.array([np.nan if f.timestamp is None else f.timestamp for f in self.frames]),
        )


__all__ = ["Capture", "Frame", "Intrinsics", "Split", "pose_problem"]
