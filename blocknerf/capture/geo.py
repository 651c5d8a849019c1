"""Geo-registration: WGS84 latitude/longitude/height <-> ECEF <-> local East-North-Up metres.

The world frame of a geo-registered capture is ENU in metres at the capture's origin (z up). All
conversions go through PROJ (pyproj); arrays are ``(..., 3)`` float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyproj import Transformer

from blocknerf.errors import InputError

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class LLA:
    """A WGS84 position: latitude and longitude in degrees, ellipsoidal height in metres."""

    lat: float
    lon: float
    alt: float = 0.0

    def __post_init__(self) -> None:
        # Plain floats: numpy scalars would reach PROJ strings as "np.float64(...)" (see GeoFrame).
        for name in ("lat", "lon", "alt"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not all(math.isfinite(v) for v in (self.lat, self.lon, self.alt)):
            raise ValueError(f"non-finite coordinate in {self}")
        if not -90.0 <= self.lat <= 90.0:
            raise ValueError(f"latitude {self.lat} outside [-90, 90]")
        if not -180.0 <= self.lon <= 360.0:
            raise ValueError(f"longitude {self.lon} outside [-180, 360]")

    def to_dict(self) -> dict[str, float]:
        return {"lat": self.lat, "lon": self.lon, "alt": self.alt}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "gps") -> LLA:
        """Parse ``{"lat", "lon", "alt"}`` (``alt`` optional); raises InputError naming ``where``."""
        if not isinstance(data, dict) or "lat" not in data or "lon" not in data:
            raise InputError(where, "expected {\"lat\": deg, \"lon\": deg, \"alt\": m}")
        try:
            return cls(float(data["lat"]), float(data["lon"]), float(data.get("alt", 0.0)))
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(where, f"bad coordinate: {exc}") from None


@dataclass(frozen=True)
class GeoFrame:
    """A local ENU frame (x east, y north, z up, metres) tangent to the WGS84 ellipsoid at ``origin``."""

    origin: LLA
    _to_ecef: Transformer = field(init=False, repr=False, compare=False)
    _to_enu: Transformer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lla_to_ecef = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
        o = self.origin
        ecef_to_enu = Transformer.from_pipeline(
            f"+proj=topocentric +ellps=WGS84 +lat_0={o.lat!r} +lon_0={o.lon!r} +h_0={o.alt!r}"
        )
        object.__setattr__(self, "_to_ecef", lla_to_ecef)
        object.__setattr__(self, "_to_enu", ecef_to_enu)

    # Geographic <-> ECEF ---------------------------------------------------------------------
    def lla_to_ecef(self, lla: np.ndarray) -> np.ndarray:
        """``(..., 3)`` [lat deg, lon deg, height m] -> ``(..., 3)`` ECEF metres."""
        lla = np.asarray(lla, dtype=np.float64)
        x, y, z = self._to_ecef.transform(lla[..., 1], lla[..., 0], lla[..., 2])
        return np.stack(np.broadcast_arrays(x, y, z), axis=-1)

    def ecef_to_lla(self, ecef: np.ndarray) -> np.ndarray:
        """``(..., 3)`` ECEF metres -> ``(..., 3)`` [lat deg, lon deg, height m]."""
        ecef = np.asarray(ecef, dtype=np.float64)
        lon, lat, h = self._to_ecef.transform(ecef[..., 0], ecef[..., 1], ecef[..., 2], direction="INVERSE")
        return np.stack(np.broadcast_arrays(lat, lon, h), axis=-1)

    # ECEF <-> local ENU ----------------------------------------------------------------------
    def ecef_to_enu(self, ecef: np.ndarray) -> np.ndarray:
        """``(..., 3)`` ECEF metres -> ``(..., 3)`` ENU metres at the origin."""
        ecef = np.asarray(ecef, dtype=np.float64)
        e, n, u = self._to_enu.transform(ecef[..., 0], ecef[..., 1], ecef[..., 2])
        return np.stack(np.broadcast_arrays(e, n, u), axis=-1)

    def enu_to_ecef(self, enu: np.ndarray) -> np.ndarray:
        """``(..., 3)`` ENU metres -> ``(..., 3)`` ECEF metres."""
        enu = np.asarray(enu, dtype=np.float64)
        x, y, z = self._to_enu.transform(enu[..., 0], enu[..., 1], enu[..., 2], direction="INVERSE")
        return np.stack(np.broadcast_arrays(x, y, z), axis=-1)

    # Geographic <-> local ENU ----------------------------------------------------------------
    def lla_to_enu(self, lla: np.ndarray) -> np.ndarray:
        """``(..., 3)`` [lat deg, lon deg, height m] -> ``(..., 3)`` ENU metres."""
        return self.ecef_to_enu(self.lla_to_ecef(lla))

    def enu_to_lla(self, enu: np.ndarray) -> np.ndarray:
        """``(..., 3)`` ENU metres -> ``(..., 3)`` [lat deg, lon deg, height m]."""
        return self.ecef_to_lla(self.enu_to_ecef(enu))

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "origin": self.origin.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeoFrame:
        return cls(LLA.from_dict(data["origin"], where="geo_origin"))

    def __reduce__(self) -> tuple[Any, ...]:
        # Transformers do not pickle; rebuild them from the origin (dask ships frames to workers).
        return (GeoFrame, (self.origin,))


def as_lla(value: LLA | tuple[float, float, float] | dict[str, float]) -> LLA:
    """Accept an LLA, a ``(lat, lon, alt)`` tuple or a ``{"lat", "lon", "alt"}`` dict."""
    if isinstance(value, LLA):
        return value
    if isinstance(value, dict):
        return LLA.from_dict(value)
    return LLA(*(float(v) for v in value))


__all__ = ["LLA", "GeoFrame", "as_lla"]
