"""Settings of the synthetic city: layout, camera rig, held-out views, appearance and output."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """Everything that determines a synthetic city and its capture (``synth:`` in a config file).

    Lengths are metres in the local ENU world frame (x east, y north, z up, z = 0 the road surface,
    origin at the city centre). The same config and seed always give byte-identical output.
    """

    seed: int = 0
    """Seed of every random choice (layout, facades, appearance, the change)."""
    grid: tuple[int, int] = (2, 2)
    """Driven city blocks east x north; streets surround every block, so there are ``nx + 1``
    north-south and ``ny + 1`` east-west streets. A ring of undriven blocks lines the outer streets."""
    width: int = 160
    """Image width in pixels."""
    height: int = 120
    """Image height in pixels."""
    fov_x_deg: float = 85.0
    """Horizontal field of view of every rig camera (centred pinhole, square pixels)."""
    supersample: int = 2
    """Subpixels per pixel along each axis (stratified grid, no jitter) at geometric edges: a pixel
    whose centre ray and its 8 neighbours' end on different surfaces averages ``supersample**2``
    rays; inside a flat face one ray suffices because textures are box-filtered analytically over
    the pixel's footprint."""

    block_size_m: float = 60.0
    """Side of a square city block, pavement edge to pavement edge."""
    street_width_m: float = 20.0
    """Building line to building line: two pavements plus the carriageway."""
    pavement_width_m: float = 4.0
    """Width of each pavement; the carriageway is ``street_width_m - 2 * pavement_width_m``
    (default 12 m: two 3 m lanes each way)."""
    min_height_m: float = 8.0
    """Lowest building."""
    max_height_m: float = 40.0
    """Tallest building (heights are skewed towards low buildings)."""
    max_buildings_per_block: int = 6
    """Buildings per block are between 2 and this many; the other lots are empty."""
    empty_lot_prob: float = 0.15
    """Chance that a street-facing lot is an empty lot (grass) rather than built on."""

    camera_height_m: float = 2.0
    """Height of the rig cameras above the road."""
    pitch_deg: float = 8.0
    """Upward pitch of every rig camera, so that facades and some sky show."""
    headings_deg: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    """Rig camera yaws relative to the driving direction, counter-clockwise (0 ahead, 90 left)."""
    streets: tuple[str, ...] = ()
    """Capture only these streets (``ns<i>``, ``ew<j>``); empty: every street. A one-street capture
    is small enough for structure-from-motion tests."""
    spacing_m: float = 6.0
    """Distance between rig positions along a street."""
    drive_offset_m: float = 1.5
    """Lateral offset of the driven path right of the street centre line (inner lane, right-hand
    traffic); every street is driven in both directions."""
    speed_mps: float = 5.0
    """Driving speed; sets the timestamps (positions are ``spacing_m / speed_mps`` seconds apart)."""
    start_time_s: float = 1_700_000_000.0
    """Timestamp of the first frame (Unix seconds)."""

    test_every: int = 9
    """Every Nth frame of the driven path is held out (split "test"); N coprime to the number of
    headings makes the held-out frames cycle through the headings."""
    test_offset_m: float = 2.5
    """Sideways offset (towards the kerb) of the separate held-out trajectory from the driven one."""
    test_offset_every: int = 8
    """The offset trajectory has a rig position every this many driven positions (all headings)."""

    exposure_stops: float = 0.4
    """Per-frame exposure is ``2 ** uniform(-exposure_stops, exposure_stops)`` (a linear gain)."""
    white_balance_jitter: float = 0.05
    """Per-channel white-balance gains of training frames are ``1 + uniform(-j, j)``; held-out frames
    use neutral [1, 1, 1]."""

    origin_lla: tuple[float, float, float] = (37.7764, -122.4346, 40.0)
    """WGS84 (lat deg, lon deg, ellipsoidal height m) of the world origin; default Alamo Square, San
    Francisco."""

    change: bool = False
    """Write the changed city instead: a new building on an empty lot and construction on one street,
    captured only around the changes, with later timestamps."""
    change_margin_m: float = 25.0
    """The change capture keeps rig positions within a changed region's radius plus this margin."""
    change_delay_s: float = 30 * 86400.0
    """The change capture starts this long after the last frame of the original capture."""
    change_offset_every: int = 2
    """In the change capture the offset (held-out) trajectory has a position every this many driven
    positions, denser than in the full capture because the area is small."""

    exif: bool = False
    """Write the images as JPEGs with EXIF (GPS, focal length, camera, capture time) instead of PNGs:
    a photo folder with ground truth for ``blocknerf ingest``."""
    gps_noise_m: float = 0.0
    """Standard deviation (metres, per ENU axis) of the noise added to the EXIF GPS positions; the
    transforms.json keeps the true positions."""
    jpeg_quality: int = 95
    """JPEG quality of the ``exif`` images."""

    workers: int = 0
    """Processes that render in parallel; 0 = one per CPU core (small captures render inline)."""
    contact_sheet: bool = True
    """Write ``contact_sheet.png``: a labelled grid of a few train and test frames."""

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        nx, ny = self.grid
        if nx < 1 or ny < 1:
            raise ValueError(f"grid must be at least 1x1, got {nx}x{ny}")
        if nx * ny > 1024:
            raise ValueError(f"grid {nx}x{ny} has more than 1024 blocks")
        if not (8 <= self.width <= 8192 and 8 <= self.height <= 8192):
            raise ValueError(f"image size {self.width}x{self.height} must be between 8 and 8192 pixels a side")
        if not 10.0 <= self.fov_x_deg <= 150.0:
            raise ValueError("fov_x_deg must be in [10, 150]")
        if not 1 <= self.supersample <= 8:
            raise ValueError("supersample must be in 1..8")
        if self.block_size_m < 20.0:
            raise ValueError("block_size_m must be at least 20")
        if self.pavement_width_m < 1.0:
            raise ValueError("pavement_width_m must be at least 1")
        if self.carriageway_m < 8.0:
            raise ValueError("street_width_m - 2 * pavement_width_m (the carriageway) must be at least 8")
        if not 3.0 <= self.min_height_m <= self.max_height_m:
            raise ValueError("need 3 <= min_height_m <= max_height_m")
        if self.max_buildings_per_block < 2:
            raise ValueError("max_buildings_per_block must be at least 2")
        if not 0.0 <= self.empty_lot_prob < 1.0:
            raise ValueError("empty_lot_prob must be in [0, 1)")
        if not 0.3 <= self.camera_height_m < self.min_height_m:
            raise ValueError("camera_height_m must be at least 0.3 and below min_height_m")
        if not -45.0 <= self.pitch_deg <= 45.0:
            raise ValueError("pitch_deg must be in [-45, 45]")
        if not self.headings_deg or not all(math.isfinite(h) for h in self.headings_deg):
            raise ValueError("headings_deg must list at least one finite angle")
        if self.spacing_m < 0.5:
            raise ValueError("spacing_m must be at least 0.5")
        if not 0.0 <= self.drive_offset_m < 0.5 * self.carriageway_m:
            raise ValueError("drive_offset_m must lie within the carriageway half (0 .. carriageway/2)")
        if not 0.0 < self.drive_offset_m + self.test_offset_m < 0.5 * self.carriageway_m:
            raise ValueError("drive_offset_m + test_offset_m must lie within the carriageway half")
        if self.speed_mps <= 0.0 or not math.isfinite(self.start_time_s):
            raise ValueError("speed_mps must be positive and start_time_s finite")
        if self.test_every < 2:
            raise ValueError("test_every must be at least 2")
        if self.test_offset_every < 1 or self.change_offset_every < 1:
            raise ValueError("test_offset_every and change_offset_every must be at least 1")
        if not 0.0 <= self.exposure_stops <= 2.0:
            raise ValueError("exposure_stops must be in [0, 2]")
        if not 0.0 <= self.white_balance_jitter <= 0.3:
            raise ValueError("white_balance_jitter must be in [0, 0.3]")
        lat, lon, alt = self.origin_lla
        if not (-89.0 <= lat <= 89.0 and -180.0 <= lon <= 180.0 and math.isfinite(alt)):
            raise ValueError("origin_lla must be (lat in [-89, 89], lon in [-180, 180], finite alt)")
        if self.change_margin_m < 0.0 or self.change_delay_s <= 0.0:
            raise ValueError("change_margin_m must be >= 0 and change_delay_s > 0")
        names = {f"ns{i}" for i in range(nx + 1)} | {f"ew{j}" for j in range(ny + 1)}
        unknown = sorted(set(self.streets) - names)
        if unknown:
            raise ValueError(f"streets: no street '{unknown[0]}' in a {nx}x{ny} grid ({', '.join(sorted(names))})")
        if self.gps_noise_m < 0.0 or not math.isfinite(self.gps_noise_m):
            raise ValueError("gps_noise_m must be >= 0")
        if not 50 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in [50, 100]")
        if self.workers < 0:
            raise ValueError("workers must be >= 0")

    @property
    def carriageway_m(self) -> float:
        """Width of the road between the kerbs."""
        return self.street_width_m - 2.0 * self.pavement_width_m

    @property
    def pitch_m(self) -> float:
        """Distance between neighbouring parallel street centre lines."""
        return self.block_size_m + self.street_width_m


__all__ = ["SynthConfig"]
