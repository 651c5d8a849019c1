"""Settings of streaming and compositing (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """How blocks are loaded, chosen and blended when rendering a view."""

    memory_budget_mb: float = 1024.0
    """Most memory the loaded blocks may take together; the LRU cache never exceeds it."""
    max_blocks: int = 3
    """Blend at most this many blocks per view (the nearest ones that pass the visibility test)."""
    range_factor: float = 1.0
    """A block is a candidate when the camera is within range_factor x its radius of its centre
    (Block-NeRF renders the blocks within a radius of the camera); the nearest block is always one."""
    idw_power: float = 4.0
    """Inverse-distance weighting exponent p in w_i ~ d(camera, centre_i)^-p."""
    visibility_threshold: float = 0.1
    """Drop a block whose mean predicted visibility for the view is below this."""
    visibility_size: int = 32
    """Width in pixels of the low-resolution render used for the visibility test."""
    prefetch: bool = True
    """Load the blocks the camera path will need next in a background thread."""
    prefetch_lookahead: int = 8
    """How many upcoming path poses the prefetcher looks at."""
    chunk_rays: int = 16384
    """Rays rendered at once (bounds render memory)."""

    def validate(self) -> None:
        if self.memory_budget_mb <= 0:
            raise ValueError("memory_budget_mb must be positive")
        if self.max_blocks < 1 or self.range_factor <= 0 or self.idw_power < 0:
            raise ValueError("need max_blocks >= 1, range_factor > 0, idw_power >= 0")
