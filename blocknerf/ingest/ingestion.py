"""Photos (or a COLMAP model) -> a geo-registered capture: ``transforms.json``, ``ingest.json``, a map.

Output layout of ``ingest_photos(PHOTOS, OUT)``::

    OUT/transforms.json     the capture: registered images, OpenGL c2w in ENU metres (or SfM units)
    OUT/images/             upright copies, longer side at most ``max_size``
    OUT/ingest.json         the report (IngestReport)
    OUT/ingest_map.png      SfM camera centres over GPS positions
    OUT/colmap/             database.db, sparse/<k> and model/ (the reconstruction the capture is
                            made of, in SfM units; ``transforms.json`` records the similarity to ENU)
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blocknerf.capture.frames import Capture, Frame
from blocknerf.capture.geo import LLA, GeoFrame
from blocknerf.capture.transforms import write_capture
from blocknerf.errors import CaptureWarning, InputError
from blocknerf.ingest.colmap_model import (
    RegisteredImage,
    mean_reprojection_error_px,
    read_model,
    registered_images,
)
from blocknerf.ingest.exif import PhotoExif, read_exif
from blocknerf.ingest.photos import Photo, find_photos, read_photos, write_copies
from blocknerf.ingest.registration import (
    GeoRegistration,
    Similarity,
    placed_registration,
    register_to_gps,
    up_alignment,
)
from blocknerf.ingest.report import IngestReport, draw_registration_map
from blocknerf.ingest.sfm import SfmConfig, run_sfm
from blocknerf.output_dir import clear_outputs

MIN_GPS_IMAGES = 3
"""Geo-registration needs at least this many registered images with GPS."""
COLLINEAR_RATIO = 0.05
"""GPS positions whose second principal extent is below this fraction of the first, or below 3x
the GPS residual (noise), lie on a line as far as the fit can tell; the roll about that line then
comes from the cameras' up vectors."""
_OUTPUTS = ("transforms.json", "ingest.json", "ingest_map.png", "images", "colmap")


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Settings of ``blocknerf ingest``."""

    max_size: int = 1600
    """Longer side of the copies in pixels (never enlarged)."""
    test_every: int = 8
    """Every Nth registered image (by name) is held out (split ``test``); 0: none."""
    focal_35mm: float | None = None
    """35 mm equivalent focal length overriding the EXIF (``--focal``)."""
    sfm: SfmConfig = field(default_factory=SfmConfig)


def ingest_photos(photos_dir: str | Path, out_dir: str | Path, config: IngestConfig = IngestConfig()) -> IngestReport:
    """Reconstruct a folder of photos with SfM and write a geo-registered capture into ``out_dir``."""
    if config.max_size < 16:
        raise InputError(None, f"--max-size must be at least 16 pixels, got {config.max_size}")
    out = prepare_output(Path(out_dir))
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    photo_set = read_photos(photos_dir, focal_35mm=config.focal_35mm)
    photos = photo_set.photos
    seconds["read"] = time.perf_counter() - started

    started = time.perf_counter()
    size = write_copies(photos, out / "images", config.max_size)
    focal_px = photo_set.focal_px * size[0] / photos[0].width
    seconds["resize"] = time.perf_counter() - started

    names = [p.name for p in photos]
    positions = _provisional_enu(photos)
    sfm = run_sfm(out / "colmap", out / "images", names, focal_px=focal_px, size=size,
                  positions_enu=positions, config=config.sfm)
    seconds.update(sfm.seconds)
    registered = registered_images(sfm.reconstruction, where=out / "colmap" / "model")
    return write_ingest(
        out, registered, {p.name: p.exif for p in photos}, names,
        image_dir=out / "images", seconds=seconds, config=config,
        summary=dict(source="photos", matcher=sfm.matcher, camera_model=config.sfm.camera_model,
                     focal_source=photo_set.focal_source,
                     mean_reprojection_error_px=mean_reprojection_error_px(sfm.reconstruction)),
    )


def ingest_colmap(
    sparse_dir: str | Path, images_dir: str | Path, out_dir: str | Path, config: IngestConfig = IngestConfig()
) -> IngestReport:
    """Import an existing COLMAP model (binary or text) whose images are in ``images_dir``;
    geo-register it when the images carry GPS. The registered images are copied into
    ``OUT/images`` (unchanged), so the capture holds everything it names: blocknerf reads no
    image outside a capture's directory."""
    out = prepare_output(Path(out_dir))
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    model = read_model(sparse_dir)
    image_dir = Path(images_dir).resolve()
    files = {p.relative_to(image_dir).as_posix() for p in find_photos(image_dir)}
    registered = [r for r in registered_images(model, where=sparse_dir) if r.name in files]
    if not registered:
        raise InputError(sparse_dir, f"none of the model's {model.num_images()} images is in {image_dir}")
    exif = {name: _exif_or_empty(image_dir / name) for name in sorted(files)}
    registered = _scale_to_files(registered, image_dir)
    copies = out / "images"
    for r in registered:
        (copies / r.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image_dir / r.name, copies / r.name)
    seconds["read"] = time.perf_counter() - started
    return write_ingest(
        out, registered, exif, sorted(files), image_dir=copies, seconds=seconds, config=config,
        summary=dict(source="colmap", matcher="(existing model)", camera_model="(existing model)",
                     focal_source="model", mean_reprojection_error_px=mean_reprojection_error_px(model)),
    )


def write_ingest(
    out: Path,
    registered: list[RegisteredImage],
    exif: dict[str, PhotoExif],
    names: Sequence[str],
    *,
    image_dir: Path,
    seconds: dict[str, float],
    config: IngestConfig,
    summary: dict,
    placed: tuple[Similarity, LLA | None] | None = None,
    provenance: dict | None = None,
) -> IngestReport:
    """Geo-register, write transforms.json, the report and the map.

    ``placed``: the similarity to the world and the geo origin of an existing capture (photos
    registered into its reconstruction) instead of a fit to GPS; ``provenance``: more keys of the
    ``ingest`` record of transforms.json.
    """
    started = time.perf_counter()
    c2w = np.array([r.c2w for r in registered]).reshape(-1, 4, 4)
    centres = c2w[:, :3, 3]
    gps = [exif.get(r.name, PhotoExif()).gps for r in registered]
    with_gps = np.array([g is not None for g in gps], dtype=bool)
    registration: GeoRegistration | None = None
    if placed is not None:
        to_world, origin = placed
        if origin is not None and with_gps.any():
            registration = placed_registration(to_world, origin, centres[with_gps], [g for g in gps if g is not None])
    elif with_gps.sum() >= MIN_GPS_IMAGES:
        registration = register_to_gps(centres[with_gps], [g for g in gps if g is not None])
        registration = _fix_roll_on_a_line(registration, c2w[with_gps], [g for g in gps if g is not None])
        to_world, origin = registration.similarity, registration.geo_origin
    else:
        if with_gps.any():
            warnings.warn(f"{out}: only {int(with_gps.sum())} registered photos have GPS (need {MIN_GPS_IMAGES}); "
                          "poses stay in SfM units", CaptureWarning, stacklevel=3)
        else:
            warnings.warn(f"{out}: no GPS in the photos' EXIF; poses stay in SfM units "
                          "(partition uses spacing auto)", CaptureWarning, stacklevel=3)
        to_world, origin = up_alignment(c2w), None
    world = to_world.apply_c2w(c2w)
    seconds["registration"] = time.perf_counter() - started

    started = time.perf_counter()
    frames = []
    for k, (r, pose) in enumerate(zip(registered, world)):
        e = exif.get(r.name, PhotoExif())
        held_out = config.test_every > 0 and k % config.test_every == config.test_every - 1
        frames.append(Frame(
            id=Path(os.path.relpath(image_dir / r.name, out)).as_posix(),
            image_path=image_dir / r.name, intrinsics=r.intrinsics, c2w=pose, appearance_index=k,
            timestamp=e.timestamp, gps=e.gps, split="test" if held_out else "train",
        ))
    capture = Capture(root=out, frames=tuple(frames), geo_origin=origin, extra={"ingest": {
        "schema_version": 1,
        "source": summary["source"],
        "units": "metres" if origin is not None else "sfm",
        "model": "colmap/model" if summary["source"] != "colmap" else None,
        "model_to_world": to_world.to_dict(),
        "unregistered": sorted(set(names) - {r.name for r in registered}),
        **(provenance or {}),
    }})
    write_capture(capture, out)
    unregistered = tuple(sorted(set(names) - {r.name for r in registered}))
    report = _report(summary, registered, names, unregistered, registration, gps, seconds)
    gps_enu = None
    if origin is not None:
        geo = GeoFrame(origin)
        gps_enu = np.array([geo.lla_to_enu(np.array([g.lat, g.lon, g.alt])) if g else [np.nan] * 3 for g in gps])
    draw_registration_map(out / "ingest_map.png", world[:, :3, 3], gps_enu,
                          title=f"{report.registered_images}/{report.total_images} images registered")
    seconds["write"] = time.perf_counter() - started
    report.write(out / "ingest.json")
    return report


def _report(summary: dict, registered: list[RegisteredImage], names: Sequence[str], unregistered: tuple[str, ...],
            registration: GeoRegistration | None, gps: list, seconds: dict[str, float]) -> IngestReport:
    fields: dict = {}
    if registration is not None:
        named = [r.name for r, g in zip(registered, gps) if g is not None]
        fields = dict(
            gps_residual_median_m=float(np.median(registration.residuals_m)),
            gps_residual_max_m=float(np.max(registration.residuals_m)),
            gps_outliers=tuple(n for n, ok in zip(named, registration.inliers) if not ok),
            geo_origin=registration.geo_origin.to_dict(),
            scale_m_per_unit=registration.similarity.scale,
        )
    return IngestReport(
        total_images=len(names), registered_images=len(registered), unregistered=unregistered,
        gps_images=sum(g is not None for g in gps), seconds=seconds, **summary, **fields,
    )


def _fix_roll_on_a_line(reg: GeoRegistration, c2w: np.ndarray, gps: list) -> GeoRegistration:
    """When the GPS positions lie on a line (one street), positions leave the rotation about that
    line free: choose it so that the cameras' mean up vector points up."""
    geo = GeoFrame(reg.geo_origin)
    enu = geo.lla_to_enu(np.array([[g.lat, g.lon, g.alt] for g in gps]))
    centred = enu - enu.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    spread = s / np.sqrt(len(enu))  # RMS extent along each principal direction
    noise = float(np.median(reg.residuals_m))
    if spread[0] <= 0 or spread[1] >= max(COLLINEAR_RATIO * spread[0], 3.0 * noise):
        return reg
    axis = vt[0]
    up = reg.similarity.rotation @ c2w[:, :3, 1].mean(axis=0)
    z = np.array([0.0, 0.0, 1.0])
    u_perp, z_perp = up - (up @ axis) * axis, z - (z @ axis) * axis
    if np.linalg.norm(u_perp) < 1e-9 or np.linalg.norm(z_perp) < 1e-9:
        return reg
    angle = np.arctan2(np.cross(u_perp, z_perp) @ axis, u_perp @ z_perp)
    kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    turn = np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx
    pivot = enu.mean(axis=0)
    sim = reg.similarity
    fixed = Similarity(sim.scale, turn @ sim.rotation, turn @ (sim.translation - pivot) + pivot)
    centres = c2w[:, :3, 3]
    residuals = np.linalg.norm(fixed.apply(centres) - enu, axis=1)
    return GeoRegistration(reg.geo_origin, fixed, residuals, reg.inliers)


def _provisional_enu(photos: Sequence[Photo]) -> np.ndarray | None:
    """GPS positions in ENU around the first one, for spatial matching (nan without GPS)."""
    first = next((p.gps for p in photos if p.gps is not None), None)
    if first is None:
        return None
    geo = GeoFrame(first)
    return np.array([geo.lla_to_enu(np.array([p.gps.lat, p.gps.lon, p.gps.alt])) if p.gps else [np.nan] * 3
                     for p in photos])


def _exif_or_empty(path: Path) -> PhotoExif:
    try:
        return read_exif(path)
    except OSError:
        return PhotoExif()


def _scale_to_files(registered: list[RegisteredImage], image_dir: Path) -> list[RegisteredImage]:
    """Intrinsics at the size of the image files (a model made at another resolution)."""
    from blocknerf.capture.images import image_size

    out = []
    for r in registered:
        w, h = image_size(image_dir / r.name)
        k = r.intrinsics if (w, h) == (r.intrinsics.width, r.intrinsics.height) else r.intrinsics.scaled(w, h)
        out.append(RegisteredImage(r.name, r.c2w, k))
    return out


def prepare_output(out: Path) -> Path:
    """``out``, created, or emptied of an earlier (or an interrupted) ingest's outputs; InputError
    for anything else."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        interrupted = {p.name for p in out.iterdir()} <= set(_OUTPUTS)
        if not (out / "ingest.json").is_file() and not interrupted:
            raise InputError(out, "directory is not empty and is not a 'blocknerf ingest' output; choose a new one")
    return clear_outputs(out, _OUTPUTS)


__all__ = ["IngestConfig", "ingest_colmap", "ingest_photos", "prepare_output", "write_ingest"]
