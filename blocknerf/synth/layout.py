"""Procedural layout of the synthetic city: streets, lots per block and the buildings on them.

Each block (driven ones and the outer ring) is cut into 2x2, 2x3, 3x2 or 3x3 lots at jittered
positions. Lots on the block's edge face a street and usually carry a building whose front stands at
or near the pavement, with gaps of 1-4 m to its neighbours and a yard behind; some stay empty (grass),
and the middle lot of a 3x3 block is a hidden paved courtyard. A block has 2 to
``max_buildings_per_block`` buildings, and the driven city always keeps at least one empty
street-facing lot, where the change builds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from blocknerf.synth.change import apply_change
from blocknerf.synth.city import Building, City, Lot, Street
from blocknerf.synth.config import SynthConfig
from blocknerf.synth.seeds import SEED_LAYOUT, rng_for

# Facade albedos (sRGB-ish display values): brick, sandstone, cream, concrete, slate blue, olive,
# terracotta, off-white, umber, sage.
FACADE_PALETTE = np.array(
    [
        (0.52, 0.28, 0.22),
        (0.70, 0.61, 0.46),
        (0.76, 0.72, 0.62),
        (0.56, 0.56, 0.55),
        (0.45, 0.54, 0.62),
        (0.50, 0.52, 0.38),
        (0.66, 0.40, 0.28),
        (0.78, 0.78, 0.76),
        (0.40, 0.31, 0.25),
        (0.55, 0.62, 0.52),
    ]
)
LOT_SPLITS = ((2, 2), (2, 3), (3, 2), (3, 3))
LOT_SPLIT_PROBS = (0.45, 0.2, 0.2, 0.15)
MIN_FOOTPRINT_M = 8.0

def build_city(cfg: SynthConfig) -> City:
    """The city of ``cfg.seed``; with ``cfg.change`` the changed city (see ``change.apply_change``)."""
    city = generate_city(dataclasses.replace(cfg, change=False))
    return apply_change(city) if cfg.change else city


def generate_city(cfg: SynthConfig) -> City:
    """The original (unchanged) city of ``cfg.seed``."""
    rng = rng_for(cfg.seed, SEED_LAYOUT)
    probe = City(config=cfg, streets=(), lots=(), buildings=())
    nx, ny = cfg.grid
    x0, y0, x1, y1 = probe.extent_m
    p = cfg.pitch_m
    streets = tuple(Street(f"ns{i}", "ns", _r(x0 + i * p), _r(y0), _r(y1)) for i in range(nx + 1)) + tuple(
        Street(f"ew{j}", "ew", _r(y0 + j * p), _r(x0), _r(x1)) for j in range(ny + 1)
    )
    plans = [
        (i, j, _plan_block(probe.block_rect(i, j), (i, j), cfg, rng))
        for j in range(-1, ny + 1)
        for i in range(-1, nx + 1)
    ]
    _ensure_empty_lot(probe, plans, rng)
    lots: list[Lot] = []
    buildings: list[Building] = []
    for i, j, plan in plans:
        built = 0
        for rect, kind, facing, sides in plan:
            lots.append(Lot((i, j), (_r(rect[0]), _r(rect[1])), (_r(rect[2]), _r(rect[3])), kind, facing))
            if kind == "building":
                buildings.append(_building(f"b{i}_{j}_{built}", rect, sides, cfg, rng))
                built += 1
    return City(config=cfg, streets=streets, lots=tuple(lots), buildings=tuple(buildings))


# A lot plan: (rect (x0, y0, x1, y1), kind, street_facing, sides) where sides says for W, S, E, N
# whether that side of the lot is on the block edge (faces a street).
_LotPlan = tuple[tuple[float, float, float, float], str, bool, tuple[bool, bool, bool, bool]]


def _plan_block(
    rect: tuple[float, float, float, float], block: tuple[int, int], cfg: SynthConfig, rng: np.random.Generator
) -> list[_LotPlan]:
    bx0, by0, bx1, by1 = rect
    kx, ky = LOT_SPLITS[rng.choice(len(LOT_SPLITS), p=LOT_SPLIT_PROBS)]
    xs = _splits(bx0, bx1, kx, rng)
    ys = _splits(by0, by1, ky, rng)
    plan: list[_LotPlan] = []
    for b in range(ky):
        for a in range(kx):
            sides = (a == 0, b == 0, a == kx - 1, b == ky - 1)
            facing = any(sides)
            if not facing:
                kind = "courtyard"
            else:
                kind = "empty" if rng.random() < cfg.empty_lot_prob else "building"
            plan.append(((xs[a], ys[b], xs[a + 1], ys[b + 1]), kind, facing, sides))
    built = [k for k, lot in enumerate(plan) if lot[1] == "building"]
    while len(built) > cfg.max_buildings_per_block:
        drop = built.pop(int(rng.integers(len(built))))
        plan[drop] = (plan[drop][0], "empty", True, plan[drop][3])
    empties = [k for k, lot in enumerate(plan) if lot[1] == "empty"]
    while len(built) < 2 and empties:
        add = empties.pop(int(rng.integers(len(empties))))
        plan[add] = (plan[add][0], "building", True, plan[add][3])
        built.append(add)
    return plan


def _splits(lo: float, hi: float, k: int, rng: np.random.Generator) -> list[float]:
    """k lots between lo and hi with jittered boundaries."""
    size = hi - lo
    inner = [lo + size * (m / k + rng.uniform(-0.25, 0.25) / k) for m in range(1, k)]
    return [lo, *inner, hi]


def _ensure_empty_lot(probe: City, plans: list, rng: np.random.Generator) -> None:
    """The change needs an empty street-facing lot in the driven city: make one if there is none."""
    driven = [(n, plan) for n, (i, j, plan) in enumerate(plans) if probe.is_driven_block((i, j))]
    if any(lot[1] == "empty" for _, plan in driven for lot in plan):
        return
    candidates = [
        (n, k) for n, plan in driven for k, lot in enumerate(plan)
        if lot[1] == "building" and sum(x[1] == "building" for x in plan) > 2
    ]
    n, k = candidates[int(rng.integers(len(candidates)))]
    plan = plans[n][2]
    plan[k] = (plan[k][0], "empty", True, plan[k][3])


def _building(
    name: str,
    rect: tuple[float, float, float, float],
    sides: tuple[bool, bool, bool, bool],
    cfg: SynthConfig,
    rng: np.random.Generator,
) -> Building:
    x0, y0, x1, y1 = rect
    inset = []
    for on_street in sides:
        if on_street:
            inset.append(float(rng.choice([0.0, 0.0, 0.0, 0.5, 1.0, 1.5])))
        else:
            back = rng.uniform(0.5, 2.0) + (rng.uniform(0.0, 8.0) if rng.random() < 0.35 else 0.0)
            inset.append(back)
    # Keep footprints at least MIN_FOOTPRINT_M wide by shrinking the insets proportionally.
    for lo_i, hi_i, length in ((0, 2, x1 - x0), (1, 3, y1 - y0)):
        room = length - MIN_FOOTPRINT_M
        total = inset[lo_i] + inset[hi_i]
        if total > room:
            scale = max(room, 0.0) / total if total > 0 else 0.0
            inset[lo_i] *= scale
            inset[hi_i] *= scale
    w, s, e, n = inset
    height = cfg.min_height_m + (cfg.max_height_m - cfg.min_height_m) * rng.random() ** 1.8
    wall = FACADE_PALETTE[rng.integers(len(FACADE_PALETTE))] * rng.uniform(0.92, 1.08, 3)
    wall = np.clip(wall, 0.05, 0.82)
    if rng.random() < 0.35:
        trim = np.array([0.80, 0.78, 0.72]) * rng.uniform(0.95, 1.0)
    else:
        trim = wall * rng.uniform(0.62, 0.78)
    glass = np.array([0.13, 0.17, 0.23]) + rng.uniform(-0.03, 0.05, 3)
    roof = np.full(3, rng.uniform(0.30, 0.42)) + rng.uniform(-0.02, 0.02, 3)
    floor_m = rng.uniform(3.0, 3.6)
    spacing = rng.uniform(2.4, 3.6)
    return Building(
        name=name,
        lo=(_r(x0 + w), _r(y0 + s)),
        hi=(_r(x1 - e), _r(y1 - n)),
        height_m=_r(height),
        wall_rgb=_rgb(wall),
        trim_rgb=_rgb(trim),
        glass_rgb=_rgb(glass),
        roof_rgb=_rgb(roof),
        floor_m=_r(floor_m),
        ground_floor_m=_r(rng.uniform(3.8, 4.8)),
        window_w_m=_r(spacing * rng.uniform(0.42, 0.6)),
        window_h_m=_r(floor_m * rng.uniform(0.42, 0.58)),
        window_spacing_m=_r(spacing),
        key=int(rng.integers(0, 2**31 - 1)),
    )


def _r(v: float) -> float:
    """Round to 0.1 mm: tidy JSON, and exact through a JSON round trip."""
    return round(float(v), 4)


def _rgb(v: np.ndarray) -> tuple[float, float, float]:
    return (_r(v[0]), _r(v[1]), _r(v[2]))


__all__ = ["FACADE_PALETTE", "generate_city", "rng_for"]
