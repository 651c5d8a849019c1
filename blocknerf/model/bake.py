"""Baking: sampling a block's field once onto a block-sparse grid that renders without the network.

The family is SNeRG / MERF / Plenoxels: density and a few features per voxel over the block's
contracted space, empty bricks left out, colour decoded once per pixel from the features
(deferred shading). Here the features are the field's own geometry features, the input of its
colour and visibility heads, so the bake needs no extra training and keeps the per-image
appearance codes working: the baked block decodes the weight-averaged features with the block's
colour head (``baked_block.BakedBlock``).

Only bricks that touch a cell of the block's occupancy grid (dilated by one cell) are evaluated,
and a vertex outside every occupied cell gets zero density, as the neural renderer never samples
there. Everything is evaluated in a fixed order on the CPU, so baking twice gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from blocknerf.model.baked_grid import PREFIX, BakedGrid
from blocknerf.model.config import BakeConfig

DensityFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""(P, 3) contracted positions in [0, 1]^3 -> (P,) density, (P, F) features."""

BAKE_SCHEMA = 1


def pixel_footprint_m(positions: np.ndarray, focal_px: np.ndarray, center: Sequence[float], radius: float) -> float:
    """What one pixel of the training images covers at the block: median camera distance to the
    block centre (at least half the radius) over the median focal length. positions (K, 3)."""
    dist = np.linalg.norm(np.asarray(positions, dtype=np.float64) - np.asarray(center, dtype=np.float64), axis=1)
    return float(np.median(np.maximum(dist, 0.5 * radius)) / np.median(np.asarray(focal_px, dtype=np.float64)))


def frames_footprint_m(frames: Sequence[Any], bounds: Any) -> float:
    """``pixel_footprint_m`` of capture frames (``Frame``: ``position`` and ``intrinsics.fx``)."""
    if not frames:
        raise ValueError("no frames to choose a bake resolution from")
    positions = np.stack([np.asarray(f.position, dtype=np.float64) for f in frames])
    return pixel_footprint_m(positions, np.array([f.intrinsics.fx for f in frames]), bounds.center, bounds.radius)


def bake_resolution(radius: float, footprint_m: float, cfg: BakeConfig, *, max_detail: int | None = None) -> int:
    """Cells per axis over the contracted cube for a block of ``radius`` (the rule of ``BakeConfig``).

    ``max_detail``: the finest resolution the field has (its hash grid's), which caps the result.
    """
    n = 2.0 * (2.0 * radius / max(footprint_m, 1e-12)) * cfg.voxels_per_pixel
    hi = cfg.max_resolution if max_detail is None else max(cfg.min_resolution, min(cfg.max_resolution, max_detail))
    n = min(max(n, cfg.min_resolution), hi)
    step = 4 * cfg.brick
    return int(np.ceil(n / step) * step)


def candidate_bricks(occupied: torch.Tensor | None, bricks: int) -> np.ndarray:
    """(bricks^3,) bool: bricks that overlap an occupied cell of the (G, G, G) grid dilated by one
    cell (all bricks when ``occupied`` is None)."""
    if occupied is None:
        return np.ones(bricks**3, dtype=bool)
    occ = occupied.detach().cpu().to(torch.float32)[None, None]
    dil = torch.nn.functional.max_pool3d(occ, 3, stride=1, padding=1)[0, 0].numpy() > 0
    g = dil.shape[0]
    sat = np.zeros((g + 1,) * 3, dtype=np.int64)
    sat[1:, 1:, 1:] = dil.cumsum(0).cumsum(1).cumsum(2)
    b = np.arange(bricks)
    lo = np.floor(b * g / bricks).astype(np.int64)
    hi = np.maximum(np.ceil((b + 1) * g / bricks).astype(np.int64), lo + 1)
    x0, y0, z0 = np.ix_(lo, lo, lo)
    x1, y1, z1 = np.ix_(hi, hi, hi)
    total = (
        sat[x1, y1, z1] - sat[x0, y1, z1] - sat[x1, y0, z1] - sat[x1, y1, z0]
        + sat[x0, y0, z1] + sat[x0, y1, z0] + sat[x1, y0, z0] - sat[x0, y0, z0]
    )
    return total.reshape(-1) > 0


def bake_field(
    density_fn: DensityFn,
    resolution: int,
    cfg: BakeConfig,
    *,
    occupied: torch.Tensor | None = None,
    chunk: int = 1 << 16,
) -> BakedGrid:
    """Sample ``density_fn`` on the vertices of every candidate brick of an N = ``resolution`` grid.

    ``occupied``: (G, G, G) bool occupancy of the field (None: everywhere may be occupied).
    """
    b = cfg.brick
    if resolution % b:
        raise ValueError(f"bake resolution {resolution} is not a multiple of the brick size {b}")
    m = resolution // b
    b1 = b + 1
    cand = np.flatnonzero(candidate_bricks(occupied, m))
    local = np.stack(np.meshgrid(np.arange(b1), np.arange(b1), np.arange(b1), indexing="ij"), -1).reshape(-1, 3)
    origin = np.stack([cand // (m * m), (cand // m) % m, cand % m], -1) * b
    # Bricks are evaluated in index order, whole bricks per chunk, so the result never depends on chunking.
    per_chunk = max(1, chunk // len(local))
    dilated = None
    if occupied is not None:
        occ = occupied.detach().cpu().to(torch.float32)[None, None]
        dilated = torch.nn.functional.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0
    min_sigma = -np.log1p(-cfg.min_alpha) / (4.0 / resolution)
    sigmas, feats = [], []
    with torch.no_grad():
        for s in range(0, len(cand), per_chunk):
            verts = (origin[s : s + per_chunk, None, :] + local[None]).reshape(-1, 3)
            x = torch.from_numpy(verts.astype(np.float32) / np.float32(resolution))
            sigma, feat = density_fn(x)
            sigma = sigma.detach().float().cpu()
            if dilated is not None:
                g = dilated.shape[0]
                cell = (x * g).long().clamp_(0, g - 1)
                sigma = torch.where(dilated[cell[:, 0], cell[:, 1], cell[:, 2]], sigma, torch.zeros_like(sigma))
            sigma = torch.where(sigma >= min_sigma, sigma.clamp(max=6.0e4), torch.zeros_like(sigma))
            sigmas.append(sigma.reshape(-1, len(local)))
            feats.append(feat.detach().float().cpu().reshape(-1, len(local), feat.shape[-1]))
    if not sigmas:
        return _empty_grid(m, b, 1)
    sigma_all = torch.cat(sigmas)
    feat_all = torch.cat(feats)
    keep = (sigma_all > 0).any(dim=1)
    sigma_all, feat_all = sigma_all[keep], feat_all[keep]
    if sigma_all.shape[0] == 0:
        return _empty_grid(m, b, feat_all.shape[-1])
    # float16 is what the store keeps: round now so a loaded bake renders what the baker made.
    sigma_all = sigma_all.half().float()
    q, scale, offset = _quantise(feat_all, sigma_all > 0)
    index = np.full(m**3, -1, dtype=np.int32)
    index[cand[keep.numpy()]] = np.arange(int(keep.sum()), dtype=np.int32)
    return BakedGrid(torch.from_numpy(index.reshape(m, m, m)), sigma_all.contiguous(), q, scale, offset, b)


def _quantise(feat: torch.Tensor, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 per channel over the range the features take where density is non-zero."""
    sel = feat[where]
    lo, hi = sel.amin(dim=0), sel.amax(dim=0)
    scale = torch.where(hi > lo, (hi - lo) / 255.0, torch.ones_like(hi))
    q = ((feat - lo) / scale).round_().clamp_(0, 255).to(torch.uint8)
    return q.contiguous(), scale.float(), lo.float()


def _empty_grid(m: int, b: int, f: int) -> BakedGrid:
    v = (b + 1) ** 3
    return BakedGrid(
        torch.full((m, m, m), -1, dtype=torch.int32), torch.zeros(0, v), torch.zeros(0, v, f, dtype=torch.uint8),
        torch.ones(f), torch.zeros(f), b,
    )


def level_resolutions(resolution: int, cfg: BakeConfig) -> list[int]:
    """Resolutions of the levels of detail of a bake at ``resolution``, coarsest first: halving
    while the result stays a multiple of ``4 * brick``, at most ``cfg.levels`` of them."""
    out = [int(resolution)]
    while len(out) < cfg.levels and out[0] % 2 == 0 and (out[0] // 2) % (4 * cfg.brick) == 0:
        out.insert(0, out[0] // 2)
    return out


def level_prefix(resolution: int, finest: int) -> str:
    """Array-name prefix of the level at ``resolution`` of a bake whose finest is ``finest``: the
    finest keeps ``baked.`` (so a bake from before levels is its own finest level), coarser ones
    ``baked.r<resolution>.``."""
    return PREFIX if resolution == finest else f"{PREFIX}r{resolution}."


def stored_levels(baked_attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The levels of a version's ``baked`` attribute, coarsest first: dicts with ``prefix``,
    ``resolution``, ``bricks`` and ``nbytes`` (one level for a bake written before levels)."""
    levels = baked_attrs.get("levels")
    if levels:
        return [dict(lv) for lv in levels]
    keys = ("resolution", "bricks", "nbytes")
    return [{"prefix": PREFIX, **{k: baked_attrs[k] for k in keys if k in baked_attrs}}]


def bake_levels(density_fn: DensityFn, resolution: int, cfg: BakeConfig, *, occupied: torch.Tensor | None = None) -> dict[int, BakedGrid]:
    """``bake_field`` at every resolution of ``level_resolutions``: resolution -> grid, coarsest first.

    Each level samples the field at its own vertices (no prefilter), so a level renders like a
    bake made at that resolution."""
    return {r: bake_field(density_fn, r, cfg, occupied=occupied) for r in level_resolutions(resolution, cfg)}


def levels_record(grids: Mapping[int, BakedGrid]) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The arrays of baked levels (resolution -> grid) and their ``levels`` attribute, coarsest first."""
    finest = max(grids)
    arrays: dict[str, np.ndarray] = {}
    levels = []
    for r in sorted(grids):
        prefix = level_prefix(r, finest)
        part = grids[r].to_arrays(prefix)
        arrays.update(part)
        levels.append({"prefix": prefix, "resolution": r, "bricks": int(grids[r].density.shape[0]),
                       "nbytes": int(sum(a.nbytes for a in part.values()))})
    return arrays, levels


def heads_nbytes(model: Any) -> int:
    """Bytes the colour heads a bake renders with hold once loaded (as float32): what every level
    of the bake loads besides its grid."""
    from blocknerf.model.baked_block import HEAD_ARRAYS

    return int(sum(4 * v.numel() for k, v in model.field.state_dict().items() if HEAD_ARRAYS.match(f"field.{k}")))


def bake_block(model: Any, cfg: BakeConfig, *, footprint_m: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Bake a ``BlockModel`` at every level of detail: the baked arrays and the ``baked`` attribute
    of its version (the finest level's figures at the top, each level's under ``levels``)."""
    resolution = bake_resolution(model.bounds.radius, footprint_m, cfg, max_detail=model.model_cfg.hashgrid.max_resolution)
    fld = model.field.to("cpu").eval()
    grids = bake_levels(fld.density, resolution, cfg, occupied=model.occupied.cpu())
    grid = grids[resolution]
    arrays, levels = levels_record(grids)
    attrs = {
        "schema_version": BAKE_SCHEMA,
        "resolution": resolution,
        "brick": cfg.brick,
        "bricks": int(grid.density.shape[0]),
        "footprint_m": round(float(footprint_m), 6),
        "nbytes": int(sum(a.nbytes for a in arrays.values())),
        "heads_nbytes": heads_nbytes(model),
        "levels": levels,
        "config": {k: getattr(cfg, k) for k in ("brick", "voxels_per_pixel", "min_resolution", "max_resolution", "min_alpha", "levels")},
    }
    return arrays, attrs


__all__ = [
    "BAKE_SCHEMA", "bake_block", "bake_field", "bake_levels", "bake_resolution", "candidate_bricks", "frames_footprint_m", "heads_nbytes",
    "level_prefix", "level_resolutions", "levels_record", "pixel_footprint_m", "stored_levels",
]
