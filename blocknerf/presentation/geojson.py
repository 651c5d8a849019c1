"""Block footprints on the map: GeoJSON (RFC 7946, WGS84) and block rows with latitude/longitude.

The plan's world frame is ENU metres at its geo origin; each block's disc becomes a polygon of
``segments`` vertices converted to WGS84 with ``GeoFrame`` (pyproj). The result opens in QGIS or
geojson.io. A plan without a geo origin has no place on Earth: ``plan_to_geojson`` raises
``NoGeoOriginError`` (an ``InputError`` and a ``ValueError``), and ``block_rows`` leaves lat/lon None.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from blocknerf.errors import InputError
from blocknerf.capture.geo import LLA, GeoFrame
from partitioning.plan import BlockPlan

COORD_DECIMALS = 7
"""Decimal places of longitude/latitude in the output (about 1 cm), as RFC 7946 advises to limit."""


class NoGeoOriginError(InputError, ValueError):
    """The plan (capture) has no geo origin, so its blocks cannot be placed on a map."""

    def __init__(self, what: str = "the plan") -> None:
        super().__init__(None, f"{what} has no geo origin (the capture has no GPS), so there are no lat/lon footprints")


def plan_geo_frame(plan: BlockPlan) -> GeoFrame | None:
    """The ENU frame of the plan's world, or None when it has no geo origin."""
    return None if plan.geo_origin is None else GeoFrame(LLA(*plan.geo_origin))


def _plan_to_enu(plan: BlockPlan, points: np.ndarray) -> np.ndarray:
    """Plan coordinates ``(..., 3)`` -> the capture's world (ENU) coordinates."""
    m = plan.world_transform_array
    if np.array_equal(m, np.eye(4)):
        return points
    inv = np.linalg.inv(m)
    return points @ inv[:3, :3].T + inv[:3, 3]


def plan_to_geojson(plan: BlockPlan, *, segments: int = 64) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the block footprints in WGS84.

    Each block is a Feature with a Polygon (its disc as a ``segments``-gon, counter-clockwise, closed,
    ``[lon, lat]``) and properties ``id, radius_m, frames, center_lat, center_lon, center_alt,
    z_min, z_max, neighbors, overlap``. Raises ``NoGeoOriginError`` without a geo origin.
    """
    geo = plan_geo_frame(plan)
    if geo is None:
        raise NoGeoOriginError()
    if segments < 8:
        raise ValueError("segments must be at least 8")
    theta = 2.0 * math.pi * np.arange(segments) / segments
    unit = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    features = []
    west, south, east, north = math.inf, math.inf, -math.inf, -math.inf
    for b in plan.blocks:
        ring = np.empty((segments + 1, 3))
        ring[:segments, :2] = np.asarray(b.center[:2]) + b.radius_m * unit
        ring[:segments, 2] = b.center[2]
        ring[segments] = ring[0]
        lla = geo.enu_to_lla(_plan_to_enu(plan, np.vstack([ring, np.asarray(b.center)])))
        lon_lat = np.round(lla[:-1, [1, 0]], COORD_DECIMALS)
        lon_lat[-1] = lon_lat[0]  # closed exactly, whatever the rounding
        west, east = min(west, lon_lat[:, 0].min()), max(east, lon_lat[:, 0].max())
        south, north = min(south, lon_lat[:, 1].min()), max(north, lon_lat[:, 1].max())
        c_lat, c_lon, c_alt = lla[-1]
        overlap = plan.nearest_overlap(b.id)
        features.append(
            {
                "type": "Feature",
                "id": b.id,
                "geometry": {"type": "Polygon", "coordinates": [lon_lat.tolist()]},
                "properties": {
                    "id": b.id,
                    "radius_m": b.radius_m,
                    "frames": len(b.frames),
                    "center_lat": round(float(c_lat), COORD_DECIMALS),
                    "center_lon": round(float(c_lon), COORD_DECIMALS),
                    "center_alt": round(float(c_alt), 3),
                    "z_min": b.z_min,
                    "z_max": b.z_max,
                    "neighbors": list(b.neighbors),
                    "overlap": None if overlap is None else round(overlap, 4),
                },
            }
        )
    out: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if features:
        out["bbox"] = [float(west), float(south), float(east), float(north)]
    return out


def block_lat_lon(plan: BlockPlan) -> dict[str, tuple[float, float]]:
    """Block id -> (lat, lon) of its centre; empty when the plan has no geo origin."""
    geo = plan_geo_frame(plan)
    if geo is None or not plan.blocks:
        return {}
    lla = geo.enu_to_lla(_plan_to_enu(plan, plan.centers))
    return {b.id: (float(lat), float(lon)) for b, (lat, lon, _) in zip(plan.blocks, lla)}


def block_rows(plan: BlockPlan) -> list[dict[str, Any]]:
    """``BlockPlan.summary()`` rows with ``lat`` and ``lon`` of each centre (None without a geo origin).

    What ``blocknerf partition`` prints and ``blocknerf info --json`` emits under ``"blocks"``.
    """
    where = block_lat_lon(plan)
    rows = plan.summary()
    for row in rows:
        lat_lon = where.get(row["id"])
        row["lat"], row["lon"] = (None, None) if lat_lon is None else lat_lon
    return rows


__all__ = ["NoGeoOriginError", "plan_to_geojson", "block_lat_lon", "block_rows", "plan_geo_frame"]
