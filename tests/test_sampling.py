"""Sampling for unbounded captures: the occupancy threshold schedule and what a ray then costs.

The fields here are analytic density functions over the contracted cube, so the cells that must be
occupied, and the samples a ray must get, are known exactly.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from blocknerf.model.bounds import contract
from blocknerf.model.config import OccupancyConfig, SamplerConfig
from blocknerf.model.marching import march, step_edges
from blocknerf.model.occupancy import OccupancyGrid

CFG = OccupancyConfig(resolution=32, warmup_steps=8, update_every=4, threshold_ramp_steps=16, warmup_updates=1)
SAMPLER = SamplerConfig()


def _density_of_opacity(opacity: float, min_step: float) -> float:
    """The density whose opacity over one minimum step is ``opacity``: -log(1 - a) / min_step."""
    return -math.log1p(-opacity) / min_step


def _train_grid(grid: OccupancyGrid, density_fn, steps: int) -> None:  # noqa: ANN001
    """Run the grid's update schedule for ``steps`` training steps with a fixed field."""
    gen = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        if grid.due(step):
            grid.update(density_fn, gen, step)


def test_threshold_rises_from_its_start_to_its_target_after_the_warm_up():
    assert CFG.threshold_at(0) == pytest.approx(CFG.threshold_start)
    assert CFG.threshold_at(CFG.warmup_steps) == pytest.approx(CFG.threshold_start)
    # Half-way up the ramp: the mean of start and target.
    half = CFG.warmup_steps + CFG.threshold_ramp_steps // 2
    assert CFG.threshold_at(half) == pytest.approx(0.5 * (CFG.threshold_start + CFG.threshold))
    assert CFG.threshold_at(CFG.warmup_steps + CFG.threshold_ramp_steps) == pytest.approx(CFG.threshold)
    assert CFG.threshold_at(10**6) == pytest.approx(CFG.threshold)
    assert dataclasses.replace(CFG, threshold_ramp_steps=0).threshold_at(0) == CFG.threshold


def test_updates_begin_at_the_end_of_the_warm_up():
    grid = OccupancyGrid(CFG, min_step=SAMPLER.min_step)
    due = [s for s in range(1, 25) if grid.due(s)]
    # warm-up 8 steps, then every 4: nothing is evaluated while every cell counts as occupied.
    assert due == [8, 12, 16, 20, 24]


def test_every_cell_counts_as_occupied_during_the_warm_up():
    grid = OccupancyGrid(CFG, min_step=SAMPLER.min_step)
    grid.update(lambda x: torch.zeros(x.shape[0]), torch.Generator().manual_seed(0), step=CFG.warmup_steps - 1)
    assert grid.occupied_fraction() == 1.0


def _fog_and_wall(fog_density: float):  # noqa: ANN202
    """A field: fog of ``fog_density`` where x < 0.5, a solid wall (density 1000) in the cells
    x in [24/32, 28/32), nothing elsewhere; the wall keeps the mean density far above the fog."""

    def field(x: torch.Tensor) -> torch.Tensor:
        fog = torch.where(x[:, 0] < 0.5, fog_density, 0.0)
        return torch.where((x[:, 0] >= 24 / 32) & (x[:, 0] < 28 / 32), 1000.0, fog)

    return field


@pytest.mark.parametrize(
    ("opacity", "occupied_at_start", "occupied_at_end"),
    [(0.02, True, False), (0.2, True, True), (0.005, False, False)],
    ids=["fog-between-thresholds", "solid", "thin-air"],
)
def test_a_fog_is_occupied_by_the_threshold_in_force(opacity, occupied_at_start, occupied_at_end):
    # A fog whose opacity over a minimum step is 2% passes the starting threshold (1%) and fails the
    # target (5%); 20% passes both, 0.5% neither. The wall is occupied throughout.
    field = _fog_and_wall(_density_of_opacity(opacity, SAMPLER.min_step))
    fog = torch.zeros(32, 32, 32, dtype=torch.bool)
    fog[:16] = True
    wall = torch.zeros_like(fog)
    wall[24:28] = True
    grid = OccupancyGrid(CFG, min_step=SAMPLER.min_step)
    _train_grid(grid, field, CFG.warmup_steps)
    assert torch.equal(grid.occupied, wall | (fog if occupied_at_start else torch.zeros_like(fog)))
    _train_grid(grid, field, CFG.warmup_steps + CFG.threshold_ramp_steps + CFG.update_every)
    assert torch.equal(grid.occupied, wall | (fog if occupied_at_end else torch.zeros_like(fog)))


@pytest.mark.parametrize("cap_at_mean", [True, False], ids=["capped", "uncapped"])
def test_a_young_field_keeps_its_densest_cells_when_the_threshold_is_capped_at_the_mean(cap_at_mean):
    # Everything below the threshold (opacity 0.3% and 0.6% a minimum step, the target is 5%): the
    # mean lies between the two densities, so with the cap the denser half stays occupied.
    thin = _density_of_opacity(0.003, SAMPLER.min_step)

    def young(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[:, 1] < 0.5, 2.0 * thin, thin)

    cfg = dataclasses.replace(CFG, cap_at_mean=cap_at_mean)
    grid = OccupancyGrid(cfg, min_step=SAMPLER.min_step)
    _train_grid(grid, young, cfg.warmup_steps + cfg.threshold_ramp_steps)
    expected = torch.zeros(32, 32, 32, dtype=torch.bool)
    if cap_at_mean:
        expected[:, :16] = True
    assert torch.equal(grid.occupied, expected)


def test_occupied_cells_are_exactly_those_of_a_solid_box():
    # Density 1000 inside a box whose faces lie on cell faces, 0 elsewhere: any point of a cell
    # gives the same answer, so the occupied cells are exactly the box's.
    g = CFG.resolution
    lo, hi = 10 / g, 20 / g

    def box(x: torch.Tensor) -> torch.Tensor:
        inside = ((x >= lo) & (x < hi)).all(dim=-1)
        return torch.where(inside, 1000.0, 0.0)

    grid = OccupancyGrid(CFG, min_step=SAMPLER.min_step)
    _train_grid(grid, box, CFG.warmup_steps + CFG.threshold_ramp_steps)
    expected = torch.zeros(g, g, g, dtype=torch.bool)
    expected[10:20, 10:20, 10:20] = True
    assert torch.equal(grid.occupied, expected)


def _outward_rays(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Street-level rays: origins inside the block, directions all around (normalised block units)."""
    gen = torch.Generator().manual_seed(seed)
    origins = (torch.rand(n, 3, generator=gen) - 0.5) * torch.tensor([1.2, 1.2, 0.2])
    directions = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    return origins, directions


def test_an_empty_block_with_only_a_sky_costs_at_most_the_contracted_steps():
    # Nothing in the block or the near shell; "sky" (opaque) in the outer shell, |c| > 1.75 of
    # the [-2, 2] cube, i.e. |u| > 4 in normalised units (c = 2 - 1/|u|). Beyond t = 0.5 the steps
    # are uniform in 1/t, contracted_steps per unit of 1/t, and a ray from |o| <= 0.6 reaches
    # |u| = 4 no earlier than t = 3.4: at most 32 / 3.4 = 9.4 steps, never one inside the block,
    # where an all-occupied grid costs all of them.
    def sky(x: torch.Tensor) -> torch.Tensor:
        m = (x * 4.0 - 2.0).abs().amax(dim=-1)
        return torch.where(m > 1.75, 1000.0, 0.0)

    cfg = dataclasses.replace(CFG, resolution=64)
    grid = OccupancyGrid(cfg, min_step=SAMPLER.min_step)
    _train_grid(grid, sky, cfg.warmup_steps + cfg.threshold_ramp_steps)
    origins, directions = _outward_rays(2000)
    edges = torch.from_numpy(step_edges(SAMPLER, 1.0))
    samples = march(origins, directions, edges, grid.occupied, max_per_ray=SAMPLER.max_samples_per_ray)
    counts = samples.counts()
    bound = int((edges[1:] > 4.0 - 0.6).sum())
    assert int(counts.max()) <= bound < SAMPLER.contracted_steps
    assert int(counts.min()) >= 1  # every ray reaches the sky
    c = samples.x01 * 4.0 - 2.0
    assert bool((c.abs().amax(dim=-1) > 1.75 - 4.0 / 64).all())
    # The same scene with every cell occupied (the start of training) costs every step.
    full = march(origins, directions, edges, torch.ones_like(grid.occupied), max_per_ray=SAMPLER.max_samples_per_ray)
    assert int(full.counts().min()) == len(edges) - 1


def test_a_wall_in_front_of_the_camera_is_sampled_only_where_it_stands():
    # A wall 0.1 block radii thick at x in [0.4, 0.5] (normalised), across the whole block; rays
    # looking along +x from the centre. Samples must lie in the wall's cells and the far shell is
    # never visited because the wall's cells are the only occupied ones.
    g = 64

    def wall(x01: torch.Tensor) -> torch.Tensor:
        c = x01 * 4.0 - 2.0
        return torch.where((c[:, 0] >= 0.375) & (c[:, 0] < 0.5), 1000.0, 0.0)

    cfg = dataclasses.replace(CFG, resolution=g)
    grid = OccupancyGrid(cfg, min_step=SAMPLER.min_step)
    _train_grid(grid, wall, cfg.warmup_steps + cfg.threshold_ramp_steps)
    origins = torch.zeros(16, 3)
    directions = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1 * (i - 8) / 8, 0.05] for i in range(16)]), dim=-1)
    edges = torch.from_numpy(step_edges(SAMPLER, 1.0))
    s = march(origins, directions, edges, grid.occupied, max_per_ray=SAMPLER.max_samples_per_ray)
    x = contract(origins[s.ray_indices] + s.t[:, None] * directions[s.ray_indices])
    c = x * 4.0 - 2.0
    # Cells of 4/64 = 0.0625: the wall spans [0.375, 0.5), exactly two cells.
    assert bool(((c[:, 0] >= 0.375 - 1e-5) & (c[:, 0] < 0.5 + 1e-5)).all())
    # Crossing 0.125 of wall at steps of min_step = 1/128 along x (directions nearly along x): 16 steps.
    assert 14 <= int(s.counts().min()) and int(s.counts().max()) <= 17
