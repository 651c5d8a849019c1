"""The occupancy grid: which cells of the contracted cube can hold visible matter.

Instant-NGP's scheme: a density estimate per cell, refreshed every few training steps by
evaluating the field at a random point in (a random share of) the cells, decaying old estimates;
a cell is occupied when its estimated opacity over a minimum step exceeds a threshold. Marching
visits only occupied cells, in training and rendering.

On outward-looking captures the young field is a fog that passes Instant-NGP's threshold almost
everywhere, so here the threshold rises on a schedule (``OccupancyConfig.threshold_at``); updates
start at the end of the warm-up, when every cell is treated as occupied anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from blocknerf.model.config import OccupancyConfig


class OccupancyGrid:
    """Density estimates and the derived occupied mask over [0, 1]^3 (``resolution``^3 cells)."""

    def __init__(self, cfg: OccupancyConfig, *, min_step: float, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.min_step = float(min_step)
        g = cfg.resolution
        # Start fully occupied so that the first updates see everything.
        self.density = torch.full((g, g, g), 1e4, dtype=torch.float32, device=device)
        self.occupied = torch.ones((g, g, g), dtype=torch.bool, device=device)
        self.updates = 0
        self.step = 0

    @property
    def resolution(self) -> int:
        return self.cfg.resolution

    def due(self, step: int) -> bool:
        """Whether training ``step`` (counted from 1) ends with a grid update: at the end of the
        warm-up, then every ``update_every`` steps."""
        start = max(self.cfg.warmup_steps, 1)
        return step >= start and (step - start) % self.cfg.update_every == 0

    def occupied_fraction(self) -> float:
        return float(self.occupied.float().mean())

    @torch.no_grad()
    def update(
        self, density_fn: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator, step: int, chunk: int = 1 << 17
    ) -> None:
        """Re-estimate densities at training ``step``: ``density_fn`` maps (N, 3) points in [0, 1]^3
        to (N,) densities."""
        g, dev = self.cfg.resolution, self.density.device
        n_cells = g**3
        if self.updates < self.cfg.warmup_updates:
            cells = torch.arange(n_cells, device=dev)
        else:
            n = max(1, int(n_cells * self.cfg.update_fraction))
            cells = torch.randint(0, n_cells, (n,), generator=generator, device="cpu").to(dev)
            # Also revisit occupied cells so that stale occupancy decays (Instant-NGP does the same).
            occupied = self.occupied.reshape(-1).nonzero().squeeze(1)
            if occupied.numel() > n:
                pick = torch.randint(0, occupied.numel(), (n,), generator=generator, device="cpu").to(dev)
                occupied = occupied[pick]
            cells = torch.cat([cells, occupied])
        ijk = torch.stack([cells // (g * g), (cells // g) % g, cells % g], dim=-1).float()
        jitter = torch.rand(ijk.shape, generator=generator, device="cpu").to(dev)
        points = (ijk + jitter) / g
        new = torch.empty(cells.shape[0], device=dev)
        for s in range(0, cells.shape[0], chunk):
            new[s : s + chunk] = density_fn(points[s : s + chunk]).float()
        flat = self.density.view(-1)
        if self.updates < self.cfg.warmup_updates:
            flat[cells] = new  # replace the "everything occupied" start value
        else:
            flat[cells] = torch.maximum(flat[cells] * self.cfg.decay, new)
        self.updates += 1
        self.refresh(step)

    def refresh(self, step: int | None = None) -> None:
        """Recompute the occupied mask from the density estimates (all cells during warm-up)."""
        if step is not None:
            self.step = step
        if self.step < self.cfg.warmup_steps:
            self.occupied = torch.ones_like(self.occupied)
            return
        threshold = -math.log1p(-self.cfg.threshold_at(self.step)) / self.min_step
        if self.cfg.cap_at_mean:
            threshold = min(threshold, float(self.density.mean()))
        self.occupied = self.density > threshold

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return {"occupancy_density": self.density, "occupancy_updates": torch.tensor([self.updates, self.step])}

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.density = arrays["occupancy_density"].to(self.density.device, torch.float32).clone()
        self.updates, step = (int(v) for v in arrays["occupancy_updates"])
        self.refresh(step)
