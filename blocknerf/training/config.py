"""Settings of block training (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from blocknerf.model.config import BakeConfig


_NAMED_BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}


def background_rgb(value: str) -> tuple[float, float, float] | None:
    """The fixed colour (r, g, b in [0, 1]) of a ``TrainConfig.background``; None for ``random``."""
    if value == "random":
        return None
    if value in _NAMED_BACKGROUNDS:
        return _NAMED_BACKGROUNDS[value]
    digits = value[1:] if value.startswith("#") else ""
    if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"background must be random, black, white or #rrggbb, got {value!r}")
    return tuple(int(digits[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """How one block is optimised."""

    steps: int = 2000
    """Optimisation steps per block."""
    warm_start_steps: int | None = None
    """Steps of a run that starts from the block's published version (``blocknerf update``);
    None: a quarter of ``steps``. Not part of a block's fingerprint: a block updated this way
    counts as trained for its current frames."""
    time_budget_s: float | None = None
    """Stop a block after this many seconds of training even if steps remain (None: no limit)."""
    samples_per_step: int = 1 << 13
    """Target samples (after skipping) per step; the number of rays adapts to reach it. Small: on a
    CPU, many small steps learn far faster per second than few large ones (tiny city, 40 s of
    training: 16.5 dB at 2^17 samples per step, 20.8 dB at 2^14, 22.3 dB at 2^13; on a GPU raise it
    to 2^18 and more)."""
    min_rays: int = 64
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
    background: str = "random"
    """Colour behind what a ray's samples cover, in training: ``random``, ``black``, ``white`` or
    ``#rrggbb``. Random colours (Instant-NGP) make transparency useless for fitting the images, so
    density cannot collapse to a black void: right for streets and rooms, where everything seen is
    matter. An object photographed against a plain backdrop trains over the backdrop's colour
    (``blocknerf synth --object`` uses #ebebeb): the backdrop is then explained by nothing at all,
    so the object's field is empty around it and it can be placed into a scene
    (``blocknerf compose``); its held-out views are scored over that colour too."""
    distortion_weight: float = 0.0
    """Weight of mip-NeRF 360's distortion loss, which pulls each ray's weights together. Off by
    default: on the synthetic city it slowed early training (tiny city, 200 steps: 17.8 dB with
    0.002, 18.1 dB without)."""
    depth_loss_weight: float = 0.1
    """Weight of DS-NeRF's depth loss on frames whose capture has depth maps (``depth_file_path``:
    a street rig's lidar or depth camera, the synthetic city's ground truth); a capture without
    them (photos, ``blocknerf ingest``) trains as without the loss. 0 neither loads nor uses depth.
    On the synthetic city's block, 10 minutes on one thread (``bench/fit.py --synthetic``): 25.2 dB
    held out with 0.1 against 24.4 dB without (1200 steps: 21.7 against 20.2 dB; 0.01: 20.4 dB)."""
    depth_sigma: float = 0.02
    """Width of the depth loss's Gaussian about the measured depth, in contracted distance (block
    radii inside the block: 1.6 m for a block of radius 80 m)."""
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
    bake: bool = True
    """Bake each block (a render-only grid, ``blocknerf bake``) into its version before it is
    published, so a new store renders fast with no extra step. Not part of a block's fingerprint."""
    bake_grid: BakeConfig = field(default_factory=BakeConfig)
    """How blocks are baked (resolution rule, brick size); used by ``train``, ``update`` and ``bake``."""

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.warm_start_steps is not None and self.warm_start_steps < 1:
            raise ValueError("warm_start_steps must be at least 1 (or null: a quarter of steps)")
        if not 1 <= self.min_rays <= self.max_rays:
            raise ValueError("need 1 <= min_rays <= max_rays")
        if self.lr <= 0 or not 0 < self.lr_final_ratio <= 1:
            raise ValueError("lr must be > 0 and lr_final_ratio in (0, 1]")
        if not 0.0 <= self.outside_ray_fraction < 1.0:
            raise ValueError("outside_ray_fraction must be in [0, 1)")
        if self.depth_loss_weight < 0 or self.depth_sigma <= 0:
            raise ValueError("depth_loss_weight must be >= 0 and depth_sigma > 0")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError("time_budget_s must be positive")
        background_rgb(self.background)
        self.bake_grid.validate()
