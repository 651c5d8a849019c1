"""Settings of the per-block model (torch-free, so configs load without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as default
from typing import Literal


@dataclass(frozen=True, slots=True)
class HashGridConfig:
    """Multiresolution hash encoding (Instant-NGP) of contracted block coordinates."""

    levels: int = 16
    """Number of resolution levels L."""
    features_per_level: int = 2
    """Features F stored per table entry."""
    log2_table_size: int = 18
    """log2 of the entries T per level; coarse levels with fewer vertices are indexed densely."""
    base_resolution: int = 16
    """Grid resolution of the coarsest level over the whole contracted cube."""
    max_resolution: int = 2048
    """Grid resolution of the finest level over the whole contracted cube."""
    init_scale: float = 1e-4
    """Table entries start uniform in [-init_scale, init_scale]."""
    backend: Literal["auto", "fast", "reference"] = "auto"
    """``fast``: fused native kernel (CPU); ``reference``: plain torch; ``auto``: fast on CPU when it
    builds, reference otherwise (and on CUDA)."""

    def validate(self) -> None:
        if not 1 <= self.levels <= 32:
            raise ValueError("levels must be in 1..32")
        if self.features_per_level not in (1, 2, 4, 8):
            raise ValueError("features_per_level must be 1, 2, 4 or 8")
        if not 10 <= self.log2_table_size <= 24:
            raise ValueError("log2_table_size must be in 10..24")
        if not 2 <= self.base_resolution <= self.max_resolution:
            raise ValueError("need 2 <= base_resolution <= max_resolution")

    @property
    def output_dim(self) -> int:
        return self.levels * self.features_per_level


@dataclass(frozen=True, slots=True)
class FieldConfig:
    """The MLPs on top of the encoding: density, colour, visibility."""

    hidden_dim: int = 64
    """Width of the density MLP's hidden layer."""
    geo_features: int = 15
    """Geometry features the density MLP passes to the colour and visibility heads."""
    color_hidden_dim: int = 64
    """Width of the colour MLP's hidden layers."""
    color_layers: int = 2
    """Hidden layers of the colour MLP."""
    direction_sh_degree: int = 4
    """Spherical-harmonics degree of the view-direction encoding (degree**2 features)."""
    appearance_dim: int = 8
    """Size of the per-image appearance embedding (NeRF-W / Block-NeRF); 0 disables it."""
    use_exposure: bool = True
    """Feed log2(exposure) to the colour MLP when the capture records exposure."""
    visibility_hidden_dim: int = 32
    """Width of the visibility head (predicts transmittance, used to drop blocks at render time)."""

    def validate(self) -> None:
        if min(self.hidden_dim, self.color_hidden_dim, self.visibility_hidden_dim) < 8:
            raise ValueError("hidden widths must be at least 8")
        if not 1 <= self.direction_sh_degree <= 4:
            raise ValueError("direction_sh_degree must be in 1..4")
        if self.color_layers < 1:
            raise ValueError("color_layers must be at least 1")
        if self.appearance_dim < 0 or self.geo_features < 1:
            raise ValueError("appearance_dim must be >= 0 and geo_features >= 1")


@dataclass(frozen=True, slots=True)
class SamplerConfig:
    """Where samples go along a ray (shared step schedule + occupancy skipping)."""

    near: float = 0.01
    """Start of every ray, in units of the block radius."""
    far: float = 1000.0
    """End of every ray, in units of the block radius (contracted: 1000 r is 0.1% short of the edge)."""
    min_step: float = 1.0 / 128.0
    """Smallest step, in units of the block radius. Coarser than Instant-NGP's (1/512 of its cube):
    on a CPU, 4x fewer samples per ray buy more rays per second than the finer steps buy quality
    (fox_8x, 120 s of training: 20.1 dB at 1/128, less at 1/512)."""
    cone_angle: float = 1.0 / 64.0
    """Steps grow with distance t as t * cone_angle (Instant-NGP's cone marching)."""
    contracted_steps: int = 32
    """Steps across the contracted shell (beyond the block), uniform in contracted distance."""
    max_samples_per_ray: int = 1024
    """Hard cap on samples emitted per ray."""
    early_stop_transmittance: float = 1e-4
    """Samples behind the point where transmittance falls below this are dropped."""
    min_weight: float = 1e-4
    """Samples whose rendering weight is below this skip the colour MLP."""

    def validate(self) -> None:
        if not 0.0 < self.near < self.far:
            raise ValueError("need 0 < near < far")
        if self.min_step <= 0 or self.cone_angle < 0 or self.contracted_steps < 1:
            raise ValueError("min_step must be > 0, cone_angle >= 0, contracted_steps >= 1")


@dataclass(frozen=True, slots=True)
class OccupancyConfig:
    """The occupancy grid for empty-space skipping (over the contracted cube)."""

    resolution: int = 128
    """Cells per axis."""
    update_every: int = 64
    """Training steps between grid updates. An update evaluates the field at hundreds of thousands
    of cells, many times the samples of one small CPU step: every 16 steps (Instant-NGP's cadence,
    made for GPU steps of 2^18 samples) the updates took 43% of the training time of a city block."""
    update_fraction: float = 0.125
    """Share of cells re-evaluated at each update (random; all cells at the first updates)."""
    warmup_updates: int = 2
    """Number of first updates (from the end of the warm-up on) that evaluate every cell."""
    warmup_steps: int = 128
    """Every cell counts as occupied for this many training steps, and the grid is first updated at
    the end of them (estimates of a field that is still settling would be thrown away). The
    threshold needs a field with structure: right after initialisation, cells no ray has touched
    would pass it and the cells rays do cross would not, starving training of samples."""
    decay: float = 0.8
    """Density estimates decay by this factor at each update before taking the new maximum (0.8
    every 64 steps clears stale cells about as fast as Instant-NGP's 0.95 every 16)."""
    threshold: float = 0.05
    """A cell is occupied when its opacity over a minimum step, 1 - exp(-density * min_step),
    exceeds this threshold (reached after ``threshold_ramp_steps``; see ``cap_at_mean``). On
    outward-looking street captures the field starts as a fog that passes Instant-NGP's 0.01
    almost everywhere (87% of the cells of a city block); with 0.05 and the update cadence below,
    the block of ``bench/fit.py --synthetic`` after 1200 steps marches 52 samples a ray instead of
    109, keeps 39 instead of 103, takes 27% less CPU time and is 0.4 dB sharper held out."""
    threshold_start: float = 0.01
    """Threshold at the end of the warm-up; it rises linearly to ``threshold`` over
    ``threshold_ramp_steps``, so that a young field is not cut down to the little it has learned."""
    threshold_ramp_steps: int = 512
    """Steps after the warm-up over which the threshold rises from ``threshold_start``."""
    cap_at_mean: bool = True
    """Instant-NGP's safety net: the density threshold never exceeds the mean density estimate, so
    a young or sparse field (an object in a large cube) keeps the cells it is learning in. A foggy
    field has a high mean, so the net does not hold its fog."""

    def validate(self) -> None:
        if not 8 <= self.resolution <= 512:
            raise ValueError("resolution must be in 8..512")
        if not 0.0 < self.update_fraction <= 1.0 or not 0.0 < self.decay <= 1.0:
            raise ValueError("update_fraction and decay must be in (0, 1]")
        if self.update_every < 1 or self.warmup_steps < 0 or self.threshold_ramp_steps < 0:
            raise ValueError("update_every must be >= 1, warmup_steps and threshold_ramp_steps >= 0")
        if not (0.0 < self.threshold_start < 1.0 and 0.0 < self.threshold < 1.0):
            raise ValueError("threshold and threshold_start must be in (0, 1)")

    def threshold_at(self, step: int) -> float:
        """The opacity threshold in force at training ``step`` (the ramp after the warm-up)."""
        if self.threshold_ramp_steps == 0:
            return self.threshold
        frac = min(max(step - self.warmup_steps, 0) / self.threshold_ramp_steps, 1.0)
        return self.threshold_start + frac * (self.threshold - self.threshold_start)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The whole per-block model."""

    hashgrid: HashGridConfig = default(default_factory=HashGridConfig)
    field: FieldConfig = default(default_factory=FieldConfig)
    sampler: SamplerConfig = default(default_factory=SamplerConfig)
    occupancy: OccupancyConfig = default(default_factory=OccupancyConfig)


@dataclass(frozen=True, slots=True)
class BakeConfig:
    """The render-only bake of a block (``blocknerf bake``; ``train.bake`` bakes before publishing).

    The grid resolution N (cells per axis over the contracted cube, whose inner half is the block's
    region) follows the training images: a voxel inside the region should be about as large as
    what one pixel covers there, ``footprint = median distance(camera, block centre) / median focal
    length`` (distances below half the radius count as half the radius), so ``N = 2 * 2 radius /
    footprint * voxels_per_pixel``, then clamped to ``[min_resolution, max_resolution]`` and to the
    hash grid's finest level (no detail exists beyond it), and rounded up to a multiple of
    ``4 * brick`` so that the region's boundary falls on brick boundaries.
    """

    brick: int = 8
    """Cells per brick and axis (each occupied brick stores (brick+1)^3 vertices)."""
    voxels_per_pixel: float = 1.0
    """Voxels across one pixel footprint (see the class docstring)."""
    min_resolution: int = 64
    """Fewest cells per axis over the contracted cube."""
    max_resolution: int = 256
    """Most cells per axis over the contracted cube (memory grows about with its square)."""
    min_alpha: float = 1e-3
    """Vertex densities whose opacity across one voxel stays below this are stored as empty."""
    levels: int = 4
    """Levels of detail stored per block: the grid above and coarser ones, each at half the
    resolution of the next finer one, as long as that stays a multiple of ``4 * brick`` cells
    (fewer levels otherwise). Each level is a separate set of arrays, so streaming reads the
    coarse ones of far blocks alone."""

    def validate(self) -> None:
        if self.levels < 1:
            raise ValueError("levels must be at least 1")
        if self.brick not in (4, 8, 16):
            raise ValueError("brick must be 4, 8 or 16")
        if not 4 * self.brick <= self.min_resolution <= self.max_resolution <= 2048:
            raise ValueError("need 4 * brick <= min_resolution <= max_resolution <= 2048")
        if self.voxels_per_pixel <= 0 or not 0.0 <= self.min_alpha < 1.0:
            raise ValueError("voxels_per_pixel must be > 0 and min_alpha in [0, 1)")
