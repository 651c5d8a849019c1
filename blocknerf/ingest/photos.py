"""A folder of photos: find them, check them, read their EXIF, write the downsized copies SfM uses.

One camera per ingest: every photo must come from the same make, model and image size (a single
pinhole camera is what SfM calibrates and what ``transforms.json`` stores once).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from blocknerf.capture.geo import LLA
from blocknerf.errors import CaptureWarning, InputError
from blocknerf.ingest.exif import FULL_FRAME_DIAGONAL_MM, PhotoExif, read_exif

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
DEFAULT_FOCAL_FACTOR = 1.2
"""Without a focal length anywhere, the focal length is this times the longer image side (COLMAP's
default; about a 35 mm equivalent of 43 mm on a 3:2 frame). Bundle adjustment refines it."""


@dataclass(frozen=True)
class Photo:
    """One input photo and its downsized copy."""

    name: str
    """File name of the copy in ``OUT/images`` (the source's path relative to the photo folder)."""
    source: Path
    exif: PhotoExif
    width: int
    """Size of the source after EXIF orientation."""
    height: int

    @property
    def gps(self) -> LLA | None:
        return self.exif.gps


@dataclass(frozen=True)
class PhotoSet:
    """The photos of one ingest with their common camera."""

    photos: tuple[Photo, ...]
    focal_px: float
    """Focal length in pixels of the source images."""
    focal_source: str
    """Where the focal length came from: ``exif``, ``exif 35mm``, ``--focal`` or ``default``."""

    @property
    def has_gps(self) -> bool:
        return any(p.gps is not None for p in self.photos)


def find_photos(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path; InputError when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "not a directory (expected a folder of photos)")
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not found:
        raise InputError(root, f"no images ({', '.join(PHOTO_SUFFIXES)}) in this folder")
    return found


def read_photo_folder(folder: str | Path) -> list[Photo]:
    """Every photo under ``folder``, checked to decode and to come from one camera, with its EXIF."""
    root = Path(folder)
    photos = [_read_photo(root, path) for path in find_photos(root)]
    _check_one_camera(photos)
    return photos


def read_photos(folder: str | Path, *, focal_35mm: float | None = None) -> PhotoSet:
    """Check every photo under ``folder`` decodes and comes from one camera; read EXIF; pick the focal.

    ``focal_35mm`` (``--focal``) overrides the EXIF focal length. Without one anywhere, one
    CaptureWarning and ``DEFAULT_FOCAL_FACTOR``.
    """
    root = Path(folder)
    photos = read_photo_folder(root)
    first = photos[0]
    if focal_35mm is not None:
        if not (math.isfinite(focal_35mm) and focal_35mm > 0):
            raise InputError(None, f"--focal must be a positive 35 mm equivalent focal length in mm, got {focal_35mm}")
        return PhotoSet(tuple(photos), focal_35mm * math.hypot(first.width, first.height) / FULL_FRAME_DIAGONAL_MM, "--focal")
    for photo in photos:
        focal = photo.exif.focal_px(photo.width, photo.height)
        if focal is not None:
            source = "exif" if photo.exif.focal_plane_px_per_mm and photo.exif.focal_mm else "exif 35mm"
            return PhotoSet(tuple(photos), focal, source)
    warnings.warn(
        f"{root}: no focal length in any photo's EXIF; assuming {DEFAULT_FOCAL_FACTOR} x the longer side "
        f"({DEFAULT_FOCAL_FACTOR * max(first.width, first.height):.0f} px; give --focal MM, the 35 mm equivalent, if known)",
        CaptureWarning,
        stacklevel=2,
    )
    return PhotoSet(tuple(photos), DEFAULT_FOCAL_FACTOR * max(first.width, first.height), "default")


def copy_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    """The size of a copy whose longer side is at most ``max_size`` (aspect kept; never enlarged)."""
    scale = min(1.0, max_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def write_copies(
    photos: Sequence[Photo], out_dir: str | Path, max_size: int, *, size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Write each photo upright and downsized into ``out_dir`` under its name; returns the copies' size.

    ``size``: resample to exactly this size instead (the camera of an existing reconstruction)."""
    from PIL import Image, ImageOps

    out = Path(out_dir)
    fixed = size
    for photo in photos:
        size = fixed or copy_size(photo.width, photo.height, max_size)
        target = out / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(photo.source) as img:
            upright = ImageOps.exif_transpose(img).convert("RGB")
            if upright.size != size:
                upright = upright.resize(size, Image.Resampling.LANCZOS)
            options = {"quality": 95} if target.suffix.lower() in (".jpg", ".jpeg") else {}
            upright.save(target, **options)
    return size or (0, 0)


def _read_photo(root: Path, path: Path) -> Photo:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # decodes every byte: truncated files fail here
            w, h = img.size
        exif = read_exif(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"unreadable or truncated image ({reason})") from None
    if exif.orientation in (5, 6, 7, 8):  # rotated by 90 degrees: the upright copy swaps sides
        w, h = h, w
    return Photo(path.relative_to(root).as_posix(), path, exif, w, h)


def _check_one_camera(photos: list[Photo]) -> None:
    def key(p: Photo) -> tuple:
        return (p.exif.camera, p.width, p.height)

    first = photos[0]
    for photo in photos[1:]:
        if key(photo) != key(first):
            raise InputError(
                photo.source,
                f"mixed cameras: {photo.exif.camera} {photo.width}x{photo.height} differs from "
                f"{first.exif.camera} {first.width}x{first.height} of {first.name} (ingest one camera at a time)",
            )


__all__ = ["DEFAULT_FOCAL_FACTOR", "PHOTO_SUFFIXES", "Photo", "PhotoSet", "copy_size", "find_photos", "read_photo_folder", "read_photos", "write_copies"]
