"""The block map PNG and the GeoJSON footprints of a plan."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

import blocknerf.presentation.blockmap as blockmap
from blocknerf.presentation.blockmap import draw_block_map, nice_length
from blocknerf.errors import InputError
from blocknerf.capture.geo import LLA, GeoFrame
from blocknerf.presentation.geojson import NoGeoOriginError, block_lat_lon, block_rows, plan_to_geojson
from partitioning import PartitionConfig, plan_blocks
from partitioning.layouts import street_grid

ORIGIN = (37.7749, -122.4194, 10.0)


@pytest.fixture(scope="module")
def city():  # noqa: ANN201
    cams, _ = street_grid(2, holdout_every=10)
    return cams


@pytest.fixture(scope="module")
def geo_plan(city):  # noqa: ANN001, ANN201
    return plan_blocks(city, PartitionConfig(), geo_origin=ORIGIN)


# Block map ---------------------------------------------------------------------------------------
def _world_to_pixel(width: int, world: tuple[float, float], lo: float, hi: float) -> tuple[int, int]:
    """Locate a world point by the map's fixed layout (margins 56 px, header 64 px at 1x)."""
    map_w = width - 2 * 56
    scale = map_w / (hi - lo)
    return int(56 + (world[0] - lo) * scale), int(64 + (hi - world[1]) * scale)


def _fill(blocks: int) -> np.ndarray:
    """The map's colour where ``blocks`` translucent discs overlap: the background under that many
    layers of the block colour at alpha 0.16, rounded as the map rounds."""
    alpha = 1.0 - (1.0 - blockmap._FILL_ALPHA) ** blocks
    return np.floor(np.array(blockmap._BACKGROUND) * (1.0 - alpha) + np.array(blockmap._BLOCK) * alpha + 0.5)


def _pixel(rgb: np.ndarray, world: tuple[float, float], lo: float, hi: float) -> np.ndarray:
    x, y = _world_to_pixel(rgb.shape[1], world, lo, hi)
    return rgb[y, x]


def _train_flags_at(cameras, xy: tuple[float, float]) -> np.ndarray:  # noqa: ANN001
    """is_train of the cameras standing at ``xy`` (street_grid puts four headings at each point)."""
    at = np.linalg.norm(cameras.positions[:, :2] - np.asarray(xy), axis=1) < 1e-6
    return cameras.is_train[at]


# The window of the 2x2 street grid's map spans -160..160 m (discs of radius 80 about -80..80) plus
# 4 %: -172.8..172.8. Points away from streets, grid lines and outlines, by how many discs cover them.
GRID_WINDOW = (-172.8, 172.8)
FILLS = {(-165.0, 165.0): 0, (-140.0, 20.0): 1, (-120.0, 40.0): 2, (-40.0, -40.0): 4, (40.0, 40.0): 4}
TRAINING_ONLY = (-90.0, -80.0)  # four training cameras
ONE_HELD_OUT = (-55.0, -80.0)  # three training cameras and one held-out camera


def _read_map(path) -> np.ndarray:  # noqa: ANN001
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB")).astype(int)


def test_block_map_shades_each_place_by_the_blocks_covering_it_and_dots_the_cameras(city, geo_plan, tmp_path) -> None:  # noqa: ANN001
    path = draw_block_map(geo_plan, city, tmp_path / "maps" / "map.png", size_px=800)
    assert path == tmp_path / "maps" / "map.png"
    rgb = _read_map(path)
    assert rgb.shape[1] == 800
    for world, blocks in FILLS.items():
        np.testing.assert_allclose(_pixel(rgb, world, *GRID_WINDOW), _fill(blocks), atol=1, err_msg=f"{world}: {blocks} blocks")
    # A camera is a dot of its split's colour (held-out dots drawn last, on top); downsampling the
    # 2x drawing moves a dot's centre by a few levels.
    assert _train_flags_at(city, TRAINING_ONLY).all() and not _train_flags_at(city, ONE_HELD_OUT).all()
    np.testing.assert_allclose(_pixel(rgb, TRAINING_ONLY, *GRID_WINDOW), blockmap._TRAIN, atol=16)
    np.testing.assert_allclose(_pixel(rgb, ONE_HELD_OUT, *GRID_WINDOW), blockmap._HELD_OUT, atol=16)


def test_block_map_draws_large_captures_as_density(city, geo_plan, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(blockmap, "DOTS_UP_TO", 10)
    rgb = _read_map(draw_block_map(geo_plan, city, tmp_path / "dense.png", size_px=600, title="density"))
    assert rgb.shape[1] == 600
    for world, blocks in FILLS.items():  # the density layer stays on the cameras
        np.testing.assert_allclose(_pixel(rgb, world, *GRID_WINDOW), _fill(blocks), atol=1, err_msg=f"{world}: {blocks} blocks")
    trained, mixed = _pixel(rgb, TRAINING_ONLY, *GRID_WINDOW), _pixel(rgb, ONE_HELD_OUT, *GRID_WINDOW)
    # Cameras darken the map (alpha >= 0.4 toward their colour) instead of being dots: where one of
    # four cameras is held out, the colour is the 3:1 mix of navy and orange, red above blue (no
    # orange dot), while training cameras alone are navy, blue above red.
    assert trained.sum() < 0.5 * _fill(4).sum() and mixed.sum() < 0.5 * _fill(4).sum()
    assert trained[2] > trained[0] and mixed[0] > mixed[2] and mixed[0] < 150


def test_block_map_without_geo_and_with_one_block(tmp_path) -> None:  # noqa: ANN001
    cams, _ = street_grid(1, step_m=10.0)
    plan = plan_blocks(cams, PartitionConfig(spacing_m="auto"))
    assert len(plan) == 1 and plan.geo_origin is None
    (block,) = plan.blocks
    assert block.center[:2] == pytest.approx((0.0, 0.0))
    rgb = _read_map(draw_block_map(plan, cams, tmp_path / "one.png", size_px=400))
    assert rgb.shape[1] == 400
    # The disc (radius r, about 67 m) spans the window with its 4 % margins: -1.08 r .. 1.08 r.
    window = (-1.08 * block.radius_m, 1.08 * block.radius_m)
    np.testing.assert_allclose(_pixel(rgb, (30.0, -30.0), *window), _fill(1), atol=1)  # inside, between streets
    np.testing.assert_allclose(_pixel(rgb, (-70.0, 70.0), *window), _fill(0), atol=1)  # a corner, outside the disc


@pytest.mark.parametrize(("target", "nice"), [(7.3, 5.0), (1.0, 1.0), (199.0, 100.0), (0.03, 0.02), (2500.0, 2000.0)])
def test_nice_length(target: float, nice: float) -> None:
    assert nice_length(target) == pytest.approx(nice)


# GeoJSON -----------------------------------------------------------------------------------------
def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def test_geojson_footprints_are_closed_ccw_lon_lat_discs(geo_plan) -> None:  # noqa: ANN001
    doc = json.loads(json.dumps(plan_to_geojson(geo_plan)))
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(geo_plan)
    frame = GeoFrame(LLA(*ORIGIN))
    for feature, block in zip(doc["features"], geo_plan.blocks):
        assert feature["type"] == "Feature" and feature["id"] == block.id
        assert feature["geometry"]["type"] == "Polygon"
        (ring,) = feature["geometry"]["coordinates"]
        ring = np.array(ring)
        assert ring.shape == (65, 2) and np.array_equal(ring[0], ring[-1])
        assert _signed_area(ring) > 0.0  # counter-clockwise exterior ring (RFC 7946)
        assert np.all(np.abs(ring[:, 0] - ORIGIN[1]) < 0.01) and np.all(np.abs(ring[:, 1] - ORIGIN[0]) < 0.01)
        # Back in ENU every vertex lies on the disc's rim (rounding to 1e-7 deg is ~1 cm).
        lla = np.column_stack([ring[:, 1], ring[:, 0], np.full(len(ring), block.center[2] + ORIGIN[2])])
        enu = frame.lla_to_enu(lla)
        np.testing.assert_allclose(np.linalg.norm(enu[:, :2] - block.center[:2], axis=1), block.radius_m, atol=0.03)
        props = feature["properties"]
        assert props["id"] == block.id and props["frames"] == len(block.frames)
        assert props["radius_m"] == block.radius_m and props["neighbors"] == list(block.neighbors)
    west, south, east, north = doc["bbox"]
    assert west < ORIGIN[1] < east and south < ORIGIN[0] < north


def test_the_centre_block_sits_at_the_geo_origin(geo_plan) -> None:  # noqa: ANN001
    lat, lon = block_lat_lon(geo_plan)["b000_000"]
    assert lat == pytest.approx(ORIGIN[0], abs=1e-9) and lon == pytest.approx(ORIGIN[1], abs=1e-9)
    # 80 m east: longitude grows by 80 / (R cos(lat)) radians.
    _, lon_east = block_lat_lon(geo_plan)["b001_000"]
    expected = math.degrees(80.0 / (6_378_137.0 * math.cos(math.radians(ORIGIN[0]))))
    assert lon_east - ORIGIN[1] == pytest.approx(expected, rel=5e-3)


def test_block_rows_carry_lat_lon_when_geo(geo_plan, city) -> None:  # noqa: ANN001
    rows = block_rows(geo_plan)
    assert all(r["lat"] is not None and r["lon"] is not None for r in rows)
    json.dumps(rows)
    plain = plan_blocks(city, PartitionConfig())
    assert all(r["lat"] is None and r["lon"] is None for r in block_rows(plain))


def test_geojson_without_geo_origin_is_a_clear_error(city) -> None:  # noqa: ANN001
    plan = plan_blocks(city, PartitionConfig())
    with pytest.raises(NoGeoOriginError, match="no geo origin") as info:
        plan_to_geojson(plan)
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)
