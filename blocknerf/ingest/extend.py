"""New photos registered into the reconstruction of an earlier ``blocknerf ingest``: a capture of
the new frames in the same world frame, for ``blocknerf update STORE PHOTOS_DIR``.

An ingest of photos keeps ``OUT/colmap/`` (the database and the model) and records in
``OUT/transforms.json`` the similarity ``model_to_world`` from SfM units to its world frame (ENU
metres at its geo origin, or the up-aligned SfM frame without GPS). ``register_photos`` extracts
the new photos' features into a copy of that database (on the model's camera), matches them
against the registered images (every pair, or with GPS the nearest by position), registers them
into a copy of the model with the old cameras held fixed, and maps them to the world with the
recorded similarity. Output layout of ``register_photos(PHOTOS, CAPTURE, WORK)``::

    WORK/transforms.json   the new frames (EXIF time and GPS, the capture's geo origin)
    WORK/images/           the new photos upright, at the size of the capture's camera
    WORK/ingest.json       the report: registered and unregistered photos, GPS residuals
    WORK/ingest_map.png    the new camera centres over their GPS positions
    WORK/colmap/           database.db and model/: the capture's reconstruction with the new images

``CAPTURE/colmap`` is never changed. The default ``WORK`` is ``CAPTURE/updates/<folder>-<digest>``
(inside the capture, so frame ids in the store's record stay relative paths); the same photos
again reuse a finished registration, so an update run twice gives the same poses.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from blocknerf.capture.geo import LLA, GeoFrame
from blocknerf.errors import InputError
from blocknerf.ingest.colmap_model import mean_reprojection_error_px, registered_images
from blocknerf.ingest.ingestion import IngestConfig, prepare_output, write_ingest
from blocknerf.ingest.photos import Photo, find_photos, read_photo_folder, write_copies
from blocknerf.ingest.registration import Similarity
from blocknerf.ingest.report import IngestReport
from blocknerf.ingest.sfm import choose_matcher, register_images

IMAGE_PREFIX = "images/"
"""The new images' names in the database and model: their path relative to ``WORK``."""
FOCAL_TOLERANCE = 0.2
"""New photos whose EXIF focal length is off the capture camera's by more than this fraction are
from another camera (the reconstruction has one)."""
UPDATES_DIR = "updates"
"""Folder of the capture that holds the default work directories."""


def ingest_provenance(capture_root: str | Path) -> tuple[dict, LLA | None]:
    """The ``ingest`` record and the geo origin of the capture at ``capture_root`` when it was made
    by ``blocknerf ingest`` from photos and its reconstruction is still there; InputError otherwise."""
    root = Path(capture_root)
    hint = "run 'blocknerf ingest PHOTOS OUT' first and build the store from OUT"
    path = root / "transforms.json"
    try:
        doc = json.loads(path.read_text())
        record = doc.get("ingest")
    except (OSError, ValueError, AttributeError):
        doc, record = {}, None
    if not isinstance(record, dict) or not record.get("model"):
        raise InputError(path, f"this capture was not made by 'blocknerf ingest' from photos, so new photos cannot be registered into it; {hint}")
    missing = [p for p in (root / record["model"], root / "colmap" / "database.db") if not p.exists()]
    if missing:
        raise InputError(missing[0], f"missing: new photos are registered into the ingest's reconstruction (colmap/); {hint}")
    origin = doc.get("geo_origin")
    return record, None if origin is None else LLA.from_dict(origin, where=f"{path}: geo_origin")


def default_work_dir(capture_root: str | Path, photos_dir: str | Path, digest: str | None = None) -> Path:
    """``CAPTURE/updates/<photo folder name>-<digest of the photos>`` (``digest``: ``photos_digest``)."""
    digest = digest or photos_digest(photos_dir)
    return Path(capture_root) / UPDATES_DIR / f"{Path(photos_dir).resolve().name}-{digest[:10]}"


def photos_digest(photos_dir: str | Path) -> str:
    """SHA-256 over the relative names and bytes of the photos under ``photos_dir``."""
    root = Path(photos_dir)
    h = hashlib.sha256()
    for path in find_photos(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def register_photos(
    photos_dir: str | Path,
    capture_root: str | Path,
    work_dir: str | Path | None = None,
    config: IngestConfig = IngestConfig(),
) -> tuple[IngestReport, Path]:
    """Register the photos of ``photos_dir`` into the reconstruction of the ingest at
    ``capture_root`` and write a capture of them into ``work_dir`` (default ``default_work_dir``);
    returns the report and the work directory. See the module docstring.

    InputError when the capture has no ingest provenance, a photo is unreadable or from another
    camera, or none of the photos registers. Photos that do not register are listed in the
    report's ``unregistered``.
    """
    root = Path(capture_root).resolve()
    record, origin = ingest_provenance(root)
    digest = photos_digest(photos_dir)
    work = Path(work_dir) if work_dir is not None else default_work_dir(root, photos_dir, digest)
    reused = _finished(work, root, digest)
    if reused is not None:
        return reused, work.resolve()
    import pycolmap

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    model = pycolmap.Reconstruction(root / record["model"])
    (camera,) = model.cameras.values()
    photos = read_photo_folder(photos_dir)
    _check_camera(photos, camera)
    _check_new(photos, root)
    old = {model.images[i].name: i for i in model.reg_image_ids()}
    names = [IMAGE_PREFIX + p.name for p in photos]
    clash = sorted(set(names) & {im.name for im in model.images.values()})
    if clash:
        raise InputError(Path(photos_dir) / clash[0][len(IMAGE_PREFIX):], f"its name {clash[0]} is taken by an image of the capture; rename the photo")
    work = prepare_output(work)  # only once the photos are known to fit
    seconds["read"] = time.perf_counter() - started

    started = time.perf_counter()
    write_copies(photos, work / "images", config.max_size, size=(int(camera.width), int(camera.height)))
    seconds["resize"] = time.perf_counter() - started

    to_world = Similarity.from_dict(record["model_to_world"])
    old_names = sorted(old)
    old_enu = to_world.apply(np.array([model.images[old[n]].projection_center() for n in old_names]).reshape(-1, 3))
    new_enu = _gps_enu(photos, origin)
    matcher = choose_matcher(config.sfm.matcher, len(old) + len(names), bool(np.isfinite(new_enu).all(axis=1).any()))
    pairs = image_pairs(names, new_enu, old_names, old_enu,
                        neighbours=config.sfm.spatial_neighbours if matcher == "spatial" else None)
    result = register_images(work / "colmap", root / "colmap", work, names, pairs, config=config.sfm)
    seconds.update(result.seconds)
    # The model and the database, whose old images are the capture's; the frames: only the new ones.
    new = set(names)
    registered = [r for r in registered_images(result.reconstruction, where=work / "colmap" / "model") if r.name in new]
    if not registered:
        raise InputError(photos_dir, f"none of the {len(names)} photos registered into {root / record['model']} "
                                     f"({result.verified_pairs} verified image pairs); they need views overlapping the capture's")
    report = write_ingest(
        work, registered, {n: p.exif for n, p in zip(names, photos)}, names,
        image_dir=work, seconds=seconds, config=config,
        summary=dict(source="update", matcher=f"{matcher} against {len(old)} registered images",
                     camera_model=camera.model.name, focal_source="the capture's camera",
                     mean_reprojection_error_px=mean_reprojection_error_px(result.reconstruction)),
        placed=(to_world, origin),
        provenance={"registered_into": str(root), "photos": str(Path(photos_dir).resolve()), "photos_digest": digest},
    )
    return report, work


def image_pairs(
    new: list[str], new_enu: np.ndarray, old: list[str], old_enu: np.ndarray, *, neighbours: int | None
) -> list[tuple[str, str]]:
    """The pairs to match: each new image with every other image, or, with ``neighbours``, with
    the ``neighbours`` nearest by position (``new_enu`` rows of nan: no GPS, then every image)."""
    names = new + old
    positions = np.vstack([np.asarray(new_enu, dtype=np.float64).reshape(-1, 3), np.asarray(old_enu, dtype=np.float64).reshape(-1, 3)])
    pairs: set[tuple[str, str]] = set()
    for k, name in enumerate(new):
        others = [j for j in range(len(names)) if j != k]
        if neighbours is not None and np.isfinite(positions[k]).all():
            d = np.linalg.norm(positions[others] - positions[k], axis=1)
            others = [others[j] for j in np.argsort(np.where(np.isfinite(d), d, np.inf))[:neighbours]]
        pairs.update(tuple(sorted((name, names[j]))) for j in others)
    return sorted(pairs)


def _check_camera(photos: list[Photo], camera: object) -> None:
    """The photos must fit the reconstruction's one camera: its aspect and about its focal length."""
    cw, ch, focal = int(camera.width), int(camera.height), float(camera.mean_focal_length())
    for photo in photos:
        if abs(photo.width / photo.height - cw / ch) > 0.01 * cw / ch:
            raise InputError(photo.source, f"mixed cameras: {photo.width}x{photo.height} does not have the aspect of the "
                                           f"capture's camera ({cw}x{ch}); register photos of the same camera")
        exif_focal = photo.exif.focal_px(photo.width, photo.height)
        if exif_focal is not None:
            scaled = exif_focal * cw / photo.width
            if abs(scaled - focal) > FOCAL_TOLERANCE * focal:
                raise InputError(photo.source, f"mixed cameras: focal length {scaled:.0f} px at {cw}x{ch} differs from the "
                                               f"capture's camera ({focal:.0f} px); register photos of the same camera")


def _check_new(photos: list[Photo], root: Path) -> None:
    """A photo with the name and capture time of one of the capture's frames is that photo again."""
    doc = json.loads((root / "transforms.json").read_text())
    recorded = {}
    for frame in doc.get("frames", []):
        path = Path(str(frame.get("file_path", "")))
        if path.parts[:1] == ("images",) and frame.get("timestamp") is not None:
            recorded[path.relative_to("images").as_posix()] = float(frame["timestamp"])
    for photo in photos:
        t = recorded.get(photo.name)
        if t is not None and photo.exif.timestamp is not None and abs(photo.exif.timestamp - t) < 1e-3:
            raise InputError(photo.source, f"already in the capture (images/{photo.name}, same capture time); "
                                           "update with new photos only")


def _gps_enu(photos: list[Photo], origin: LLA | None) -> np.ndarray:
    """The photos' GPS positions in the capture's ENU frame (nan without GPS or origin)."""
    out = np.full((len(photos), 3), np.nan)
    if origin is None:
        return out
    geo = GeoFrame(origin)
    for k, p in enumerate(photos):
        if p.gps is not None:
            out[k] = geo.lla_to_enu(np.array([p.gps.lat, p.gps.lon, p.gps.alt]))
    return out


def _finished(work: Path, root: Path, digest: str) -> IngestReport | None:
    """The report of a finished registration of the same photos into the same capture in ``work``."""
    try:
        record = json.loads((work / "transforms.json").read_text())["ingest"]
        if record.get("photos_digest") != digest or record.get("registered_into") != str(root):
            return None
        return IngestReport.read(work / "ingest.json")
    except (OSError, ValueError, OverflowError, KeyError, TypeError):
        return None


__all__ = ["default_work_dir", "image_pairs", "ingest_provenance", "photos_digest", "register_photos"]
