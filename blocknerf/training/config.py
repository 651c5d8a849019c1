"""Settings of block training (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """How one block is optimised."""

    steps: int = 2000
    """Optimisation steps per block."""
    time_budget_s: float | None = None
    """Stop a block after this many seconds of training even if steps remain (None: no limit)."""
    samples_per_step: int = 1 << 17
    """Target samples (after skipping) per step; the number of rays adapts to reach it."""
    min_rays: int = 256
    """Fewest rays per step."""
    max_rays: int = 16384
    """Most rays per step."""
    lr: float = 1e-2
    """Adam learning rate at the start (after warm-up)."""
    lr_final_ratio: float = 0.03
    """The learning rate decays exponentially to lr * lr_final_ratio at the last step."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up."""
    mlp_weight_decay: float = 1e-6
    """L2 weight decay of the MLPs (not of the hash tables)."""
    outside_ray_fraction: float = 0.1
    """Share of rays drawn from pixels whose rays do not cross the block (for plausible backgrounds)."""
    appearance_l2: float = 1e-3
    """L2 penalty on appearance codes, so the zero code (used for unseen images) is a typical look."""
    background: Literal["random", "black", "white"] = "random"
    """Colour behind what a ray's samples cover, in training. Random colours (Instant-NGP) make
    transparency useless for fitting the images, so density cannot collapse to a black void."""
    visibility_weight: float = 0.1
    """Weight of the visibility head's loss."""
    checkpoint_every_s: float = 60.0
    """Seconds between checkpoints (also one at the end); a crash loses at most this much work."""
    checkpoint_every_steps: int = 0
    """Steps between checkpoints when > 0 (in addition to the time interval)."""
    eval_views: int = 8
    """Held-out views of the block rendered for its PSNR/SSIM when training ends (0: none)."""
    seed: int = 0
    """Seed of initialisation and ray sampling (combined with the block id)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto uses CUDA when present."""

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if not 1 <= self.min_rays <= self.max_rays:
            raise ValueError("need 1 <= min_rays <= max_rays")
        if self.lr <= 0 or not 0 < self.lr_final_ratio <= 1:
            raise ValueError("lr must be > 0 and lr_final_ratio in (0, 1]")
        if not 0.0 <= self.outside_ray_fraction < 1.0:
            raise ValueError("outside_ray_fraction must be in [0, 1)")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError("time_budget_s must be positive")
