"""EXIF parsing on hand-built byte fixtures: DMS rationals, S/W references, altitude reference,
NUL-padded strings, zero denominators, missing tags; and the writer round trip."""

from __future__ import annotations

import math
import struct

import pytest

from blocknerf.capture.geo import LLA
from blocknerf.ingest.exif import FULL_FRAME_DIAGONAL_MM, PhotoExif, exif_bytes, parse_exif, read_exif


def _tiff(order: str, ifd0: list, exif: list | None = None, gps: list | None = None) -> bytes:
    """A TIFF with IFD0 and optional EXIF/GPS sub-IFDs; entries are (tag, type, count, payload bytes)."""
    bo = "<" if order == "II" else ">"
    ifds = [list(ifd0), list(exif or []), list(gps or [])]
    if exif:
        ifds[0].append((0x8769, 4, 1, None))
    if gps:
        ifds[0].append((0x8825, 4, 1, None))
    sizes = [2 + 12 * len(e) + 4 if e else 0 for e in ifds]
    starts = [8, 8 + sizes[0], 8 + sizes[0] + sizes[1]]
    heap_at, body, heap = 8 + sum(sizes), b"", b""
    for entries in ifds:
        if not entries:
            continue
        body += struct.pack(bo + "H", len(entries))
        for tag, typ, count, payload in sorted(entries, key=lambda e: e[0]):
            if payload is None:
                payload = struct.pack(bo + "I", starts[1] if tag == 0x8769 else starts[2])
            body += struct.pack(bo + "HHI", tag, typ, count)
            if len(payload) <= 4:
                body += payload.ljust(4, b"\0")
            else:
                body += struct.pack(bo + "I", heap_at + len(heap))
                heap += payload
        body += b"\0\0\0\0"
    return order.encode() + struct.pack(bo + "HI", 42, 8) + body + heap


def _rationals(bo: str, *pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack(bo + "II", n, d) for n, d in pairs)


@pytest.mark.parametrize("order", ["II", "MM"], ids=["little-endian", "big-endian"])
def test_dms_rationals_with_south_west_refs_and_below_sea_level(order: str) -> None:
    bo = "<" if order == "II" else ">"
    # 33 deg 51' 54.36" S, 151 deg 12' 36.9" E... here W: lon -> negative; altitude 12.5 m below sea level.
    gps = [
        (1, 2, 2, b"S\0"),
        (2, 5, 3, _rationals(bo, (33, 1), (51, 1), (5436, 100))),
        (3, 2, 2, b"W\0"),
        (4, 5, 3, _rationals(bo, (151, 1), (12, 1), (369, 10))),
        (5, 1, 1, b"\x01"),
        (6, 5, 1, _rationals(bo, (125, 10))),
    ]
    e = parse_exif(b"Exif\0\0" + _tiff(order, [], gps=gps))
    assert e.gps is not None
    # 33 + 51/60 + 54.36/3600 = 33.8651; 151 + 12/60 + 36.9/3600 = 151.21025
    assert e.gps.lat == pytest.approx(-33.8651, abs=1e-9)
    assert e.gps.lon == pytest.approx(-151.21025, abs=1e-9)
    assert e.gps.alt == pytest.approx(-12.5)


def test_nul_padded_strings_and_focal_lengths() -> None:
    ifd0 = [(0x010F, 2, 8, b"DJI\0\0\0\0\0"), (0x0110, 2, 12, b"FC6310  \0\0\0\0")]
    exif = [
        (0x920A, 5, 1, _rationals("<", (88, 10))),  # 8.8 mm
        (0xA405, 3, 1, struct.pack("<H", 24)),  # 24 mm equivalent
        (0x9003, 2, 20, b"2023:06:01 12:30:15\0"),
        (0x9011, 2, 7, b"+02:00\0"),
        (0x9291, 2, 4, b"250\0"),
    ]
    e = parse_exif(_tiff("II", ifd0, exif=exif))
    assert (e.make, e.model, e.camera) == ("DJI", "FC6310", "DJI FC6310")
    assert e.focal_mm == pytest.approx(8.8)
    assert e.focal_35mm == 24
    # 2023-06-01 12:30:15.250 at +02:00 is 10:30:15.250 UTC = 1685615415.25
    assert e.timestamp == pytest.approx(1685615415.25)
    # No focal plane resolution: the 35 mm equivalent through the diagonal, 24 * 5000 / 43.27 px.
    assert e.focal_px(4000, 3000) == pytest.approx(24 * 5000 / FULL_FRAME_DIAGONAL_MM)


def test_missing_tags_zero_denominators_and_no_fix() -> None:
    assert parse_exif(b"") == PhotoExif()
    assert parse_exif(b"not a tiff at all") == PhotoExif()
    # Latitude with a zero denominator is missing, so there is no position.
    gps = [(1, 2, 2, b"N\0"), (2, 5, 3, _rationals("<", (10, 0), (0, 1), (0, 1))),
           (3, 2, 2, b"E\0"), (4, 5, 3, _rationals("<", (5, 1), (0, 1), (0, 1)))]
    assert parse_exif(_tiff("II", [], gps=gps)).gps is None
    # 0, 0 is what receivers without a fix write.
    zeros = [(2, 5, 3, _rationals("<", (0, 1), (0, 1), (0, 1))), (4, 5, 3, _rationals("<", (0, 1), (0, 1), (0, 1)))]
    assert parse_exif(_tiff("II", [], gps=zeros)).gps is None
    # No altitude: 0; decimal degrees as a single rational; no refs means N/E.
    single = [(2, 5, 1, _rationals("<", (47_123_456, 1_000_000))), (4, 5, 1, _rationals("<", (8_500_000, 1_000_000)))]
    e = parse_exif(_tiff("II", [], gps=single))
    assert e.gps == LLA(47.123456, 8.5, 0.0)
    assert e.focal_mm is None and e.timestamp is None and e.focal_px(100, 100) is None
    # An IFD pointer past the end of the data reads as missing, not as an error.
    broken = _tiff("II", [(0x8825, 4, 1, struct.pack("<I", 10_000))])
    assert parse_exif(broken).gps is None


def test_writer_round_trip_through_a_jpeg(tmp_path) -> None:  # noqa: ANN001
    import numpy as np
    from PIL import Image

    written = PhotoExif(make="blocknerf", model="synthetic rig", focal_mm=4.2, focal_35mm=24.0,
                        focal_plane_px_per_mm=40.0, timestamp=1_700_000_000.25, gps=LLA(-37.5, -122.25, -12.5))
    path = tmp_path / "x.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, exif=exif_bytes(written))
    read = read_exif(path)
    assert read.make == "blocknerf" and read.model == "synthetic rig"
    assert read.gps.lat == pytest.approx(-37.5, abs=1e-9) and read.gps.lon == pytest.approx(-122.25, abs=1e-9)
    assert read.gps.alt == pytest.approx(-12.5)
    assert read.timestamp == pytest.approx(1_700_000_000.25)
    # Focal length in mm times focal-plane pixels per mm: 4.2 * 40 = 168 px, exact.
    assert read.focal_px(320, 240) == pytest.approx(168.0)
    # Pillow reads the same GPS (an independent parser).
    with Image.open(path) as img:
        gps_ifd = img.getexif().get_ifd(0x8825)
    assert gps_ifd[1] == "S" and gps_ifd[3] == "W"
    assert float(gps_ifd[2][0]) + float(gps_ifd[2][1]) / 60 + float(gps_ifd[2][2]) / 3600 == pytest.approx(37.5)
    assert math.isclose(float(gps_ifd[6]), 12.5)
