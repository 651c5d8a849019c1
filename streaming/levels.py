"""Levels of detail: which level of each block a view needs, and which the byte budget allows.

A block's levels are coarsest first, each with the world size of one voxel inside the block
(``BlockSource.levels``). The rule is a screen-space error: a voxel of size ``v`` at distance ``d``
from a camera of focal length ``f`` pixels covers ``v f / d`` pixels, and in a blend a block's
error reaches the image times its blend weight ``w``; the level a view needs is the coarsest with
``w v f / d <= max_error_px`` (the finest when none is). So the block the camera stands in (weight
near 1, distance small) draws at its finest level, and blocks further away or blended in with a
small weight draw coarser, and the level grows with the block's projected size.

When the levels a view wants do not fit the byte budget together, the blocks of least priority
(smallest weight) give up detail first, one level at a time; when the budget, not a fixed count,
decides how many blocks blend, they are left out when even their coarsest levels do not fit (the
first block always stays).
"""

from __future__ import annotations

from collections.abc import Sequence

_MIN_DISTANCE_M = 1e-6


def projected_px(voxel_m: float, distance_m: float, focal_px: float) -> float:
    """Pixels one voxel of ``voxel_m`` covers at ``distance_m`` from a camera of ``focal_px``."""
    return float(voxel_m) * float(focal_px) / max(float(distance_m), _MIN_DISTANCE_M)


def level_for(voxels_m: Sequence[float], distance_m: float, focal_px: float, *, weight: float = 1.0, max_error_px: float = 1.0) -> int:
    """The coarsest level (index into ``voxels_m``, coarsest first) whose weighted projected voxel
    is at most ``max_error_px`` pixels; the finest level when none is."""
    for k, v in enumerate(voxels_m):
        if max(float(weight), 0.0) * projected_px(v, distance_m, focal_px) <= max_error_px:
            return k
    return len(voxels_m) - 1


def fit_levels(wanted: Sequence[int], nbytes: Sequence[Sequence[int]], budget: int, *, drop: bool = True) -> list[int | None]:
    """Levels to draw within ``budget`` bytes: blocks in priority order (most important first),
    ``wanted[i]`` the level block i wants and ``nbytes[i][k]`` what its level k holds. Demotes the
    least important block that is above its coarsest level, one level at a time, while the total
    exceeds the budget; then, with ``drop``, leaves out the least important blocks (None), never
    the first (without it they stay: blocks are leased one at a time, so any set renders, only
    slower as levels are reloaded)."""
    chosen: list[int | None] = [int(w) for w in wanted]

    def total() -> int:
        return sum(nbytes[i][k] for i, k in enumerate(chosen) if k is not None)

    over = total() > budget
    while over:
        demotable = [i for i, k in enumerate(chosen) if k]
        if not demotable:
            break
        i = demotable[-1]
        chosen[i] = int(chosen[i]) - 1  # type: ignore[operator]
        over = total() > budget
    for i in range(len(chosen) - 1, 0, -1):
        if not over or not drop:
            break
        chosen[i] = None
        over = total() > budget
    return chosen


__all__ = ["fit_levels", "level_for", "projected_px"]
