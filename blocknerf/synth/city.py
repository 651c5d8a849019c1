"""The synthetic city as data: streets, lots, buildings, props and change regions.

The city is a grid of ``nx x ny`` driven blocks. North-south street ``i`` has its centre line at
``x = (i - nx / 2) * pitch`` and east-west street ``j`` at ``y = (j - ny / 2) * pitch`` (pitch = block
size + street width), so the origin is the city centre. A ring of undriven blocks (indices -1 and
nx, ny) lines the outer streets so that every street is a canyon; beyond the ring lies open ground
crossed by the streets' continuations. Buildings are axis-aligned boxes standing on z = 0 (the road
surface, which is also the ground everywhere); props (the construction site of the change) are
boxes too, so the whole scene is analytic and any view renders exactly.

``City`` is plain data (it round-trips through ``city.json``). Functions of other modules act on
it: ``layout.build_city`` generates one, ``change.apply_change`` changes it, ``raycast.render_city``
renders it (compiling it once into arrays, ``scene.compile_scene``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


from blocknerf.config import from_dict as config_from_dict
from blocknerf.config import to_dict as config_to_dict
from blocknerf.errors import InputError
from blocknerf.synth.config import SynthConfig

SCHEMA_VERSION = 1
RGB = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Street:
    """One straight street of the driven grid."""

    name: str
    """``ns<i>`` (runs north-south, x constant) or ``ew<j>`` (runs east-west, y constant)."""
    axis: Literal["ns", "ew"]
    offset_m: float
    """Centre line: x of a north-south street, y of an east-west one."""
    start_m: float
    """Driven extent along the street (y for ns, x for ew): from the first intersection centre ..."""
    end_m: float
    """... to the last."""


@dataclass(frozen=True, slots=True)
class Lot:
    """A rectangle of a block's ground: built on, an empty lot (grass) or a hidden courtyard (paved)."""

    block: tuple[int, int]
    """Block index (i east, j north); -1 and nx / ny are the undriven outer ring."""
    lo: tuple[float, float]
    """(x, y) south-west corner."""
    hi: tuple[float, float]
    """(x, y) north-east corner."""
    kind: Literal["building", "empty", "courtyard"]
    street_facing: bool
    """Whether the lot touches the block's edge (a street)."""


@dataclass(frozen=True, slots=True)
class Building:
    """An axis-aligned box building with a facade of windows."""

    name: str
    lo: tuple[float, float]
    """(x, y) south-west corner of the footprint."""
    hi: tuple[float, float]
    """(x, y) north-east corner of the footprint."""
    height_m: float
    wall_rgb: RGB
    """Facade albedo."""
    trim_rgb: RGB
    """Cornice, plinth and window-surround albedo."""
    glass_rgb: RGB
    """Window albedo (varied per window by up to +-20%)."""
    roof_rgb: RGB
    floor_m: float
    """Storey height above the ground floor."""
    ground_floor_m: float
    """Height of the ground floor (shop fronts)."""
    window_w_m: float
    window_h_m: float
    window_spacing_m: float
    """Window column pitch along a face; columns are centred on each face."""
    key: int
    """Integer that seeds the per-window variation."""


@dataclass(frozen=True, slots=True)
class Prop:
    """A small box of street furniture (the construction site of the change)."""

    name: str
    kind: Literal["barrier", "cone", "fence", "cabin"]
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    rgb: RGB
    """Main albedo."""
    rgb2: RGB
    """Second albedo: barrier stripes, the cone's band, fence posts and rail, the cabin's door."""


@dataclass(frozen=True, slots=True)
class ChangeRegion:
    """A disc (in x, y) that contains everything the change added; outside it the cities agree."""

    centre_xy: tuple[float, float]
    radius_m: float
    kind: Literal["new_building", "construction"]

    def to_dict(self) -> dict[str, Any]:
        return {"centre_xy": list(self.centre_xy), "radius_m": self.radius_m, "kind": self.kind}


@dataclass(frozen=True, eq=False)
class City:
    """A procedural city: deterministic from its config's seed, renderable from any camera."""

    config: SynthConfig
    streets: tuple[Street, ...]
    lots: tuple[Lot, ...]
    buildings: tuple[Building, ...]
    props: tuple[Prop, ...] = ()
    change_regions: tuple[ChangeRegion, ...] = ()
    """Where ``changed()`` altered the city (empty for an original city)."""

    # -- geometry ----------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def extent_m(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the driven street grid (outer street centre lines)."""
        nx, ny = self.config.grid
        p = self.config.pitch_m
        return (-0.5 * nx * p, -0.5 * ny * p, 0.5 * nx * p, 0.5 * ny * p)

    @property
    def ring_extent_m(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the built-up area including the outer ring of blocks."""
        x0, y0, x1, y1 = self.extent_m
        d = self.config.pitch_m - 0.5 * self.config.street_width_m
        return (x0 - d, y0 - d, x1 + d, y1 + d)

    def block_rect(self, i: int, j: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of block (i, j) between its pavements."""
        x0, y0, _, _ = self.extent_m
        p, half = self.config.pitch_m, 0.5 * self.config.street_width_m
        return (x0 + i * p + half, y0 + j * p + half, x0 + (i + 1) * p - half, y0 + (j + 1) * p - half)

    def is_driven_block(self, block: tuple[int, int]) -> bool:
        nx, ny = self.config.grid
        return 0 <= block[0] < nx and 0 <= block[1] < ny

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``city.json``) from which ``from_dict`` rebuilds this city."""
        rows = lambda items: [_plain(dataclasses.asdict(x)) for x in items]  # noqa: E731
        return {
            "schema_version": SCHEMA_VERSION,
            "seed": self.config.seed,
            "changed": self.config.change,
            "config": config_to_dict(self.config),
            "extent_m": list(self.extent_m),
            "ring_extent_m": list(self.ring_extent_m),
            "streets": rows(self.streets),
            "lots": rows(self.lots),
            "buildings": rows(self.buildings),
            "props": rows(self.props),
            "change_regions": [r.to_dict() for r in self.change_regions],
        }

    @classmethod
    def from_dict(cls, doc: Any, *, where: str = "city.json") -> City:
        """Rebuild a city from ``to_dict``'s output; raises InputError naming ``where``."""
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            raise InputError(where, f"not a synthetic city description (schema_version {SCHEMA_VERSION} expected)")
        try:
            cfg = config_from_dict(SynthConfig, doc["config"], where=where)
            return cls(
                config=cfg,
                streets=tuple(_build(Street, d) for d in doc["streets"]),
                lots=tuple(_build(Lot, d) for d in doc["lots"]),
                buildings=tuple(_build(Building, d) for d in doc["buildings"]),
                props=tuple(_build(Prop, d) for d in doc["props"]),
                change_regions=tuple(_build(ChangeRegion, d) for d in doc["change_regions"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InputError(where, f"malformed city description ({type(exc).__name__}: {exc})") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``city.json`` (given the file or its directory)."""
        file = Path(path)
        if file.suffix != ".json":
            file = file / "city.json"
        file.write_text(json.dumps(self.to_dict(), indent=1))
        return file


def load_city(path: str | os.PathLike[str]) -> City:
    """Rebuild the city of a ``blocknerf synth`` output directory (or its ``city.json``)."""
    file = Path(path)
    if file.is_dir():
        file = file / "city.json"
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        raise InputError(file, "no city.json (not a 'blocknerf synth' output)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(file, f"unreadable city description ({exc})") from None
    return City.from_dict(doc, where=str(file))


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@functools.cache
def _tuple_fields(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if str(f.type).startswith(("tuple", "RGB")))


def _build(cls: type, data: dict[str, Any]) -> Any:
    """A dataclass from a dict whose tuple fields arrive as JSON lists."""
    tuples = _tuple_fields(cls)
    return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})


__all__ = ["Building", "ChangeRegion", "City", "Lot", "Prop", "Street", "load_city"]
