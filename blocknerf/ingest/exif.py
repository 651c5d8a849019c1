"""EXIF of a photo: camera, focal length, capture time and GPS, parsed from the raw TIFF bytes.

A byte-level parser rather than Pillow's tag dictionaries, because drone and phone files need
their quirks handled one by one: strings padded with NULs (or not terminated at all), GPS values as
three DMS rationals or one decimal rational, zero denominators, lower-case references, altitude
below sea level (``GPSAltitudeRef`` 1). Anything missing or malformed is None, never an error:
a photo without EXIF is still a photo.

``exif_bytes`` writes the same fields (the synthetic city's ``--exif`` photos, test fixtures).
"""

from __future__ import annotations

import calendar
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocknerf.capture.geo import LLA

EXIF_HEADER = b"Exif\x00\x00"
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
"""The 35 mm equivalent focal length is defined by the diagonal of a 36 x 24 mm frame (CIPA DC-008)."""

# Tags (TIFF/EXIF 2.32).
_MAKE, _MODEL, _ORIENTATION, _EXIF_IFD, _GPS_IFD = 0x010F, 0x0110, 0x0112, 0x8769, 0x8825
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, _SUBSEC_ORIGINAL = 0x9003, 0x9011, 0x9291
_FOCAL_LENGTH, _FOCAL_35MM = 0x920A, 0xA405
_FOCAL_PLANE_X_RES, _FOCAL_PLANE_UNIT = 0xA20E, 0xA210
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON, _GPS_ALT_REF, _GPS_ALT = 1, 2, 3, 4, 5, 6
# TIFF field types: byte size of one value.
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8, 11: 4, 12: 8}
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}
"""FocalPlaneResolutionUnit -> millimetres per unit (2 inch, 3 cm, 4 mm, 5 um)."""


@dataclass(frozen=True, slots=True)
class PhotoExif:
    """What blocknerf uses from a photo's EXIF; every field may be missing (None)."""

    make: str | None = None
    model: str | None = None
    focal_mm: float | None = None
    """Physical focal length (FocalLength)."""
    focal_35mm: float | None = None
    """35 mm equivalent focal length (FocalLengthIn35mmFilm)."""
    focal_plane_px_per_mm: float | None = None
    """Sensor pixels per millimetre at full resolution (FocalPlaneXResolution and its unit)."""
    timestamp: float | None = None
    """DateTimeOriginal (+ SubSecTimeOriginal) as Unix seconds; UTC unless OffsetTimeOriginal says
    otherwise (EXIF local times carry no zone)."""
    gps: LLA | None = None
    """GPS latitude, longitude (signed by their references) and altitude (metres above sea level,
    negative below; 0 when the photo has a position but no altitude)."""
    orientation: int = 1
    """EXIF Orientation (1 = upright)."""

    @property
    def camera(self) -> str:
        """``make model``, or ``unknown camera``."""
        return " ".join(s for s in (self.make, self.model) if s) or "unknown camera"

    def focal_px(self, width: int, height: int) -> float | None:
        """Focal length in pixels of a ``width`` x ``height`` image of the full sensor, or None.

        The physical focal length with the focal plane resolution is exact; the 35 mm equivalent
        goes through the image diagonal.
        """
        if self.focal_mm and self.focal_plane_px_per_mm:
            # The focal plane resolution is of the sensor readout, which the photo as written is.
            return self.focal_mm * self.focal_plane_px_per_mm
        if self.focal_35mm:
            return self.focal_35mm * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
        return None


def read_exif(path: str | Path) -> PhotoExif:
    """The EXIF of a JPEG, PNG (eXIf chunk) or TIFF file; an empty PhotoExif when it has none."""
    from PIL import Image

    with Image.open(path) as img:
        raw = img.info.get("exif")
        if raw is None and hasattr(img, "getexif"):
            exif = img.getexif()
            raw = exif.tobytes() if len(exif) else None
    return parse_exif(raw or b"")


def parse_exif(data: bytes) -> PhotoExif:
    """Parse raw EXIF (a TIFF structure, optionally after the ``Exif\\0\\0`` APP1 header)."""
    if data.startswith(EXIF_HEADER):
        data = data[len(EXIF_HEADER):]
    reader = _TiffReader.open(data)
    if reader is None:
        return PhotoExif()
    ifd0 = reader.ifd(reader.first_ifd)
    exif_ifd = reader.ifd(_int(reader.value(ifd0, _EXIF_IFD)))
    gps_ifd = reader.ifd(_int(reader.value(ifd0, _GPS_IFD)))
    focal_mm = _positive(reader.value(exif_ifd, _FOCAL_LENGTH))
    focal_35 = _positive(reader.value(exif_ifd, _FOCAL_35MM))
    plane_res = _positive(reader.value(exif_ifd, _FOCAL_PLANE_X_RES))
    unit = _int(reader.value(exif_ifd, _FOCAL_PLANE_UNIT)) or 2  # the standard's default: inches
    px_per_mm = plane_res / _UNIT_MM[unit] if plane_res and unit in _UNIT_MM else None
    return PhotoExif(
        make=_text(reader.value(ifd0, _MAKE)),
        model=_text(reader.value(ifd0, _MODEL)),
        focal_mm=focal_mm,
        focal_35mm=focal_35,
        focal_plane_px_per_mm=px_per_mm,
        timestamp=_timestamp(
            _text(reader.value(exif_ifd, _DATETIME_ORIGINAL)),
            _text(reader.value(exif_ifd, _SUBSEC_ORIGINAL)),
            _text(reader.value(exif_ifd, _OFFSET_TIME_ORIGINAL)),
        ),
        gps=_gps(reader, gps_ifd),
        orientation=_int(reader.value(ifd0, _ORIENTATION)) or 1,
    )


# -- reading ----------------------------------------------------------------------------------------


class _TiffReader:
    """Random access to the IFDs of a TIFF byte string; out-of-range offsets read as missing."""

    def __init__(self, data: bytes, order: str, first_ifd: int) -> None:
        self.data, self.order, self.first_ifd = data, order, first_ifd

    @classmethod
    def open(cls, data: bytes) -> _TiffReader | None:
        if len(data) < 8 or data[:2] not in (b"II", b"MM"):
            return None
        order = "<" if data[:2] == b"II" else ">"
        if struct.unpack(order + "H", data[2:4])[0] != 42:
            return None
        return cls(data, order, struct.unpack(order + "I", data[4:8])[0])

    def ifd(self, offset: int | None) -> dict[int, tuple[int, int, bytes]]:
        """Tag -> (type, count, raw value bytes) of the IFD at ``offset`` (empty when unreadable)."""
        entries: dict[int, tuple[int, int, bytes]] = {}
        if not offset or offset + 2 > len(self.data):
            return entries
        (n,) = struct.unpack(self.order + "H", self.data[offset:offset + 2])
        for k in range(n):
            at = offset + 2 + 12 * k
            if at + 12 > len(self.data):
                break
            tag, typ, count = struct.unpack(self.order + "HHI", self.data[at:at + 8])
            size = _TYPE_SIZE.get(typ, 0) * count
            if size == 0:
                continue
            if size <= 4:
                raw = self.data[at + 8:at + 8 + size]
            else:
                (ptr,) = struct.unpack(self.order + "I", self.data[at + 8:at + 12])
                raw = self.data[ptr:ptr + size]
                if len(raw) < size:
                    continue
            entries[tag] = (typ, count, raw)
        return entries

    def value(self, ifd: dict[int, tuple[int, int, bytes]], tag: int) -> Any:
        """The tag's value: bytes for strings, a float or tuple of floats for numbers, else None."""
        if tag not in ifd:
            return None
        typ, count, raw = ifd[tag]
        if typ in (2, 7):  # ASCII, UNDEFINED
            return raw
        if typ in (5, 10):  # (signed) rational: a zero denominator is a missing value
            fmt = self.order + ("I" if typ == 5 else "i") * (2 * count)
            nums = struct.unpack(fmt, raw)
            values = tuple(nums[i] / nums[i + 1] if nums[i + 1] else math.nan for i in range(0, len(nums), 2))
        else:
            code = {1: "B", 3: "H", 4: "I", 9: "i", 11: "f", 12: "d"}[typ]
            values = tuple(float(v) for v in struct.unpack(self.order + code * count, raw))
        return values[0] if count == 1 else values


def _text(value: Any) -> str | None:
    if not isinstance(value, bytes):
        return None
    text = value.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
    return text or None


def _int(value: Any) -> int | None:
    if isinstance(value, tuple):
        value = value[0] if value else None
    return int(value) if isinstance(value, float) and math.isfinite(value) else None


def _positive(value: Any) -> float | None:
    if isinstance(value, tuple):
        value = value[0] if value else None
    return float(value) if isinstance(value, float) and math.isfinite(value) and value > 0 else None


def _degrees(value: Any) -> float | None:
    """DMS rationals (or fewer: decimal degrees, degrees and decimal minutes) -> degrees."""
    parts = value if isinstance(value, tuple) else (value,) if isinstance(value, float) else ()
    if not parts or not all(math.isfinite(p) for p in parts):
        return None
    return sum(p / 60.0**k for k, p in enumerate(parts[:3]))


def _gps(reader: _TiffReader, ifd: dict[int, tuple[int, int, bytes]]) -> LLA | None:
    lat, lon = _degrees(reader.value(ifd, _GPS_LAT)), _degrees(reader.value(ifd, _GPS_LON))
    if lat is None or lon is None:
        return None
    if (_text(reader.value(ifd, _GPS_LAT_REF)) or "N").upper().startswith("S"):
        lat = -lat
    if (_text(reader.value(ifd, _GPS_LON_REF)) or "E").upper().startswith("W"):
        lon = -lon
    alt = reader.value(ifd, _GPS_ALT)
    alt = alt[0] if isinstance(alt, tuple) else alt
    alt = float(alt) if isinstance(alt, float) and math.isfinite(alt) else 0.0
    ref = reader.value(ifd, _GPS_ALT_REF)
    if (isinstance(ref, bytes) and ref[:1] == b"\x01") or (isinstance(ref, float) and ref == 1.0):
        alt = -alt
    if lat == 0.0 and lon == 0.0:  # receivers without a fix write zeros
        return None
    try:
        return LLA(lat, lon, alt)
    except ValueError:
        return None


def _timestamp(text: str | None, subsec: str | None, offset: str | None) -> float | None:
    m = re.fullmatch(r"(\d{4})[:\-](\d\d)[:\-](\d\d)[ T](\d\d):(\d\d):(\d\d)(\.\d+)?", text or "")
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    try:
        seconds = float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    frac = m.group(7) or (f".{subsec}" if subsec and subsec.isdigit() else "")
    seconds += float(frac) if frac else 0.0
    zone = re.fullmatch(r"([+-])(\d\d):(\d\d)", offset or "")
    if zone:
        sign = 1 if zone.group(1) == "+" else -1
        seconds -= sign * (int(zone.group(2)) * 3600 + int(zone.group(3)) * 60)
    return seconds


# -- writing ----------------------------------------------------------------------------------------


def exif_bytes(exif: PhotoExif) -> bytes:
    """Raw EXIF (with the ``Exif\\0\\0`` header, little-endian) holding ``exif``'s fields.

    GPS is written as DMS rationals with N/S, E/W and altitude references; the time as
    DateTimeOriginal in UTC with OffsetTimeOriginal ``+00:00`` and SubSecTimeOriginal.
    """
    ifd0: list[tuple[int, int, Any]] = []
    if exif.make:
        ifd0.append((_MAKE, 2, exif.make))
    if exif.model:
        ifd0.append((_MODEL, 2, exif.model))
    ifd0.append((_ORIENTATION, 3, (exif.orientation,)))
    sub: list[tuple[int, int, Any]] = []
    if exif.timestamp is not None:
        whole = math.floor(exif.timestamp)
        t = _utc(whole)
        sub += [(_DATETIME_ORIGINAL, 2, t), (_OFFSET_TIME_ORIGINAL, 2, "+00:00"),
                (_SUBSEC_ORIGINAL, 2, f"{round((exif.timestamp - whole) * 1000):03d}")]
    if exif.focal_mm:
        sub.append((_FOCAL_LENGTH, 5, (exif.focal_mm,)))
    if exif.focal_plane_px_per_mm:
        sub += [(_FOCAL_PLANE_X_RES, 5, (exif.focal_plane_px_per_mm,)), (_FOCAL_PLANE_UNIT, 3, (4,))]
    if exif.focal_35mm:
        sub.append((_FOCAL_35MM, 3, (round(exif.focal_35mm),)))
    gps: list[tuple[int, int, Any]] = []
    if exif.gps is not None:
        g = exif.gps
        gps += [
            (0, 1, (2, 3, 0, 0)),
            (_GPS_LAT_REF, 2, "S" if g.lat < 0 else "N"), (_GPS_LAT, 5, _dms(abs(g.lat))),
            (_GPS_LON_REF, 2, "W" if g.lon < 0 else "E"), (_GPS_LON, 5, _dms(abs(g.lon))),
            (_GPS_ALT_REF, 1, (1 if g.alt < 0 else 0,)), (_GPS_ALT, 5, (abs(g.alt),)),
        ]
    return EXIF_HEADER + _TiffWriter().build(ifd0, sub, gps)


def _utc(seconds: int) -> str:
    import time

    return time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(seconds))


def _dms(degrees: float) -> tuple[float, float, float]:
    d = math.floor(degrees)
    m = math.floor((degrees - d) * 60.0)
    return (float(d), float(m), (degrees - d - m / 60.0) * 3600.0)


class _TiffWriter:
    """A little-endian TIFF holding IFD0 with optional EXIF and GPS sub-IFDs."""

    def build(self, ifd0: list, sub: list, gps: list) -> bytes:
        # Layout: header, IFD0, EXIF IFD, GPS IFD, then the out-of-line values of each in turn.
        ifds = [list(ifd0), list(sub), list(gps)]
        if sub:
            ifds[0].append((_EXIF_IFD, 4, (0,)))
        if gps:
            ifds[0].append((_GPS_IFD, 4, (0,)))
        sizes = [2 + 12 * len(entries) + 4 if entries else 0 for entries in ifds]
        starts = [8, 8 + sizes[0], 8 + sizes[0] + sizes[1]]
        ptrs = {_EXIF_IFD: starts[1], _GPS_IFD: starts[2]}
        heap_at = 8 + sum(sizes)
        body, heap = bytearray(), bytearray()
        for entries in ifds:
            if not entries:
                continue
            entries.sort(key=lambda e: e[0])
            body += struct.pack("<H", len(entries))
            for tag, typ, value in entries:
                if tag in ptrs:
                    value = (ptrs[tag],)
                raw = self._encode(typ, value)
                count = len(raw) // _TYPE_SIZE[typ]
                body += struct.pack("<HHI", tag, typ, count)
                if len(raw) <= 4:
                    body += raw.ljust(4, b"\x00")
                else:
                    body += struct.pack("<I", heap_at + len(heap))
                    heap += raw + (b"\x00" if len(raw) % 2 else b"")
            body += struct.pack("<I", 0)
        return b"II" + struct.pack("<HI", 42, 8) + bytes(body) + bytes(heap)

    @staticmethod
    def _encode(typ: int, value: Any) -> bytes:
        if typ == 2:
            return value.encode("ascii") + b"\x00"
        if typ == 5:
            out = b""
            for v in value:
                den = 1_000_000 if v < 4000 else 1000
                out += struct.pack("<II", round(v * den), den)
            return out
        code = {1: "B", 3: "H", 4: "I"}[typ]
        return struct.pack("<" + code * len(value), *value)


__all__ = ["PhotoExif", "exif_bytes", "parse_exif", "read_exif"]
