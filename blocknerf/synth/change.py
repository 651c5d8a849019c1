"""The changed city: what a re-capture months later finds different.

Two changes, both drawn from the seed (an independent random stream, so the original city is the
same whether or not the change is drawn):

- ``new_building``: a modern glass-fronted building on one of the driven city's empty street-facing
  lots (the lot becomes a built lot);
- ``construction``: a works site on one street segment between two intersections, on one side: a
  2 m site hoarding on the pavement, a site cabin behind it, a row of red-and-white barriers and
  traffic cones in the kerb lane. It stays clear of the driven and the offset camera paths.

Each change is recorded as a ``ChangeRegion`` (a disc in x, y containing everything it altered);
outside those discs the two cities are identical, surface for surface.
"""

from __future__ import annotations

import dataclasses
import math

from blocknerf.synth.city import Building, ChangeRegion, City, Lot, Prop
from blocknerf.synth.seeds import SEED_CHANGE, rng_for

# Works site layout along the street (metres from the site centre) and across it (metres from the
# street centre line, towards the site's side).
SITE_HALF_M = 10.0
CONE_STOPS_M = (8.0, 9.5, 11.0)
BARRIER_LEN_M, BARRIER_GAP_M, N_BARRIERS = 2.4, 0.2, 5
MIN_REGION_GAP_M = 40.0


def apply_change(city: City) -> City:
    """``city`` with a new building and a works site added (see the module docstring); the same
    city after the change. Everything else is identical."""
    cfg = city.config
    if cfg.change:
        raise ValueError("this city is already the changed one")
    rng = rng_for(cfg.seed, SEED_CHANGE)
    empties = [
        n for n, lot in enumerate(city.lots)
        if lot.kind == "empty" and lot.street_facing and city.is_driven_block(lot.block)
    ]
    if not empties:
        raise ValueError("the city has no empty street-facing lot to build on")
    n = empties[int(rng.integers(len(empties)))]
    lot = city.lots[n]
    building, building_region = _new_building(lot, rng)
    lots = list(city.lots)
    lots[n] = dataclasses.replace(lot, kind="building")

    props, site_region = _works_site(city, building_region, rng)
    return dataclasses.replace(
        city,
        config=dataclasses.replace(cfg, change=True),
        lots=tuple(lots),
        buildings=(*city.buildings, building),
        props=(*city.props, *props),
        change_regions=(*city.change_regions, building_region, site_region),
    )


def _new_building(lot: Lot, rng) -> tuple[Building, ChangeRegion]:  # noqa: ANN001
    inset = 1.0
    x0, y0, x1, y1 = lot.lo[0] + inset, lot.lo[1] + inset, lot.hi[0] - inset, lot.hi[1] - inset
    floor_m = 3.4
    building = Building(
        name="new_building",
        lo=(round(x0, 4), round(y0, 4)),
        hi=(round(x1, 4), round(y1, 4)),
        height_m=round(float(rng.uniform(16.0, 28.0)), 4),
        wall_rgb=(0.60, 0.63, 0.66),
        trim_rgb=(0.33, 0.35, 0.38),
        glass_rgb=(0.22, 0.32, 0.42),
        roof_rgb=(0.45, 0.45, 0.46),
        floor_m=floor_m,
        ground_floor_m=4.5,
        window_w_m=1.5,
        window_h_m=round(0.7 * floor_m, 4),
        window_spacing_m=2.0,
        key=int(rng.integers(0, 2**31 - 1)),
    )
    cx, cy = 0.5 * (lot.lo[0] + lot.hi[0]), 0.5 * (lot.lo[1] + lot.hi[1])
    radius = 0.5 * math.hypot(lot.hi[0] - lot.lo[0], lot.hi[1] - lot.lo[1]) + 1.0
    return building, ChangeRegion((round(cx, 4), round(cy, 4)), round(radius, 4), "new_building")


def _works_site(city: City, avoid: ChangeRegion, rng) -> tuple[list[Prop], ChangeRegion]:  # noqa: ANN001
    cfg = city.config
    hr, hw, pitch = 0.5 * cfg.carriageway_m, 0.5 * cfg.street_width_m, cfg.pitch_m
    candidates = []
    for street in city.streets:
        n_segments = int(round((street.end_m - street.start_m) / pitch))
        for k in range(n_segments):
            for side in (1, -1):
                along = street.start_m + (k + 0.5) * pitch
                centre = _site_xy(street, side, along, hr + 1.5)
                gap = math.dist(centre, avoid.centre_xy) - avoid.radius_m
                candidates.append((gap >= MIN_REGION_GAP_M, street, side, along, centre))
    far = [c for c in candidates if c[0]]
    pool = far or candidates
    _, street, side, along, centre = pool[int(rng.integers(len(pool)))]

    def box(lat0: float, lat1: float, s0: float, s1: float, z1: float) -> tuple[tuple, tuple]:
        a, b = _site_xy(street, side, along + s0, lat0), _site_xy(street, side, along + s1, lat1)
        lo = (round(min(a[0], b[0]), 4), round(min(a[1], b[1]), 4), 0.0)
        hi = (round(max(a[0], b[0]), 4), round(max(a[1], b[1]), 4), z1)
        return lo, hi

    fence_rgb, post_rgb = (0.18, 0.36, 0.26), (0.62, 0.63, 0.62)
    props = [
        Prop("fence_front", "fence", *box(hr + 0.4, hr + 0.55, -SITE_HALF_M, SITE_HALF_M, 2.0), fence_rgb, post_rgb),
        Prop("fence_end_a", "fence", *box(hr + 0.4, hw - 0.2, -SITE_HALF_M - 0.15, -SITE_HALF_M, 2.0),
             fence_rgb, post_rgb),
        Prop("fence_end_b", "fence", *box(hr + 0.4, hw - 0.2, SITE_HALF_M, SITE_HALF_M + 0.15, 2.0),
             fence_rgb, post_rgb),
        Prop("cabin", "cabin", *box(hr + 1.3, hr + 3.7, -7.0, -1.0, 2.6), (0.85, 0.68, 0.12), (0.25, 0.27, 0.30)),
    ]
    start = -0.5 * (N_BARRIERS * BARRIER_LEN_M + (N_BARRIERS - 1) * BARRIER_GAP_M)
    for k in range(N_BARRIERS):
        s0 = start + k * (BARRIER_LEN_M + BARRIER_GAP_M)
        props.append(Prop(f"barrier_{k}", "barrier", *box(hr - 0.9, hr - 0.4, s0, s0 + BARRIER_LEN_M, 0.95),
                          (0.75, 0.14, 0.10), (0.85, 0.85, 0.82)))
    for k, s in enumerate(s for stop in CONE_STOPS_M for s in (-stop, stop)):
        props.append(Prop(f"cone_{k}", "cone", *box(hr - 0.85, hr - 0.45, s - 0.2, s + 0.2, 0.75),
                          (0.92, 0.42, 0.08), (0.90, 0.90, 0.88)))
    # Everything lies within max(CONE_STOPS_M) + 0.2 along and [hr - 0.9, hw - 0.2] across.
    half_along = max(CONE_STOPS_M) + 0.2
    half_across = max(hr + 1.5 - (hr - 0.9), (hw - 0.2) - (hr + 1.5))
    radius = math.hypot(half_along, half_across) + 1.0
    region = ChangeRegion((round(centre[0], 4), round(centre[1], 4)), round(radius, 4), "construction")
    return props, region


def _site_xy(street, side: int, along: float, lateral: float) -> tuple[float, float]:  # noqa: ANN001
    """(x, y) at ``along`` the street and ``lateral`` metres from its centre line on ``side``."""
    if street.axis == "ns":
        return (street.offset_m + side * lateral, along)
    return (along, street.offset_m + side * lateral)


__all__ = ["apply_change"]
