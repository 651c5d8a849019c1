"""The city compiled for rendering: boxes with packed material parameters, grouped into clusters.

Buildings and props become axis-aligned boxes. Boxes are grouped by the block cell (a block plus
half of each surrounding street) that holds their centre; the caster visits clusters front to back
and tests a cluster's boxes only for rays that enter its bounding box before anything nearer, so the
cost grows with what a camera sees, not with the size of the city.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from blocknerf.synth.city import City

KIND_BUILDING, KIND_BARRIER, KIND_CONE, KIND_FENCE, KIND_CABIN = 0, 1, 2, 3, 4
PROP_KINDS = {"barrier": KIND_BARRIER, "cone": KIND_CONE, "fence": KIND_FENCE, "cabin": KIND_CABIN}

# Columns of Scene.params (per box). Props use the first two colours only.
P_WALL, P_TRIM, P_GLASS, P_ROOF = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)
P_FLOOR, P_GROUND_FLOOR, P_WIN_W, P_WIN_H, P_SPACING, P_KEY = 12, 13, 14, 15, 16, 17
N_PARAMS = 18


@dataclass(frozen=True, eq=False)
class Cluster:
    """Boxes that share a bounding box."""

    lo: np.ndarray
    """(3,) float32 corner of the cluster's bounding box."""
    hi: np.ndarray
    """(3,) float32 opposite corner."""
    box_lo: np.ndarray
    """(K, 3) float32 member boxes."""
    box_hi: np.ndarray
    """(K, 3) float32."""
    members: np.ndarray
    """(K,) int32 indices into the scene's boxes."""


@dataclass(frozen=True, eq=False)
class GroundLayout:
    """What the ground shader needs to know about the street grid."""

    nx: int
    ny: int
    pitch_m: float
    x0: float
    """x of north-south street 0 (the western outer street)."""
    y0: float
    """y of east-west street 0 (the southern outer street)."""
    road_half_m: float
    """Half the carriageway: centre line to kerb."""
    street_half_m: float
    """Half the street: centre line to building line."""
    ring: tuple[float, float, float, float]
    """(x0, y0, x1, y1) of the built-up area; outside it lies open ground crossed by the roads."""
    grass: np.ndarray
    """(nx + 2, ny + 2, K, 4) float32 [x0, y0, x1, y1] of the empty lots of each block (ring
    blocks included, offset by one); unused slots are zero-area rectangles."""


@dataclass(frozen=True, eq=False)
class Scene:
    """Arrays for ray casting and shading a city."""

    box_lo: np.ndarray
    """(B, 3) float32."""
    box_hi: np.ndarray
    """(B, 3) float32."""
    kind: np.ndarray
    """(B,) int8: KIND_*."""
    params: np.ndarray
    """(B, N_PARAMS) float32 material parameters (see the P_* columns)."""
    clusters: tuple[Cluster, ...]
    cluster_lo: np.ndarray
    """(C, 3) float32."""
    cluster_hi: np.ndarray
    """(C, 3) float32."""
    bounds_lo: np.ndarray
    """(3,) float32 bounding box of every box."""
    bounds_hi: np.ndarray
    ground: GroundLayout


@functools.lru_cache(maxsize=4)
def compile_scene(city: City) -> Scene:
    """Pack a city's buildings and props into a Scene (cached per city object: ``City`` compares
    by identity, so a few recently rendered cities keep their scenes)."""
    cfg = city.config
    lo, hi, kind, params = [], [], [], []
    for b in city.buildings:
        lo.append((b.lo[0], b.lo[1], 0.0))
        hi.append((b.hi[0], b.hi[1], b.height_m))
        kind.append(KIND_BUILDING)
        params.append(
            [*b.wall_rgb, *b.trim_rgb, *b.glass_rgb, *b.roof_rgb, b.floor_m, b.ground_floor_m,
             b.window_w_m, b.window_h_m, b.window_spacing_m, float(b.key % (1 << 24))]
        )
    for p in city.props:
        lo.append(p.lo)
        hi.append(p.hi)
        kind.append(PROP_KINDS[p.kind])
        params.append([*p.rgb, *p.rgb2] + [0.0] * (N_PARAMS - 6))
    box_lo = np.array(lo, dtype=np.float32).reshape(-1, 3)
    box_hi = np.array(hi, dtype=np.float32).reshape(-1, 3)

    x0, y0, _, _ = city.extent_m
    pitch = cfg.pitch_m
    centre = 0.5 * (box_lo + box_hi)
    cell = np.floor((centre[:, :2] - np.array([x0, y0]) + 0.5 * pitch) / pitch).astype(np.int64)
    clusters = []
    for key in sorted({tuple(c) for c in cell.tolist()}):
        members = np.flatnonzero((cell == np.array(key)).all(axis=1)).astype(np.int32)
        clusters.append(
            Cluster(
                lo=box_lo[members].min(axis=0), hi=box_hi[members].max(axis=0),
                box_lo=box_lo[members], box_hi=box_hi[members], members=members,
            )
        )
    nx, ny = cfg.grid
    grass_by_block: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}
    for lot in city.lots:
        if lot.kind == "empty":
            grass_by_block.setdefault(tuple(lot.block), []).append((*lot.lo, *lot.hi))
    k = max([len(v) for v in grass_by_block.values()] + [1])
    grass = np.zeros((nx + 2, ny + 2, k, 4), dtype=np.float32)  # unused slots: zero-area rectangles
    for (i, j), rects in grass_by_block.items():
        grass[i + 1, j + 1, : len(rects)] = rects
    ground = GroundLayout(
        nx=nx, ny=ny, pitch_m=pitch, x0=x0, y0=y0,
        road_half_m=0.5 * cfg.carriageway_m, street_half_m=0.5 * cfg.street_width_m,
        ring=city.ring_extent_m, grass=grass,
    )
    empty = np.zeros((0, 3), dtype=np.float32)
    return Scene(
        box_lo=box_lo,
        box_hi=box_hi,
        kind=np.array(kind, dtype=np.int8),
        params=np.array(params, dtype=np.float32).reshape(-1, N_PARAMS),
        clusters=tuple(clusters),
        cluster_lo=np.array([c.lo for c in clusters], dtype=np.float32).reshape(-1, 3) if clusters else empty,
        cluster_hi=np.array([c.hi for c in clusters], dtype=np.float32).reshape(-1, 3) if clusters else empty,
        bounds_lo=box_lo.min(axis=0) if len(box_lo) else np.zeros(3, np.float32),
        bounds_hi=box_hi.max(axis=0) if len(box_hi) else np.zeros(3, np.float32),
        ground=ground,
    )


__all__ = ["Cluster", "GroundLayout", "Scene", "compile_scene"]
