"""GeoFrame: WGS84 lat/lon/height <-> ECEF <-> local ENU, checked against closed-form ellipsoid values."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from blocknerf.errors import InputError
from blocknerf.capture.geo import LLA, GeoFrame, as_lla

# WGS84 defining constants, so the expected values below do not come from the code under test.
A = 6378137.0
F = 1.0 / 298.257223563
E2 = F * (2.0 - F)
B = A * (1.0 - F)

ORIGINS = [
    pytest.param(LLA(37.7764, -122.4346, 40.0), id="san-francisco"),
    pytest.param(LLA(0.0, 0.0, 0.0), id="null-island"),
    pytest.param(LLA(-33.8688, 151.2093, 58.0), id="sydney"),
    pytest.param(LLA(78.2232, 15.6267, 0.0), id="svalbard"),
    pytest.param(LLA(31.7683, 35.2137, 754.0), id="jerusalem-high"),
    pytest.param(LLA(0.5, 179.9, -20.0), id="antimeridian-below-ellipsoid"),
]


def meridian_radius(lat_deg: float) -> float:
    """M: the ellipsoid's radius of curvature along the meridian, a(1-e^2) / (1 - e^2 sin^2 phi)^1.5."""
    s = math.sin(math.radians(lat_deg))
    return A * (1.0 - E2) / (1.0 - E2 * s * s) ** 1.5


def closed_form_ecef(lat_deg: float, lon_deg: float, h: float) -> np.ndarray:
    """ECEF of a geodetic point with the prime-vertical radius N = a / sqrt(1 - e^2 sin^2 phi)."""
    phi, lam = math.radians(lat_deg), math.radians(lon_deg)
    n = A / math.sqrt(1.0 - E2 * math.sin(phi) ** 2)
    return np.array([
        (n + h) * math.cos(phi) * math.cos(lam),
        (n + h) * math.cos(phi) * math.sin(lam),
        (n * (1.0 - E2) + h) * math.sin(phi),
    ])


@pytest.mark.parametrize("origin", ORIGINS)
def test_one_km_north_matches_the_meridian_arc(origin: LLA) -> None:
    """ENU (0, 1000, 0) lies 1 km north along the meridian: its latitude offset is 1000 / (M + h) rad
    and its geodesic distance on the ellipsoid 1000 * M / (M + h); it rises d^2 / 2(M + h) above
    the origin's height as the ellipsoid curves away from the tangent plane."""
    frame = GeoFrame(origin)
    lat, lon, h = frame.enu_to_lla(np.array([0.0, 1000.0, 0.0]))
    radius = meridian_radius(origin.lat) + origin.alt
    dlat_m = math.radians(lat - origin.lat) * radius
    assert dlat_m == pytest.approx(1000.0, abs=0.01)  # < 1 cm
    assert lon == pytest.approx(origin.lon, abs=1e-12)
    assert h - origin.alt == pytest.approx(1000.0**2 / (2.0 * radius), abs=0.001)
    # Independently of the projection: the geodesic (Karney) distance along the ellipsoid.
    _, _, dist = Geod(ellps="WGS84").inv(origin.lon, origin.lat, lon, lat)
    assert dist == pytest.approx(1000.0 * meridian_radius(origin.lat) / radius, abs=0.01)


@pytest.mark.parametrize("origin", ORIGINS)
def test_one_km_east_matches_the_parallel(origin: LLA) -> None:
    """ENU (1000, 0, 0): longitude offset 1000 / ((N + h) cos phi) rad (a point on the tangent plane)."""
    frame = GeoFrame(origin)
    lat, lon, _ = frame.enu_to_lla(np.array([1000.0, 0.0, 0.0]))
    phi = math.radians(origin.lat)
    n = A / math.sqrt(1.0 - E2 * math.sin(phi) ** 2)
    dlon = (lon - origin.lon + 180.0) % 360.0 - 180.0
    assert math.radians(dlon) * (n + origin.alt) * math.cos(phi) == pytest.approx(1000.0, abs=0.01)


@pytest.mark.parametrize(
    ("lla", "ecef"),
    [
        pytest.param((0.0, 0.0, 0.0), (A, 0.0, 0.0), id="equator-prime-meridian"),
        pytest.param((0.0, 90.0, 0.0), (0.0, A, 0.0), id="equator-90E"),
        pytest.param((0.0, 180.0, 0.0), (-A, 0.0, 0.0), id="equator-antimeridian"),
        pytest.param((0.0, 0.0, 1000.0), (A + 1000.0, 0.0, 0.0), id="1km-above-equator"),
        pytest.param((90.0, 0.0, 0.0), (0.0, 0.0, B), id="north-pole"),
        pytest.param((-90.0, 0.0, 100.0), (0.0, 0.0, -B - 100.0), id="south-pole-above"),
        pytest.param((45.0, 45.0, 0.0), tuple(closed_form_ecef(45.0, 45.0, 0.0)), id="45N-45E"),
        pytest.param((37.7764, -122.4346, 40.0), tuple(closed_form_ecef(37.7764, -122.4346, 40.0)), id="san-francisco"),
    ],
)
def test_ecef_of_known_points(lla: tuple[float, float, float], ecef: tuple[float, float, float]) -> None:
    frame = GeoFrame(LLA(0.0, 0.0, 0.0))
    np.testing.assert_allclose(frame.lla_to_ecef(np.array(lla)), ecef, atol=1e-6)
    lat, lon, h = frame.ecef_to_lla(np.array(ecef))
    assert lat == pytest.approx(lla[0], abs=1e-11)  # 1e-11 deg ~ 1 micrometre
    assert h == pytest.approx(lla[2], abs=1e-6)
    if abs(lla[0]) < 90.0:  # longitude is undefined at the poles
        assert lon == pytest.approx(lla[1], abs=1e-11)


@pytest.mark.parametrize("origin", ORIGINS)
def test_enu_axes_at_the_origin(origin: LLA) -> None:
    """x east, y north, z up: the ENU unit vectors in ECEF are the textbook ones at (phi, lambda)."""
    frame = GeoFrame(origin)
    np.testing.assert_allclose(frame.lla_to_enu(np.array([origin.lat, origin.lon, origin.alt])), 0.0, atol=1e-6)
    o = frame.enu_to_ecef(np.zeros(3))
    np.testing.assert_allclose(o, closed_form_ecef(origin.lat, origin.lon, origin.alt), atol=1e-6)
    phi, lam = math.radians(origin.lat), math.radians(origin.lon)
    expected = {
        "east": [-math.sin(lam), math.cos(lam), 0.0],
        "north": [-math.sin(phi) * math.cos(lam), -math.sin(phi) * math.sin(lam), math.cos(phi)],
        "up": [math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)],
    }
    axes = frame.enu_to_ecef(10.0 * np.eye(3)) - o  # rows: 10 m east, north, up
    for row, name in zip(axes, ("east", "north", "up"), strict=True):
        np.testing.assert_allclose(row / 10.0, expected[name], atol=1e-8, err_msg=name)
    # And the other way: a little east, north or higher lands on +x, +y, +z.
    step = np.array([[origin.lat, origin.lon + 1e-4, origin.alt], [origin.lat + 1e-4, origin.lon, origin.alt], [origin.lat, origin.lon, origin.alt + 5.0]])
    enu = frame.lla_to_enu(step)
    assert enu[0, 0] > 1.0 and abs(enu[0, 1]) < 1e-3
    assert enu[1, 1] > 1.0 and abs(enu[1, 0]) < 1e-6
    np.testing.assert_allclose(enu[2], [0.0, 0.0, 5.0], atol=1e-6)


def _lat_lon_metres(frame: GeoFrame, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) distances in metres between two (N, 3) lat/lon/h arrays, through ECEF."""
    return np.linalg.norm(frame.lla_to_ecef(a) - frame.lla_to_ecef(b), axis=-1)


@pytest.mark.parametrize("origin", ORIGINS)
def test_round_trip_within_20_km_is_below_1_mm(origin: LLA) -> None:
    """A grid of points up to 20 km away (and -500 m .. 3 km in height): lla -> ENU -> lla and
    ENU -> lla -> ENU both return within a millimetre."""
    frame = GeoFrame(origin)
    e, n, u = np.meshgrid(np.linspace(-20e3, 20e3, 21), np.linspace(-20e3, 20e3, 21), [-500.0, 0.0, 3000.0], indexing="ij")
    enu = np.stack([e, n, u], axis=-1).reshape(-1, 3)
    enu = enu[np.linalg.norm(enu[:, :2], axis=1) <= 20e3]
    lla = frame.enu_to_lla(enu)
    np.testing.assert_array_less(np.abs(frame.lla_to_enu(lla) - enu), 1e-3)
    again = frame.enu_to_lla(frame.lla_to_enu(lla))
    np.testing.assert_array_less(_lat_lon_metres(frame, again, lla), 1e-3)
    # The ENU distance from the origin is the straight-line ECEF distance (a rigid change of frame).
    o = frame.enu_to_ecef(np.zeros(3))
    np.testing.assert_allclose(np.linalg.norm(frame.lla_to_ecef(lla) - o, axis=-1), np.linalg.norm(enu, axis=-1), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    lat=st.floats(-89.0, 89.0),
    lon=st.floats(-180.0, 180.0),
    alt=st.floats(-400.0, 4000.0),
    bearing=st.floats(0.0, 360.0),
    dist=st.floats(0.0, 20e3),
    dh=st.floats(-500.0, 3000.0),
)
def test_round_trip_property(lat: float, lon: float, alt: float, bearing: float, dist: float, dh: float) -> None:
    """Any origin, any point up to 20 km away along the ellipsoid (a geodesic from pyproj.Geod):
    lla -> ENU -> lla within 1 mm, and the ENU point lies where the geodesic says."""
    frame = GeoFrame(LLA(lat, lon, alt))
    plon, plat, _ = Geod(ellps="WGS84").fwd(lon, lat, bearing, dist)
    point = np.array([plat, plon, alt + dh])
    enu = frame.lla_to_enu(point)
    # Horizontal distance: (R + h) sin(s / R) with R Euler's radius of curvature along the bearing;
    # the height term is there because the point's normal tilts away from the origin's up.
    s = math.sin(math.radians(lat))
    m, n = meridian_radius(lat), A / math.sqrt(1.0 - E2 * s * s)
    a = math.radians(bearing)
    r = 1.0 / (math.cos(a) ** 2 / m + math.sin(a) ** 2 / n)
    assert float(np.linalg.norm(enu[:2])) == pytest.approx((r + alt + dh) * math.sin(dist / r), rel=1e-6, abs=1e-6)
    # Direction: east is x and north y, so atan2(x, y) is the bearing (to a few cm sideways at 20 km).
    if dist > 1.0:
        turn = (math.degrees(math.atan2(enu[0], enu[1])) - bearing + 180.0) % 360.0 - 180.0
        assert abs(math.radians(turn)) * dist < 0.1
    back = frame.enu_to_lla(enu)
    assert _lat_lon_metres(frame, back[None], point[None])[0] < 1e-3
    assert np.abs(frame.lla_to_enu(back) - enu).max() < 1e-3


def test_arrays_keep_their_leading_shape() -> None:
    frame = GeoFrame(LLA(37.7764, -122.4346, 40.0))
    enu = np.arange(2 * 5 * 3, dtype=np.float64).reshape(2, 5, 3) * 10.0
    lla = frame.enu_to_lla(enu)
    assert lla.shape == (2, 5, 3) and frame.lla_to_ecef(lla).shape == (2, 5, 3)
    np.testing.assert_allclose(frame.lla_to_enu(lla), enu, atol=1e-6)
    np.testing.assert_allclose(frame.lla_to_enu(lla[1, 2]), enu[1, 2], atol=1e-6)  # and a single point


def test_serialisation_and_pickle_round_trip() -> None:
    frame = GeoFrame(LLA(-33.8688, 151.2093, 58.0))
    d = frame.to_dict()
    assert d == {"schema_version": 1, "origin": {"lat": -33.8688, "lon": 151.2093, "alt": 58.0}}
    assert GeoFrame.from_dict(d) == frame
    copy = pickle.loads(pickle.dumps(frame))  # dask ships frames to workers
    assert copy == frame
    point = np.array([123.0, -456.0, 7.0])
    np.testing.assert_array_equal(copy.enu_to_lla(point), frame.enu_to_lla(point))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(LLA(1.0, 2.0, 3.0), id="lla"),
        pytest.param((1.0, 2.0, 3.0), id="tuple"),
        pytest.param({"lat": 1.0, "lon": 2.0, "alt": 3.0}, id="dict"),
    ],
)
def test_as_lla_accepts_three_forms(value: object) -> None:
    assert as_lla(value) == LLA(1.0, 2.0, 3.0)  # type: ignore[arg-type]


def test_lla_from_dict_height_defaults_to_zero() -> None:
    assert LLA.from_dict({"lat": 10.0, "lon": 20.0}) == LLA(10.0, 20.0, 0.0)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param({"lat": 91.0, "lon": 0.0}, "latitude 91.0 outside", id="latitude-range"),
        pytest.param({"lat": 0.0, "lon": 400.0}, "longitude 400.0 outside", id="longitude-range"),
        pytest.param({"lat": float("nan"), "lon": 0.0}, "non-finite", id="nan"),
        pytest.param({"lat": 0.0, "lon": 0.0, "alt": "high"}, "bad coordinate", id="alt-string"),
        pytest.param({"lat": 0.0}, "expected", id="no-lon"),
        pytest.param([0.0, 0.0, 0.0], "expected", id="list"),
    ],
)
def test_lla_from_dict_rejects_bad_input(data: object, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as info:
        LLA.from_dict(data, where="capture.json: geo_origin")
    assert str(info.value).startswith("capture.json: geo_origin: ")


def test_numpy_scalar_origins_give_the_same_frame_as_floats():
    """PROJ strings are built from the origin's repr: numpy scalars must not leak into them."""
    from blocknerf.capture.geo import LLA, GeoFrame

    plain = GeoFrame(LLA(37.7764, -122.4346, 12.0))
    numpy = GeoFrame(LLA(np.float64(37.7764), np.float64(-122.4346), np.float32(12.0)))
    point = np.array([[37.7773, -122.4330, 15.0]])
    np.testing.assert_allclose(numpy.lla_to_enu(point), plain.lla_to_enu(point), atol=1e-6)
    assert type(numpy.origin.lat) is float
