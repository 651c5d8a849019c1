"""Settings of streaming, compositing, appearance matching and automatic camera paths (torch-free)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class MatchConfig:
    """Appearance matching between neighbouring blocks (Block-NeRF): only appearance codes move."""

    steps: int = 80
    """Adam steps per block when optimising its appearance code."""
    lr: float = 0.05
    """Adam learning rate of the appearance code."""
    views: int = 6
    """Camera views in the overlap of two blocks that the match compares (fewer if fewer exist)."""
    width: int = 48
    """Width in pixels of the match renders (height follows the views' aspect)."""
    prior: float = 1e-3
    """L2 pull of the code towards zero (the typical look), so a weak overlap cannot push it far."""
    batch_rays: int = 2048
    """Pixels rendered per optimisation step (a random batch of all overlap views' pixels)."""

    def validate(self) -> None:
        if self.steps < 1 or self.lr <= 0 or self.views < 1 or self.width < 4 or self.prior < 0 or self.batch_rays < 1:
            raise ValueError("match needs steps >= 1, lr > 0, views >= 1, width >= 4, prior >= 0 and batch_rays >= 1")


@dataclass(frozen=True, slots=True)
class AutoPathConfig:
    """The automatic flythrough along the capture's trajectory (``blocknerf render --auto``)."""

    speed_mps: float = 5.0
    """Camera speed along the path (world units per second; metres for a geo-registered capture)."""
    fps: float = 30.0
    """Frames per second of the video."""
    smoothing_m: float = 8.0
    """Length scale over which positions (smoothing spline) and orientations (weighted mean of the
    capture's rotations) are smoothed; larger is smoother but cuts corners more."""
    default_seconds: float = 20.0
    """Length of the video when ``--auto`` is given no ``--frames``, ``--seconds`` or ``--speed``:
    the whole trajectory in this many seconds (a long capture otherwise makes a path of many
    thousands of frames)."""
    merge_m: float = 0.5
    """Frames whose cameras stand closer than this to the previous stop belong to one stop (the
    cameras of a rig)."""

    def validate(self) -> None:
        if not (self.speed_mps > 0 and self.fps > 0 and self.smoothing_m >= 0 and self.merge_m >= 0 and self.default_seconds > 0):
            raise ValueError("auto path needs speed_mps > 0, fps > 0, smoothing_m >= 0, merge_m >= 0 and default_seconds > 0")


@dataclass(frozen=True, slots=True)
class ViewerConfig:
    """The live browser viewer (``blocknerf view``): how it trades resolution for responsiveness."""

    moving_frame_ms: float = 30.0
    """Time a frame may take while the camera moves; the moving resolution is chosen from the
    measured cost per pixel so that a frame fits it (the camera stays responsive whatever a
    full frame costs)."""
    min_width: int = 16
    """Narrowest image rendered while moving, in pixels."""
    rest_ms: float = 150.0
    """The camera rests once it has not moved for this long; the view is then rendered at full
    resolution (``stream.width`` wide, the browser window's aspect)."""
    refresh_s: float = 1.0
    """While the camera rests, re-read the store's manifest this often; a newly published block
    is rendered without a restart."""
    jpeg_quality: int = 90
    """JPEG quality of the frames sent to the browser."""
    map_px: int = 256
    """Side of the top-down block map in the side panel, in pixels."""
    max_frustums: int = 400
    """Most capture frustums drawn (an even subsample of the frames beyond that)."""

    def validate(self) -> None:
        if self.moving_frame_ms <= 0 or self.rest_ms < 0 or self.refresh_s <= 0:
            raise ValueError("viewer needs moving_frame_ms > 0, rest_ms >= 0 and refresh_s > 0")
        if self.min_width < 2 or not 1 <= self.jpeg_quality <= 100 or self.map_px < 32 or self.max_frustums < 0:
            raise ValueError("viewer needs min_width >= 2, jpeg_quality in [1, 100], map_px >= 32 and max_frustums >= 0")


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """How blocks are loaded, chosen and blended when rendering a view."""

    memory_budget_mb: float = 1024.0
    """Most memory the loaded blocks may take together, in MB (10^6 bytes); the LRU cache never
    exceeds it. A block larger than the budget is an error. ``--memory-budget`` takes a size with
    a unit (``parse_bytes``, i.e. dask's units): ``2GB`` is 2000 MB here, ``2GiB`` 2147.48 MB."""
    max_blocks: int | None = 3
    """Blend at most this many blocks per view (the nearest ones that pass the visibility test);
    None (``null``): every block in range, each at the level of detail the view needs, as many as
    the memory budget holds (``streaming.levels.fit_levels``)."""
    range_factor: float = 1.0
    """A block is a candidate when the camera is within range_factor x its radius of its centre
    (Block-NeRF renders the blocks within a radius of the camera); the nearest block is always one."""
    idw_power: float = 4.0
    """Inverse-distance weighting exponent p in w_i ~ d(camera, centre_i)^-p."""
    range_taper: float = 0.3
    """A block's weight falls smoothly to zero over the outer range_taper share of its range, so
    that blocks enter and leave the blend without a jump (0: a hard cut at the range)."""
    visibility_threshold: float = 0.1
    """Drop a block whose mean predicted visibility for the view is below this (0: no test)."""
    visibility_ramp: float = 0.1
    """Blocks whose visibility lies within this much above the threshold are faded in linearly
    rather than switched on, so the test causes no pop (0: a hard threshold)."""
    visibility_size: int = 32
    """Width in pixels of the low-resolution render used for the visibility test."""
    blend: Literal["image", "pixel"] = "image"
    """``image``: one weight per block and view (Block-NeRF); ``pixel``: each block's weight is also
    scaled per pixel by its predicted visibility there."""
    prefetch: bool = True
    """Load the blocks the camera path will need next in a background thread."""
    prefetch_lookahead: int = 8
    """How many upcoming path poses the prefetcher looks at."""
    manifest_refresh_frames: int = 1
    """Re-read the store's manifest every this many frames, so that newly published versions are
    streamed as whole new blocks (1: every frame; reading it is cheap)."""
    lod: bool = True
    """Levels of detail: load a block's coarse level first and finer levels as its projected size
    needs them (``lod_pixel_error``), evict finer levels first; False: every block at its finest
    level (whole blocks). A block without levels (a network, an older bake) has one level."""
    lod_pixel_error: float = 1.0
    """A level is fine enough for a view when one of its voxels, at the block's distance and times
    the block's blend weight, covers at most this many pixels."""
    lod_frame_load_ms: float = 50.0
    """A frame loads finer levels on demand only while its loads so far took less than this many
    milliseconds; past it a block draws at the finest level it has loaded up to the one wanted
    (its coarsest at least, which is always loaded) and the prefetcher or the next frames refine
    it. 0: a frame never waits for a finer level; ``.inf``: always draws the wanted level."""
    chunk_rays: int = 16384
    """Rays rendered at once (bounds render memory)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where blocks are loaded and rendered: auto uses CUDA when present."""
    renderer: Literal["baked", "neural"] = "baked"
    """``baked``: render a block from its bake (``blocknerf bake``) where its version has one, with
    the native kernel on a CPU, and from its network otherwise; ``neural``: always the network."""
    width: int = 320
    """Frame width when neither ``--size`` nor the camera path gives one."""
    height: int = 240
    """Frame height when neither ``--size`` nor the camera path gives one."""
    match: MatchConfig = field(default_factory=MatchConfig)
    """Appearance matching (``blocknerf match``)."""
    auto_path: AutoPathConfig = field(default_factory=AutoPathConfig)
    """The automatic flythrough (``blocknerf render --auto``)."""
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    """The live browser viewer (``blocknerf view``)."""

    def validate(self) -> None:
        if self.memory_budget_mb <= 0:
            raise ValueError("memory_budget_mb must be positive")
        if (self.max_blocks is not None and self.max_blocks < 1) or self.range_factor <= 0 or self.idw_power < 0:
            raise ValueError("need max_blocks >= 1 (or null), range_factor > 0, idw_power >= 0")
        if self.lod_pixel_error <= 0 or not self.lod_frame_load_ms >= 0:
            raise ValueError("need lod_pixel_error > 0 and lod_frame_load_ms >= 0")
        if not 0.0 <= self.range_taper <= 1.0:
            raise ValueError("range_taper must be in [0, 1]")
        if not 0.0 <= self.visibility_threshold < 1.0 or self.visibility_ramp < 0:
            raise ValueError("visibility_threshold must be in [0, 1) and visibility_ramp >= 0")
        if self.visibility_size < 4 or self.chunk_rays < 1 or self.prefetch_lookahead < 0:
            raise ValueError("need visibility_size >= 4, chunk_rays >= 1, prefetch_lookahead >= 0")
        if self.manifest_refresh_frames < 1:
            raise ValueError("manifest_refresh_frames must be at least 1")
        if self.width < 2 or self.height < 2:
            raise ValueError("width and height must be at least 2")
        self.viewer.validate()

    @property
    def memory_budget_bytes(self) -> int:
        """The budget in bytes."""
        return int(self.memory_budget_mb * 1e6)


def parse_bytes(text: str) -> int:
    """``"512MB"`` -> 512000000 bytes: a number and a unit, read by ``dask.utils.parse_bytes``.

    Units follow dask (and the SI/IEC prefixes): B, kB, MB, GB, TB (or k, M, G, T) are powers of
    1000, so ``2GB`` is 2 * 10^9 bytes; KiB, MiB, GiB, TiB are powers of 1024, so ``2GiB`` is
    2 * 2^30. Case and spaces do not matter. Stricter than dask, because this reads memory
    budgets: a unit is required (dask reads a bare ``512`` as 512 bytes, which for a budget is a
    forgotten ``MB``) and the size must be at least one byte. ValueError with a one-line message
    saying what is wrong otherwise."""
    # dask is imported here, not at the top: this module is read by every command (settings) and
    # must stay cheap to import.
    from dask.utils import parse_bytes as dask_parse_bytes

    stripped = text.strip()
    if _is_number(stripped):
        raise ValueError(f"'{text}' has no unit; write e.g. {stripped}MB or {stripped}GB")
    if not any(c.isdigit() for c in stripped):  # dask reads a lone unit such as "MB" as 1 MB
        raise ValueError(f"'{text}' is not a size such as 512MB or 2GB")
    try:
        nbytes = dask_parse_bytes(stripped)
    except (ValueError, OverflowError) as exc:  # OverflowError: "infGB"
        raise ValueError(f"'{text}' is not a size such as 512MB or 2GB ({exc})") from None
    if nbytes < 1:
        raise ValueError(f"'{text}' must be at least one byte")
    return nbytes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_size(text: str) -> tuple[int, int]:
    """``"320x240"`` -> (320, 240); ValueError saying what is wrong otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"'{text}' is not a size such as 320x240")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 2 or h < 2:
        raise ValueError(f"'{text}': width and height must be at least 2")
    return w, h


__all__ = ["AutoPathConfig", "MatchConfig", "StreamConfig", "ViewerConfig", "parse_bytes", "parse_size"]
