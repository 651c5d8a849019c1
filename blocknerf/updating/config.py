"""Settings of incremental updates (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class ChangeConfig:
    """How an update finds where the city changed (``update.change:`` in a config file).

    Every new frame is rendered from the published store at a reduced resolution, its photo's
    colours fitted to the rendering, and pixels whose robust difference is large are changed; those
    are lifted to world points that several new frames agree on, and blocks holding such points are
    retrained (docs/updates.md, *Where the city changed*)."""

    width_px: int = 48
    """Frames are compared at most this many pixels wide (photos box-averaged, renders made at
    that size): changes worth a retrain are large, and rendering costs per pixel."""
    keep: float = 0.6
    """Fraction of the pixels the colour transform is fitted on (the best-fitting ones)."""
    threshold: float = 0.1
    """A pixel is changed when its colour difference (mean absolute over RGB, in [0, 1], after the
    colour transform and a 3x3 box filter) exceeds this ..."""
    sigmas: float = 4.0
    """... and this many robust standard deviations (1.4826 MAD) of the frame's differences above
    their median."""
    min_opacity: float = 0.5
    """Pixels the store renders with less opacity look into space it has never seen: changed."""
    min_views: int = 3
    """A world point is changed when at least this many new frames see it in a changed pixel ..."""
    min_agreement: float = 0.5
    """... and they are at least this fraction of the new frames that observe it at all."""
    samples_per_ray: int = 32
    """Points tried along each changed pixel's ray, from ``near`` to just past the old surface."""
    rays_per_frame: int = 256
    """At most this many changed pixels of a frame are lifted (evenly spread)."""
    min_points: int = 8
    """A block is affected when its region (with the margin) holds at least this many changed points,
    lifted from the changed pixels of at least ``min_views`` new frames."""
    margin_m: float | None = None
    """Margin added to a block's radius when testing changed points; None: 10% of the median
    block radius."""

    def validate(self) -> None:
        if self.width_px < 8:
            raise ValueError("change.width_px must be >= 8")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError("change.keep must be in (0, 1]")
        if not self.threshold >= 0.0 or not self.sigmas >= 0.0:
            raise ValueError("change.threshold and change.sigmas must be >= 0")
        if not 0.0 <= self.min_opacity <= 1.0 or not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError("change.min_opacity and change.min_agreement must be in [0, 1]")
        if self.min_views < 1 or self.samples_per_ray < 2 or self.rays_per_frame < 1 or self.min_points < 1:
            raise ValueError("change.min_views, rays_per_frame and min_points must be >= 1, samples_per_ray >= 2")
        if self.margin_m is not None and not self.margin_m >= 0.0:
            raise ValueError("change.margin_m must be >= 0 (or null: 10% of the median block radius)")

    def margin_for(self, radii: np.ndarray) -> float:
        """The block margin for blocks of these radii (B,)."""
        if self.margin_m is not None:
            return self.margin_m
        return 0.1 * float(np.median(radii)) if len(radii) else 0.0


@dataclass(frozen=True, slots=True)
class UpdateConfig:
    """How new frames are merged into a store's capture record."""

    supersede_distance_m: float | None = None
    """A newer frame supersedes an older one of the same place: camera centres at most this far
    apart (world units) ... None: 2% of the plan's median block radius."""
    supersede_angle_deg: float = 15.0
    """... and viewing directions at most this many degrees apart."""
    change: ChangeConfig = field(default_factory=ChangeConfig)
    """Where the city changed: which blocks an update retrains (unless ``update --all``)."""

    def validate(self) -> None:
        self.change.validate()
        if self.supersede_distance_m is not None and not self.supersede_distance_m >= 0.0:
            raise ValueError("supersede_distance_m must be >= 0 (or null: 2% of the median block radius)")
        if not 0.0 <= self.supersede_angle_deg <= 180.0:
            raise ValueError("supersede_angle_deg must be in [0, 180]")

    def distance_for(self, radii: np.ndarray) -> float:
        """The supersede distance for blocks of these radii (B,)."""
        if self.supersede_distance_m is not None:
            return self.supersede_distance_m
        return 0.02 * float(np.median(radii)) if len(radii) else 0.0


__all__ = ["ChangeConfig", "UpdateConfig"]
