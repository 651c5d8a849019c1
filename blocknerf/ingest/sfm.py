"""Structure from motion with pycolmap: SIFT features, matching, incremental mapping.

Everything lives in ``WORK/database.db``, ``WORK/sparse/<k>`` (every model found) and ``WORK/model``
(the largest, which the capture is made of), kept beside the capture so that
later photos can be registered into the same reconstruction (``register_images``).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from blocknerf.errors import InputError

Matcher = Literal["auto", "exhaustive", "sequential", "spatial"]
CAMERA_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "PINHOLE", "SIMPLE_PINHOLE")
EXHAUSTIVE_UP_TO = 150
"""``auto`` matches every pair up to this many images; beyond, spatially (GPS) or sequentially."""


@dataclass(frozen=True, slots=True)
class SfmConfig:
    """Settings of the structure-from-motion stage."""

    matcher: Matcher = "auto"
    """Which image pairs to match: ``exhaustive`` (all), ``sequential`` (neighbours in file order),
    ``spatial`` (nearest GPS positions), ``auto`` (exhaustive for small sets, else spatial with GPS,
    else sequential)."""
    camera_model: str = "SIMPLE_RADIAL"
    """COLMAP camera model, one shared by all photos; converted to pinhole + OpenCV k1 k2 p1 p2."""
    max_features: int = 8192
    """SIFT features per image."""
    threads: int = -1
    """CPU threads (-1: all)."""
    seed: int = 0
    """Random seed of RANSAC and mapping, for repeatable results."""
    spatial_neighbours: int = 30
    """Pairs per image for the spatial matcher."""
    min_model_size: int = 3
    """A reconstruction must register at least this many images."""


@dataclass
class SfmResult:
    """The largest reconstruction and what it took."""

    reconstruction: object
    """pycolmap.Reconstruction"""
    matcher: str
    verified_pairs: int
    seconds: dict[str, float] = field(default_factory=dict)
    """Stage -> seconds: features, matching, mapping."""


def camera_params(model: str, focal_px: float, width: int, height: int) -> str:
    """COLMAP's parameter string of ``model`` for a centred camera with no distortion."""
    cx, cy = 0.5 * width, 0.5 * height
    params = {
        "SIMPLE_PINHOLE": (focal_px, cx, cy),
        "PINHOLE": (focal_px, focal_px, cx, cy),
        "SIMPLE_RADIAL": (focal_px, cx, cy, 0.0),
        "RADIAL": (focal_px, cx, cy, 0.0, 0.0),
        "OPENCV": (focal_px, focal_px, cx, cy, 0.0, 0.0, 0.0, 0.0),
    }
    if model not in params:
        raise InputError(None, f"--camera-model must be one of {', '.join(CAMERA_MODELS)}, got '{model}'")
    return ",".join(f"{v:.6f}" for v in params[model])


def run_sfm(
    work_dir: str | Path,
    image_dir: str | Path,
    names: Sequence[str],
    *,
    focal_px: float,
    size: tuple[int, int],
    positions_enu: np.ndarray | None,
    config: SfmConfig,
) -> SfmResult:
    """Reconstruct the images ``names`` of ``image_dir`` (all ``size`` pixels, focal ``focal_px``).

    ``positions_enu`` ``(N, 3)`` (nan rows for photos without GPS) become pose priors for spatial
    matching. Raises InputError when too few images match to reconstruct anything.
    """
    import pycolmap

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    database = work / "database.db"
    database.unlink(missing_ok=True)
    seconds: dict[str, float] = {}
    device = pycolmap.Device.cpu
    with quiet_colmap():
        started = time.perf_counter()
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = config.camera_model
        reader.camera_params = camera_params(config.camera_model, focal_px, *size)
        _extract(database, image_dir, names, reader, config)
        has_gps = positions_enu is not None and bool(np.isfinite(positions_enu).all(axis=1).any())
        if has_gps:
            write_pose_priors(database, names, positions_enu)
        seconds["features"] = time.perf_counter() - started

        started = time.perf_counter()
        matcher = choose_matcher(config.matcher, len(names), has_gps)
        matching = _matching_options(config)
        if matcher == "exhaustive":
            pycolmap.match_exhaustive(database, matching_options=matching, device=device)
        elif matcher == "sequential":
            pycolmap.match_sequential(database, matching_options=matching, device=device)
        else:
            pairing = pycolmap.SpatialPairingOptions()
            pairing.ignore_z = False
            pairing.max_num_neighbors = config.spatial_neighbours
            pairing.max_distance = 1e9  # neighbours by count, whatever the spacing of the photos
            pycolmap.match_spatial(database, matching_options=matching, pairing_options=pairing, device=device)
        db = pycolmap.Database.open(database)
        verified = int(db.num_verified_image_pairs())
        db.close()
        seconds["matching"] = time.perf_counter() - started

        started = time.perf_counter()
        options = _mapping_options(config)
        sparse = work / "sparse"
        sparse.mkdir(exist_ok=True)
        models = pycolmap.incremental_mapping(database, image_dir, sparse, options=options) if verified else {}
        seconds["mapping"] = time.perf_counter() - started
    if not models:
        raise InputError(
            image_dir,
            f"too few matches to reconstruct: {verified} verified image pairs among {len(names)} images "
            f"(matcher {matcher}); photos need overlapping views of a textured scene",
        )
    largest = max(models.values(), key=lambda r: r.num_reg_images())
    # The model the capture is made of, apart from the partial ones under sparse/.
    best = work / "model"
    best.mkdir(exist_ok=True)
    largest.write(best)
    return SfmResult(largest, matcher, verified, seconds)


def register_images(
    work_dir: str | Path,
    base_dir: str | Path,
    image_dir: str | Path,
    names: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    *,
    config: SfmConfig,
) -> SfmResult:
    """Register the images ``names`` of ``image_dir`` into the reconstruction ``base_dir/model``
    made from ``base_dir/database.db``, keeping its cameras where they are.

    ``base_dir`` is left as it is: ``work_dir`` gets a copy of the database with the new images'
    features (on the model's camera: the images must have its size) and the matches of ``pairs``
    (image names; new against old and new against new), and ``work_dir/model``, the reconstruction
    with every image it could register. The old images' poses and the camera stay fixed; the 3D
    points may be refined and extended. ``SfmResult.reconstruction`` is that model.
    """
    import pycolmap

    work, base = Path(work_dir), Path(base_dir)
    work.mkdir(parents=True, exist_ok=True)
    database = work / "database.db"
    shutil.copyfile(base / "database.db", database)
    model = pycolmap.Reconstruction(base / "model")
    (camera_id,) = model.cameras  # one camera per ingest
    old = sorted(model.images[i].name for i in model.reg_image_ids())
    seconds: dict[str, float] = {}
    with quiet_colmap():
        started = time.perf_counter()
        reader = pycolmap.ImageReaderOptions()
        reader.existing_camera_id = camera_id
        _extract(database, image_dir, names, reader, config)
        seconds["features"] = time.perf_counter() - started

        started = time.perf_counter()
        pair_list = work / "pairs.txt"
        pair_list.write_text("".join(f"{a} {b}\n" for a, b in pairs))
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = pair_list
        pycolmap.match_image_pairs(database, matching_options=_matching_options(config), pairing_options=pairing,
                                   device=pycolmap.Device.cpu)
        db = pycolmap.Database.open(database)
        verified = int(db.num_verified_image_pairs())
        db.close()
        seconds["matching"] = time.perf_counter() - started

        started = time.perf_counter()
        options = _mapping_options(config)
        options.fix_existing_frames = True
        options.ba_refine_focal_length = False
        options.ba_refine_principal_point = False
        options.ba_refine_extra_params = False
        options.image_names = old + list(names)
        sparse = work / "sparse"
        sparse.mkdir(exist_ok=True)
        models = pycolmap.incremental_mapping(database, image_dir, sparse, options=options, input_path=base / "model")
        seconds["mapping"] = time.perf_counter() - started
    if not models:
        raise InputError(base / "model", "registering new images lost the existing reconstruction (nothing was written)")
    merged = max(models.values(), key=lambda r: r.num_reg_images())
    out = work / "model"
    out.mkdir(exist_ok=True)
    merged.write(out)
    return SfmResult(merged, "pairs", verified, seconds)


def _extract(database: Path, image_dir: str | Path, names: Sequence[str], reader: object, config: SfmConfig) -> None:
    """SIFT features of ``names`` (one camera, as ``reader`` says) into ``database``."""
    import pycolmap

    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = config.threads
    extraction.sift.max_num_features = config.max_features
    pycolmap.set_random_seed(config.seed)
    pycolmap.extract_features(
        database, image_dir, image_names=list(names), camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu,
    )


def _matching_options(config: SfmConfig) -> object:
    import pycolmap

    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = config.threads
    return matching


def _mapping_options(config: SfmConfig) -> object:
    import pycolmap

    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = config.threads
    options.random_seed = config.seed
    options.min_model_size = config.min_model_size
    options.extract_colors = False
    return options


def choose_matcher(matcher: Matcher, n_images: int, has_gps: bool) -> str:
    """The matcher ``auto`` resolves to; ``spatial`` without GPS is an error."""
    if matcher == "auto":
        if n_images <= EXHAUSTIVE_UP_TO:
            return "exhaustive"
        return "spatial" if has_gps else "sequential"
    if matcher == "spatial" and not has_gps:
        raise InputError(None, "--matcher spatial needs GPS in the photos' EXIF; none has it")
    if matcher not in ("exhaustive", "sequential", "spatial"):
        raise InputError(None, f"--matcher must be exhaustive, sequential or spatial, got '{matcher}'")
    return matcher


def write_pose_priors(database: Path, names: Sequence[str], positions_enu: np.ndarray) -> None:
    """Store each image's GPS position (ENU metres) as a pose prior, which spatial matching reads."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        by_name = {image.name: image for image in db.read_all_images()}
        for name, position in zip(names, np.asarray(positions_enu, dtype=np.float64)):
            if name not in by_name or not np.all(np.isfinite(position)):
                continue
            prior = pycolmap.PosePrior()
            prior.corr_data_id = by_name[name].data_id
            prior.position = position
            prior.coordinate_system = pycolmap.PosePriorCoordinateSystem.CARTESIAN
            db.write_pose_prior(prior)
    finally:
        db.close()


@contextlib.contextmanager
def quiet_colmap() -> Iterator[None]:
    """Silence COLMAP's informational log lines for the duration (warnings and errors still show)."""
    import pycolmap

    before = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = before


__all__ = ["CAMERA_MODELS", "SfmConfig", "SfmResult", "camera_params", "choose_matcher", "quiet_colmap", "register_images", "run_sfm", "write_pose_priors"]
