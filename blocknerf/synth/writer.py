"""Writing a synthetic capture: images, ground-truth depth, transforms.json, city.json.

Output layout of ``synthesize(OUT, cfg)``::

    OUT/transforms.json      the capture (read it with blocknerf.capture.transforms.read_capture)
    OUT/images/<name>.png    8-bit RGB frames, appearance applied (apply_appearance); with
                             ``exif``, <name>.jpg carrying EXIF GPS, focal length and time
    OUT/depth/<name>.npy     (H, W) float32 depth along the optical axis, +inf for sky
    OUT/city.json            resolved config + the city (load_city rebuilds it exactly)
    OUT/change.json          only for a change capture: the changed regions
    OUT/contact_sheet.png    a labelled grid of a few train and test frames

Per frame, transforms.json holds ``timestamp``, ``exposure`` (linear gain), ``gps`` (WGS84 from the
camera centre through GeoFrame at ``origin_lla``) and, among the extra keys, ``white_balance`` (RGB
gains; [1, 1, 1] for held-out frames), ``trajectory`` ("drive" or "offset"), ``street`` and
``heading_deg``. Held-out frames are listed in ``test_filenames``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from blocknerf.capture.frames import Capture, Frame, Intrinsics
from blocknerf.capture.geo import LLA, GeoFrame
from blocknerf.capture.images import save_image
from blocknerf.capture.transforms import write_capture
from blocknerf.errors import ConfigError, InputError
from blocknerf.output_dir import clear_outputs
from blocknerf.synth.city import City
from blocknerf.synth.config import SynthConfig
from blocknerf.synth.layout import build_city
from blocknerf.synth.raycast import render_view
from blocknerf.synth.scene import Scene, compile_scene
from blocknerf.synth.seeds import SEED_APPEARANCE, SEED_GPS_NOISE, rng_for
from blocknerf.synth.trajectory import RigView, drive_plan

CHANGE_PREFIX = "chg_"
"""Image names of a change capture start with this, so its frame ids never collide with the
original capture's."""
BATCH = (8, 64)
"""Frames a worker renders per task (min, max): about 8 tasks per worker, since each task ships
the city to the worker."""
INLINE_BELOW = 48
"""Captures with fewer frames render in this process (starting workers would cost more)."""
_OUTPUTS = ("transforms.json", "city.json", "change.json", "contact_sheet.png", "images", "depth")


def apply_appearance(rgb: np.ndarray, exposure: float, white_balance: np.ndarray | list[float]) -> np.ndarray:
    """The camera response the writer applies: ``clip(rgb * exposure * white_balance, 0, 1)``.

    ``rgb`` is (..., 3) neutral radiance in [0, 1] (``City.render``); returns float32. Saving the
    result as 8-bit rounds to nearest (``round(255 * x)``), as ``blocknerf.capture.images.save_image`` does.
    """
    gain = np.float32(exposure) * np.asarray(white_balance, dtype=np.float32)
    return np.clip(np.asarray(rgb, dtype=np.float32) * gain, 0.0, 1.0)


def capture_intrinsics(cfg: SynthConfig) -> Intrinsics:
    """The rig cameras' intrinsics: centred pinhole with ``fov_x_deg`` horizontally."""
    return Intrinsics.from_fov(cfg.width, cfg.height, math.radians(cfg.fov_x_deg))


def plan_capture(city: City) -> list[RigView]:
    """The frames a capture of ``city`` takes: the whole drive, or for a changed city only the
    changed area, shifted in time to after the original capture."""
    cfg = city.config
    if not cfg.change:
        return drive_plan(city)
    last_original = max(v.timestamp for v in drive_plan(city))
    shift = last_original + cfg.change_delay_s - cfg.start_time_s
    views = drive_plan(city, regions=city.change_regions, margin_m=cfg.change_margin_m)
    return [
        dataclasses.replace(v, name=CHANGE_PREFIX + v.name, timestamp=round(v.timestamp + shift, 6)) for v in views
    ]


SENSOR_WIDTH_MM = 6.4
"""Sensor width the ``exif`` photos claim (a phone-sized sensor); sets FocalLength in mm."""


def photo_exif(cfg: SynthConfig, views: list[RigView], geo: GeoFrame) -> list[bytes]:
    """Per view, the EXIF of its ``exif`` photo: camera, focal length (exact through the focal
    plane resolution, and the rounded 35 mm equivalent), capture time, and GPS of the camera centre
    plus ``gps_noise_m`` Gaussian noise per ENU axis."""
    from blocknerf.ingest.exif import FULL_FRAME_DIAGONAL_MM, PhotoExif, exif_bytes

    k = capture_intrinsics(cfg)
    px_per_mm = cfg.width / SENSOR_WIDTH_MM
    rng = rng_for(cfg.seed, SEED_GPS_NOISE)
    enu = np.array([v.position for v in views]).reshape(-1, 3)
    noisy = geo.enu_to_lla(enu + rng.normal(0.0, cfg.gps_noise_m, enu.shape))
    return [
        exif_bytes(
            PhotoExif(
                make="blocknerf", model="synthetic rig",
                focal_mm=k.fx / px_per_mm, focal_plane_px_per_mm=px_per_mm,
                focal_35mm=k.fx * FULL_FRAME_DIAGONAL_MM / math.hypot(cfg.width, cfg.height),
                timestamp=v.timestamp, gps=LLA(*lla),
            )
        )
        for v, lla in zip(views, noisy)
    ]


def synthesize(out_dir: str | os.PathLike[str], cfg: SynthConfig, *, progress: bool = True) -> Capture:
    """Render the capture of ``cfg``'s city into ``out_dir`` and return it (as read_capture would).

    ``out_dir`` must be new, empty or an earlier synth output (whose files are replaced).
    """
    try:
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(None, f"synth: {exc}") from None
    out = _prepare(Path(out_dir))
    started = time.perf_counter()
    city = build_city(cfg)
    views = plan_capture(city)
    intrinsics = capture_intrinsics(cfg)
    appearance = _appearance(cfg, views)
    geo = GeoFrame(LLA(*cfg.origin_lla))
    lla = geo.enu_to_lla(np.array([v.position for v in views]))

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    suffix = ".jpg" if cfg.exif else ".png"
    exif = photo_exif(cfg, views, geo) if cfg.exif else [None] * len(views)
    jobs = [(v.name + suffix, v.c2w, exposure, wb, e) for v, (exposure, wb), e in zip(views, appearance, exif)]
    _render_all(city, out, jobs, workers=cfg.workers, progress=progress)

    frames = tuple(
        Frame(
            id=f"images/{v.name}{suffix}",
            image_path=out / "images" / f"{v.name}{suffix}",
            intrinsics=intrinsics,
            c2w=v.c2w,
            appearance_index=k,
            timestamp=v.timestamp,
            exposure=exposure,
            gps=LLA(float(p[0]), float(p[1]), float(p[2])),
            split=v.split,
            depth_path=out / "depth" / f"{v.name}.npy",
            extra={"white_balance": wb, "trajectory": v.trajectory, "street": v.street, "heading_deg": v.heading_deg},
        )
        for k, (v, (exposure, wb), p) in enumerate(zip(views, appearance, lla))
    )
    capture = Capture(
        root=out,
        frames=frames,
        geo_origin=geo.origin,
        extra={"synth": {"seed": cfg.seed, "grid": list(cfg.grid), "changed": cfg.change}},
    )
    write_capture(capture, out)
    city.save(out)
    if cfg.change:
        (out / "change.json").write_text(json.dumps(_change_doc(city, frames), indent=1))
    if cfg.contact_sheet:
        write_contact_sheet(capture, out / "contact_sheet.png")
    elapsed = time.perf_counter() - started
    if progress:
        n_test = sum(f.split == "test" for f in frames)
        print(
            f"synth: {len(frames)} images ({len(frames) - n_test} train, {n_test} test) "
            f"{cfg.width}x{cfg.height} in {elapsed:.1f} s ({len(frames) / elapsed:.1f} images/s) -> {out}"
        )
    return capture


def _prepare(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "city.json").is_file():
            raise InputError(out, "directory is not empty and is not a 'blocknerf synth' output; choose a new one")
    return clear_outputs(out, _OUTPUTS)


def _appearance(cfg: SynthConfig, views: list[RigView]) -> list[tuple[float, list[float]]]:
    """Per-frame (exposure, white balance); held-out frames get neutral white balance."""
    rng = rng_for(cfg.seed, SEED_APPEARANCE + (100 if cfg.change else 0))
    out = []
    for v in views:
        exposure = round(float(2.0 ** rng.uniform(-cfg.exposure_stops, cfg.exposure_stops)), 6)
        gains = rng.uniform(-cfg.white_balance_jitter, cfg.white_balance_jitter, 3)
        wb = [1.0, 1.0, 1.0] if v.split == "test" else [round(1.0 + float(g), 6) for g in gains]
        out.append((exposure, wb))
    return out


def tune_malloc() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS at once.

    The caster allocates many short-lived arrays of 0.1-2 MB; with glibc's defaults each comes
    fresh from the OS (mmap, page faults), which makes rendering 2-4x slower. This changes the
    whole process, so it is called only in processes that blocknerf owns: render workers and the
    ``blocknerf`` command. Returns whether it took effect (False off glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20)
        ok &= libc.mallopt(m_trim_threshold, 256 << 20)
        ok &= libc.mallopt(m_top_pad, 16 << 20)
        return bool(ok)
    except (OSError, AttributeError):
        return False


def _render_batch(scene: Scene, cfg: SynthConfig, out: Path, jobs: list) -> int:
    """Render, expose and write frames (runs in worker processes)."""
    intrinsics = capture_intrinsics(cfg)
    for name, c2w, exposure, wb, exif in jobs:
        rgb, depth = render_view(scene, np.asarray(c2w, dtype=np.float64), intrinsics, cfg.supersample)
        save_image(out / "images" / name, apply_appearance(rgb, exposure, wb),
                   exif=exif, quality=cfg.jpeg_quality)
        np.save(out / "depth" / f"{Path(name).stem}.npy", depth)
    return len(jobs)


def _render_all(city: City, out: Path, jobs: list, *, workers: int, progress: bool) -> None:
    from tqdm import tqdm

    n_workers = workers or os.cpu_count() or 1
    size = min(max(len(jobs) // (8 * n_workers), BATCH[0]), BATCH[1])
    batches = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    n_workers = min(n_workers, len(batches))
    scene = compile_scene(city)  # once here; workers receive the compiled scene
    with tqdm(total=len(jobs), desc="synth", unit="img", disable=not progress, leave=False) as bar:
        if n_workers <= 1 or len(jobs) < INLINE_BELOW:
            for batch in batches:
                bar.update(_render_batch(scene, city.config, out, batch))
            return
        # spawn: a fresh interpreter per worker, safe whatever threads this process runs.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context, initializer=tune_malloc) as pool:
            futures = [pool.submit(_render_batch, scene, city.config, out, batch) for batch in batches]
            for future in as_completed(futures):
                bar.update(future.result())


def _change_doc(city: City, frames: tuple[Frame, ...]) -> dict:
    times = [f.timestamp for f in frames if f.timestamp is not None]
    return {
        "schema_version": 1,
        "seed": city.config.seed,
        "regions": [r.to_dict() for r in city.change_regions],
        "timestamp_min": min(times),
        "timestamp_max": max(times),
    }


def write_contact_sheet(capture: Capture, path: Path, *, n_train: int = 8, n_test: int = 4) -> Path:
    """A grid of evenly spread train and test frames, each labelled with its split and name."""
    from PIL import Image, ImageDraw

    def spread(frames: tuple[Frame, ...], n: int) -> list[Frame]:
        """n frames evenly spread through the capture, cycling through the rig's headings."""
        headings = sorted({f.extra.get("heading_deg") for f in frames}, key=str)
        picked: list[Frame] = []
        for k, i in enumerate(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)):
            want = headings[k % len(headings)]
            window = range(i, min(len(frames), i + 4 * len(headings)))
            near = [j for j in window if frames[j].extra.get("heading_deg") == want]
            frame = frames[near[0] if near else i]
            if frame not in picked:
                picked.append(frame)
        return picked

    chosen = spread(capture.train_frames, n_train) + spread(capture.test_frames, n_test)
    k = chosen[0].intrinsics
    scale = max(1, round(320 / k.width))
    cell_w, cell_h, label_h = k.width * scale, k.height * scale, 16
    cols = 4
    rows = math.ceil(len(chosen) / cols)
    sheet = Image.new("RGB", (cols * (cell_w + 4) + 4, rows * (cell_h + label_h + 4) + 4), (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    for n, frame in enumerate(chosen):
        x = 4 + (n % cols) * (cell_w + 4)
        y = 4 + (n // cols) * (cell_h + label_h + 4)
        with Image.open(frame.image_path) as img:
            sheet.paste(img.convert("RGB").resize((cell_w, cell_h), Image.NEAREST), (x, y + label_h))
        name = Path(frame.id).stem
        colour = (255, 220, 120) if frame.split == "test" else (230, 230, 230)
        draw.text((x + 2, y + 2), f"{frame.split}  {name}", fill=colour)
    sheet.save(path)
    return path


__all__ = ["apply_appearance", "capture_intrinsics", "photo_exif", "plan_capture", "synthesize", "tune_malloc", "write_contact_sheet"]
