"""Shading of the synthetic city: sky gradient, ground (roads, markings, pavements, lots), facades
with windows, and the construction props.

Lighting is view-independent (so that a NeRF can reproduce it): Lambert with a fixed sun plus a sky
ambient term that favours upward faces; no shadows. Every texture is a box-filtered pattern
(``blocknerf.synth.patterns``) evaluated over the sample's footprint on the surface. Features are
mostly 0.5-3 m (windows, lane dashes, zebra stripes, paving slabs); the finest are 0.3 m line
markings and the 0.15 m posts of the works-site hoarding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from blocknerf.synth import patterns as pat
from blocknerf.synth.scene import (
    KIND_BARRIER, KIND_BUILDING, KIND_CABIN, KIND_CONE, KIND_FENCE, P_FLOOR, P_GLASS, P_GROUND_FLOOR, P_KEY, P_ROOF,
    P_SPACING, P_TRIM, P_WALL, P_WIN_H, P_WIN_W, GroundLayout, Scene,
)

if TYPE_CHECKING:
    from blocknerf.synth.raycast import Hits

SUN_DIR = np.array([0.32, -0.557, 0.766], dtype=np.float32) / np.float32(np.linalg.norm([0.32, -0.557, 0.766]))
"""Unit vector towards the sun: south-south-east, 50 degrees up."""
AMBIENT = 0.70
SUN = 0.55
SKY_ZENITH = np.array([0.30, 0.47, 0.78], dtype=np.float32)
SKY_HORIZON = np.array([0.74, 0.80, 0.86], dtype=np.float32)

ASPHALT = np.array([0.27, 0.27, 0.29], dtype=np.float32)
MARKING_WHITE = np.array([0.80, 0.80, 0.78], dtype=np.float32)
MARKING_YELLOW = np.array([0.80, 0.63, 0.16], dtype=np.float32)
CONCRETE = np.array([0.55, 0.54, 0.51], dtype=np.float32)
KERB = np.array([0.68, 0.68, 0.66], dtype=np.float32)
PAVING = np.array([0.50, 0.46, 0.41], dtype=np.float32)
GRASS = np.array([0.30, 0.43, 0.20], dtype=np.float32)
FIELD = np.array([0.46, 0.47, 0.31], dtype=np.float32)

LANE_W = 3.0
LINE_W = 0.3
DASH_M, DASH_PERIOD_M = 3.0, 9.0
ZEBRA_W, ZEBRA_PERIOD = 0.6, 1.2
SLAB_M = 1.5
KERB_W = 0.35
CORNICE_M, PLINTH_M, STRING_M = 0.7, 0.45, 0.35


def sky_colour(dirs: np.ndarray) -> np.ndarray:
    """(N, 3) float32 sky radiance for (N, 3) unit directions: horizon haze to zenith blue."""
    up = np.sqrt(np.clip(dirs[:, 2], 0.0, 1.0))[:, None]
    return (SKY_HORIZON + (SKY_ZENITH - SKY_HORIZON) * up).astype(np.float32)


def lambert(normals: np.ndarray) -> np.ndarray:
    """(N,) irradiance factor of (N, 3) unit normals: sky ambient (more from above) + sun."""
    sky = AMBIENT * (0.75 + 0.25 * normals[:, 2])
    sun = normals[:, 0] * SUN_DIR[0] + normals[:, 1] * SUN_DIR[1] + normals[:, 2] * SUN_DIR[2]
    return (sky + SUN * np.maximum(sun, 0.0)).astype(np.float32)


def shade(scene: Scene, origin: np.ndarray, dirs: np.ndarray, hits: Hits, footprint_rad: np.ndarray) -> np.ndarray:
    """(N, 3) float32 radiance where (N, 3) unit rays from ``origin`` end (``hits``).

    ``footprint_rad`` (N,) is the angular width of each sample's filter box: textures are averaged
    over ``t * footprint_rad`` around the hit point.
    """
    out = np.empty((len(dirs), 3), dtype=np.float32)
    sky = np.flatnonzero(hits.surface == 0)
    out[sky] = sky_colour(dirs[sky])
    ground = np.flatnonzero(hits.surface == 1)
    if ground.size:
        d = dirs[ground]
        tg = hits.t[ground]
        x = origin[0] + tg * d[:, 0]
        y = origin[1] + tg * d[:, 1]
        wx, wy = _footprint(tg * footprint_rad[ground], d[:, 0], d[:, 1], np.abs(d[:, 2]))
        albedo = ground_albedo(scene.ground, x, y, wx, wy)
        out[ground] = albedo * np.float32(AMBIENT + SUN * SUN_DIR[2])
    boxes = np.flatnonzero(hits.surface == 2)
    if boxes.size:
        out[boxes] = _shade_boxes(
            scene, origin, dirs[boxes], hits.t[boxes], hits.box[boxes], hits.face[boxes], footprint_rad[boxes]
        )
    return out


def _footprint(size: np.ndarray, du: np.ndarray, dv: np.ndarray, cos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Extent along the surface axes u and v of a pixel cone of width ``size`` at the hit.

    ``du``, ``dv`` are the ray direction's components along the axes and ``cos`` its cosine to the
    normal: the footprint is ``size`` across and ``size / cos`` along the ray's projection, so
    its extent along u is ``size * sqrt(1 + du^2 / cos^2)``.
    """
    inv_cos2 = 1.0 / np.maximum(cos, 0.02) ** 2
    return size * np.sqrt(1.0 + du * du * inv_cos2), size * np.sqrt(1.0 + dv * dv * inv_cos2)


# -- ground --------------------------------------------------------------------------------------


def ground_albedo(g: GroundLayout, x: np.ndarray, y: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """(N, 3) albedo of the ground at (x, y), box-filtered over (wx, wy)."""
    p = g.pitch_m
    i = np.floor((x - g.x0) / p + 0.5)
    j = np.floor((y - g.y0) / p + 0.5)
    ox = (x - (g.x0 + i * p)).astype(np.float32)  # signed offset from the nearest NS centre line
    oy = (y - (g.y0 + j * p)).astype(np.float32)
    ns_on = ((i >= 0) & (i <= g.nx)).astype(np.float32)
    ew_on = ((j >= 0) & (j <= g.ny)).astype(np.float32)
    rx0, ry0, rx1, ry1 = g.ring
    inside = pat.band(x, wx, rx0, rx1) * pat.band(y, wy, ry0, ry1)
    hr, hw = g.road_half_m, g.street_half_m

    road_ns = ns_on * pat.band(ox, wx, -hr, hr)
    road_ew = ew_on * pat.band(oy, wy, -hr, hr)
    road = 1.0 - (1.0 - road_ns) * (1.0 - road_ew)
    zone = 1.0 - (1.0 - ns_on * pat.band(ox, wx, -hw, hw)) * (1.0 - ew_on * pat.band(oy, wy, -hw, hw))
    pavement = inside * np.clip(zone - road, 0.0, 1.0)
    lot = inside * (1.0 - zone)
    field = (1.0 - inside) * (1.0 - road)

    # Roads: weathered asphalt with markings along each street direction.
    var = pat.smooth_variation(x, y)
    asphalt = ASPHALT * (1.0 + 0.06 * var)[:, None]
    white_ns, yellow_ns = _markings(ox, wx, oy, wy, y, ew_on, hr, hw)
    white_ew, yellow_ew = _markings(oy, wy, ox, wx, x, ns_on, hr, hw)
    white = np.clip(road_ns * white_ns + road_ew * white_ew, 0.0, 1.0)[:, None]
    yellow = np.clip(road_ns * yellow_ns + road_ew * yellow_ew, 0.0, 1.0)[:, None]
    road_rgb = asphalt + (MARKING_WHITE - asphalt) * white
    road_rgb = road_rgb + (MARKING_YELLOW - road_rgb) * yellow

    # Pavements: concrete slabs in a faint checker, a light kerb stone along the road.
    slabs = pat.checker(x, wx, y, wy, SLAB_M)
    concrete = CONCRETE * (1.0 + 0.035 * var + 0.06 * (slabs - 0.5))[:, None]
    kerb = np.maximum(
        ns_on * pat.band(np.abs(ox), wx, hr, hr + KERB_W), ew_on * pat.band(np.abs(oy), wy, hr, hr + KERB_W)
    )
    pave_rgb = concrete + (KERB - concrete) * kerb[:, None]

    # Lots: paved yards, grass on empty lots; open ground beyond the city.
    lot_rgb = np.broadcast_to(PAVING, (len(x), 3)).copy()
    has_lot = np.flatnonzero(lot > 0.0)
    if has_lot.size:
        bi = np.clip(np.floor((x[has_lot] - g.x0) / p).astype(np.int64) + 1, 0, g.nx + 1)
        bj = np.clip(np.floor((y[has_lot] - g.y0) / p).astype(np.int64) + 1, 0, g.ny + 1)
        rects = g.grass[bi, bj]  # (M, K, 4); the empty lots of a block do not overlap
        px, py, pwx, pwy = x[has_lot], y[has_lot], wx[has_lot], wy[has_lot]
        grass = np.zeros(has_lot.size, dtype=np.float32)
        for r in range(rects.shape[1]):
            x0, y0, x1, y1 = (rects[:, r, c] for c in range(4))
            grass += pat.band(px, pwx, x0, x1) * pat.band(py, pwy, y0, y1)
        var2 = pat.smooth_variation(px, py, salt=1.7)[:, None]
        grass = np.clip(grass, 0.0, 1.0)[:, None]
        paving = PAVING * (1.0 + 0.04 * var2)
        lot_rgb[has_lot] = paving + (GRASS * (1.0 + 0.12 * var2) - paving) * grass
    field_rgb = FIELD * (1.0 + 0.08 * pat.smooth_variation(x, y, salt=3.1))[:, None]

    rgb = (
        road[:, None] * road_rgb + pavement[:, None] * pave_rgb + lot[:, None] * lot_rgb + field[:, None] * field_rgb
    )
    return rgb.astype(np.float32)


def _markings(
    lat: np.ndarray, w_lat: np.ndarray, across: np.ndarray, w_across: np.ndarray, along: np.ndarray,
    cross_on: np.ndarray, hr: float, hw: float,
) -> tuple[np.ndarray, np.ndarray]:
    """White and yellow paint coverage of one street direction.

    ``lat`` is the signed offset from this street's centre line, ``across`` the signed offset from
    the nearest crossing street's centre line (whose existence is ``cross_on``), ``along`` the
    coordinate along this street. Right-hand traffic: the lanes with lat > 0 run towards +along.
    """
    a_across = np.abs(across)
    # Lane markings stop before intersections (after the stop line), where a crossing street exists.
    away = 1.0 - cross_on * (1.0 - pat.step(a_across, w_across, hw + 1.0))
    yellow = away * pat.pulses(lat, w_lat, start=-1.5 * LINE_W, width=LINE_W, period=2.0 * LINE_W, count=2)
    lanes = pat.pulses(lat, w_lat, start=-LANE_W - 0.5 * LINE_W, width=LINE_W, period=2.0 * LANE_W, count=2)
    dashes = pat.pulses(along, w_across, start=0.0, width=DASH_M, period=DASH_PERIOD_M)
    white = away * lanes * dashes
    # Stop line across the approaching lanes, then a zebra crossing in line with the pavements.
    approaching = (lat * across < 0.0).astype(np.float32)
    stop = cross_on * approaching * pat.band(a_across, w_across, hw + 0.3, hw + 0.8)
    stop = stop * pat.band(np.abs(lat), w_lat, 2.0 * LINE_W, hr - 0.3)
    count = np.floor((2.0 * hr - 1.0 + ZEBRA_W) / ZEBRA_PERIOD)
    zebra_start = -0.5 * (count * ZEBRA_PERIOD - (ZEBRA_PERIOD - ZEBRA_W))
    zebra = cross_on * pat.band(a_across, w_across, hr + 0.6, hw - 0.6)
    zebra = zebra * pat.pulses(lat, w_lat, start=zebra_start, width=ZEBRA_W, period=ZEBRA_PERIOD, count=count)
    return np.clip(white + stop + zebra, 0.0, 1.0), yellow


# -- boxes ---------------------------------------------------------------------------------------


def _shade_boxes(
    scene: Scene, origin: np.ndarray, d: np.ndarray, t: np.ndarray, box: np.ndarray, face: np.ndarray,
    footprint_rad: np.ndarray,
) -> np.ndarray:
    lo, hi = scene.box_lo[box], scene.box_hi[box]
    comp = [np.ascontiguousarray(d[:, a]) for a in range(3)]
    axis = face // 2
    on_x, on_top = axis == 0, axis == 2
    sign = np.where(face % 2 == 1, np.float32(1.0), np.float32(-1.0))  # of the face normal along its axis
    sun = sign * np.where(on_x, SUN_DIR[0], np.where(on_top, SUN_DIR[2], SUN_DIR[1]))
    light = AMBIENT * (0.75 + 0.25 * np.where(on_top, sign, np.float32(0.0))) + SUN * np.maximum(sun, 0.0)
    px = origin[0] + t * comp[0]
    py = origin[1] + t * comp[1]
    pz = origin[2] + t * comp[2]
    # Face coordinates: u runs along the face horizontally (from the box's low corner), v up from
    # the box's base; on top faces u = x and v = y.
    u = np.where(on_x, py - lo[:, 1], px - lo[:, 0])
    face_w = np.where(on_x, hi[:, 1] - lo[:, 1], hi[:, 0] - lo[:, 0])
    v = np.where(on_top, py - lo[:, 1], pz - lo[:, 2])
    du = np.where(on_x, comp[1], comp[0])
    dv = np.where(on_top, comp[1], comp[2])
    d_axis = np.where(on_x, comp[0], np.where(on_top, comp[2], comp[1]))
    wu, wv = _footprint(t * footprint_rad, du, dv, np.abs(d_axis))
    height = hi[:, 2] - lo[:, 2]
    face = face.astype(np.int64)
    kind = scene.kind[box]
    albedo = np.empty_like(d)
    for k, shader in _BOX_SHADERS.items():
        sel = np.flatnonzero(kind == k)
        if sel.size == len(box):
            albedo[:] = shader(scene.params[box], u, wu, v, wv, face_w, height, on_top, face)
        elif sel.size:
            albedo[sel] = shader(
                scene.params[box[sel]], u[sel], wu[sel], v[sel], wv[sel], face_w[sel], height[sel], on_top[sel],
                face[sel],
            )
    return (albedo * light[:, None]).astype(np.float32)


def _facade(
    prm: np.ndarray, u: np.ndarray, wu: np.ndarray, v: np.ndarray, wv: np.ndarray, face_w: np.ndarray,
    height: np.ndarray, top: np.ndarray, face: np.ndarray,
) -> np.ndarray:
    """Building walls: storeys of windows, shop windows, plinth, string course and cornice; roofs."""
    floor_m, ground_m = prm[:, P_FLOOR], prm[:, P_GROUND_FLOOR]
    win_w, win_h, spacing = prm[:, P_WIN_W], prm[:, P_WIN_H], prm[:, P_SPACING]
    wall, trim, glass, roof = prm[:, P_WALL], prm[:, P_TRIM], prm[:, P_GLASS], prm[:, P_ROOF]

    n_cols = np.maximum(1.0, np.floor((face_w - 1.0) / spacing))
    first = 0.5 * (face_w - (n_cols - 1.0) * spacing)  # centre of the first window column
    cols = pat.pulses(u, wu, start=first - 0.5 * win_w, width=win_w, period=spacing, count=n_cols)
    n_up = np.maximum(0.0, np.floor((height - ground_m - CORNICE_M) / floor_m))
    sill = 0.45 * (floor_m - win_h)
    rows = pat.pulses(v, wv, start=ground_m + sill, width=win_h, period=floor_m, count=n_up)
    shop_w = np.minimum(0.8 * spacing, spacing - 0.4)
    shop_cols = pat.pulses(u, wu, start=first - 0.5 * shop_w, width=shop_w, period=spacing, count=n_cols)
    shop = shop_cols * pat.band(v, wv, PLINTH_M + 0.15, ground_m - STRING_M - 0.3)
    windows = np.clip(cols * rows + shop, 0.0, 1.0)
    trim_cover = np.clip(
        pat.band(v, wv, height - CORNICE_M, height + 1.0)
        + pat.band(v, wv, -1.0, PLINTH_M)
        + pat.band(v, wv, ground_m - STRING_M, ground_m),
        0.0,
        1.0,
    )
    # Each window pane a little lighter or darker; the variation fades once a subpixel covers
    # several windows, so that distant facades do not sparkle.
    col_i = np.clip(np.floor((u - first) / spacing + 0.5), 0.0, n_cols - 1.0)
    row_i = np.where(v < ground_m, -1.0, np.floor((v - ground_m) / floor_m))  # ground floor: row -1
    jitter = pat.hash01(prm[:, P_KEY].astype(np.int64), col_i.astype(np.int64), row_i.astype(np.int64), face)
    fade = np.clip(1.0 - np.maximum(wu / spacing, wv / floor_m), 0.0, 1.0)
    pane = glass * (1.0 + (0.55 * jitter - 0.2) * fade)[:, None]

    rgb = wall + (trim - wall) * trim_cover[:, None]
    rgb = rgb + (pane - rgb) * windows[:, None]
    return np.where(top[:, None], roof, rgb)


def _barrier(prm, u, wu, v, wv, face_w, height, top, face) -> np.ndarray:  # noqa: ANN001
    """Red and white stripes 0.5 m wide along the barrier."""
    stripes = pat.pulses(u, wu, start=0.0, width=0.5, period=1.0)
    stripes = np.where(top, 0.5, stripes)
    return prm[:, 0:3] + (prm[:, 3:6] - prm[:, 0:3]) * stripes[:, None]


def _cone(prm, u, wu, v, wv, face_w, height, top, face) -> np.ndarray:  # noqa: ANN001
    """Orange with a white reflective band."""
    stripe = np.where(top, 0.0, pat.band(v, wv, 0.35, 0.55))
    return prm[:, 0:3] + (prm[:, 3:6] - prm[:, 0:3]) * stripe[:, None]


def _fence(prm, u, wu, v, wv, face_w, height, top, face) -> np.ndarray:  # noqa: ANN001
    """Site hoarding: green panels, grey posts every 2.5 m and a top rail."""
    posts = pat.pulses(u, wu, start=0.0, width=0.15, period=2.5)
    rail = pat.band(v, wv, height - 0.2, height + 1.0)
    cover = np.where(top, 1.0, np.clip(posts + rail, 0.0, 1.0))
    return prm[:, 0:3] + (prm[:, 3:6] - prm[:, 0:3]) * cover[:, None]


def _cabin(prm, u, wu, v, wv, face_w, height, top, face) -> np.ndarray:  # noqa: ANN001
    """Site cabin: a door and a window on each side."""
    door = pat.band(u, wu, 0.8, 1.8) * pat.band(v, wv, 0.0, 2.0)
    window = pat.band(u, wu, face_w - 2.2, face_w - 0.8) * pat.band(v, wv, 1.0, 1.9)
    cover = np.where(top, 0.0, np.clip(door + window, 0.0, 1.0))
    return prm[:, 0:3] + (prm[:, 3:6] - prm[:, 0:3]) * cover[:, None]


_BOX_SHADERS = {
    KIND_BUILDING: _facade,
    KIND_BARRIER: _barrier,
    KIND_CONE: _cone,
    KIND_FENCE: _fence,
    KIND_CABIN: _cabin,
}

__all__ = ["SUN_DIR", "ground_albedo", "lambert", "shade", "sky_colour"]
