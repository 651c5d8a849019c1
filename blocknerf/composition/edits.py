"""The store operations behind ``blocknerf compose``: place, move, remove, erase, list, load.

Each operation ends in one atomic manifest swap (``BlockStore.publish_objects``), so a reader
renders the scene before or after it, never half of it; every entry keeps the ones it replaced,
so ``rollback`` restores an earlier placement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blocknerf.composition.placement import Crop, EraseBox, Placement
from blocknerf.errors import InputError, StoreError
from blocknerf.store.manifest import Manifest, PublishedObject

__all__ = [
    "SceneObjects", "add_object", "erase_region", "erased_boxes", "load_scene_objects", "move_object", "object_rows",
    "objects_to_features", "parse_source", "position_from_lla", "remove_object",
]


@dataclass(frozen=True)
class SceneObjects:
    """What a manifest adds to the blocks: placed objects, ready to render, and erased boxes."""

    placed: tuple[Any, ...] = ()
    """``PlacedObject`` per placed object, in name order."""
    erases: tuple[EraseBox, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.placed or self.erases)


def parse_source(text: str) -> tuple[str, str | None]:
    """``SRC.zarr[:BLOCK]`` -> (store URL, block id or None); a URL's own colons stay in the URL."""
    head, sep, tail = text.rpartition(":")
    if sep and head and tail and "/" not in tail and not head.endswith(("s3", "gs", "file", "http", "https", "memory")):
        return head, tail
    return text, None


def position_from_lla(store: Any, lla: Sequence[float]) -> tuple[float, float, float]:
    """WGS84 (lat, lon, alt) -> the store's world frame (ENU metres around its geo origin)."""
    from blocknerf.capture.geo import LLA, GeoFrame

    plan = store.plan
    if plan.geo_origin is None:
        raise InputError(store.url, "the store has no geo origin, so --at LAT,LON,ALT has no meaning; use --at-enu")
    enu = GeoFrame(LLA(*plan.geo_origin)).lla_to_enu(np.asarray(lla, dtype=np.float64).reshape(1, 3))[0]
    m = plan.world_transform_array
    p = m[:3, :3] @ enu + m[:3, 3]
    return float(p[0]), float(p[1]), float(p[2])


def add_object(
    store: Any,
    source: str,
    *,
    name: str,
    position: Sequence[float],
    heading_deg: float = 0.0,
    pitch_deg: float = 0.0,
    roll_deg: float = 0.0,
    scale: float = 1.0,
    crop: Crop | None = None,
    anchor: Sequence[float] | None = None,
) -> PublishedObject:
    """Copy a trained block of ``source`` (``SRC.zarr[:BLOCK]``) into ``store`` as object ``name``
    and publish it at ``position``. Default crop: the source block's region (so its contracted
    surroundings -- the rest of its capture -- stay out); default anchor: the crop's centre."""
    from blocknerf.store import BlockStore
    from blocknerf.store.objects import check_object_name

    check_object_name(store.url, name)
    manifest = store.manifest()
    if name in manifest.objects:
        raise StoreError(store.url, f"object {name} exists already (move it, or remove it first)")
    src_url, block_id = parse_source(source)
    src = BlockStore.open(src_url)
    published = src.manifest().blocks
    if block_id is None:
        if len(published) != 1:
            choices = ", ".join(sorted(published)) or "none published"
            raise InputError(src_url, f"name the block to place as {src_url}:BLOCK (blocks: {choices})")
        block_id = next(iter(published))
    version, arrays, attrs = src.read_published(block_id)
    if crop is None:
        b = attrs["bounds"]
        crop = Crop("box", tuple(b["center"]), half_size=(b["radius"], b["radius"], b["half_height"]))
    placement = _placement(
        position=position, crop=crop, anchor=crop.center if anchor is None else anchor, heading_deg=heading_deg,
        pitch_deg=pitch_deg, roll_deg=roll_deg, scale=scale, source=f"{src_url}:{block_id}",
    )
    provenance = {"store": src_url, "block": block_id, "version": version, "checksum": attrs.get("checksum")}
    kept = {k: v for k, v in attrs.items() if k not in ("complete", "checksum", "created", "version", "block_id")}
    obj_version = store.write_object_version(name, arrays, {**kept, "source": provenance})
    return store.publish_objects({name: ("field", obj_version, placement.to_dict())}).objects[name]


def move_object(
    store: Any,
    name: str,
    *,
    position: Sequence[float] | None = None,
    heading_deg: float | None = None,
    pitch_deg: float | None = None,
    roll_deg: float | None = None,
    scale: float | None = None,
) -> PublishedObject:
    """Publish a new pose record for ``name`` (what is not given stays); its arrays are untouched.
    For an erased box, ``position`` moves its centre and ``heading_deg`` turns it."""
    entry = _entry(store, name)
    if entry.kind == "erase":
        box = EraseBox.from_dict(entry.placement)
        if pitch_deg is not None or roll_deg is not None or scale is not None:
            raise InputError(store.url, f"{name} is an erased box: only its position and heading can change")
        try:
            new = EraseBox(box.center if position is None else tuple(position), box.size,  # type: ignore[arg-type]
                           box.heading_deg if heading_deg is None else heading_deg)
        except ValueError as exc:
            raise InputError(store.url, f"{name}: {exc}") from None
        return store.publish_objects({name: ("erase", 0, new.to_dict())}).objects[name]
    try:
        placement = Placement.from_dict(entry.placement).moved(
            position=None if position is None else tuple(position), heading_deg=heading_deg, pitch_deg=pitch_deg,
            roll_deg=roll_deg, scale=scale,
        )
    except ValueError as exc:
        raise InputError(store.url, f"{name}: {exc}") from None
    return store.publish_objects({name: (entry.kind, entry.version, placement.to_dict())}).objects[name]


def remove_object(store: Any, name: str) -> None:
    """Take object (or erased box) ``name`` out of the scene; its arrays stay until ``gc``."""
    _entry(store, name)
    store.publish_objects({name: None})


def erase_region(store: Any, name: str, box: EraseBox) -> PublishedObject:
    """Publish an erased box: matter inside it is not rendered (non-destructive; ``remove`` undoes it)."""
    from blocknerf.store.objects import check_object_name

    check_object_name(store.url, name)
    if name in store.manifest().objects:
        raise StoreError(store.url, f"object {name} exists already (move it, or remove it first)")
    return store.publish_objects({name: ("erase", 0, box.to_dict())}).objects[name]


def object_rows(manifest: Manifest) -> list[dict[str, Any]]:
    """One JSON-ready row per object: name, kind, version, world position, heading, size."""
    rows = []
    for name, entry in sorted(manifest.objects.items()):
        row: dict[str, Any] = {"name": name, "kind": entry.kind, "version": entry.version or None,
                               "published_at": entry.published_at, "revisions": len(entry.history) + 1}
        if entry.kind == "erase":
            box = EraseBox.from_dict(entry.placement)
            row.update(position=list(box.center), heading_deg=box.heading_deg, size_m=list(box.size), source=None)
        else:
            p = Placement.from_dict(entry.placement)
            row.update(
                position=list(p.position), heading_deg=p.heading_deg, pitch_deg=p.pitch_deg, roll_deg=p.roll_deg,
                scale=p.scale, radius_m=round(p.radius_m, 3), crop=p.crop.kind, source=p.source,
            )
        rows.append(row)
    return rows


def objects_to_features(manifest: Manifest, plan: Any) -> list[dict[str, Any]]:
    """GeoJSON features (WGS84 polygons) of every object's and erased box's footprint."""
    from blocknerf.presentation.geojson import COORD_DECIMALS, NoGeoOriginError, plan_geo_frame

    geo = plan_geo_frame(plan)
    if geo is None:
        raise NoGeoOriginError()
    inv = np.linalg.inv(plan.world_transform_array)
    features = []
    for row, (name, entry) in zip(object_rows(manifest), sorted(manifest.objects.items())):
        if entry.kind == "erase":
            box = EraseBox.from_dict(entry.placement)
            outline, z = box.footprint(), box.center[2]
        else:
            p = Placement.from_dict(entry.placement)
            outline, z = p.footprint(), float(p.position[2])
        pts = np.column_stack([outline, np.full(len(outline), z)])
        lla = geo.enu_to_lla(pts @ inv[:3, :3].T + inv[:3, 3])
        ring = np.round(lla[:, [1, 0]], COORD_DECIMALS).tolist()
        features.append({
            "type": "Feature",
            "id": f"object:{name}",
            "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
            "properties": {**row, "feature": "object"},
        })
    return features


def erased_boxes(manifest: Manifest) -> tuple[EraseBox, ...]:
    """The manifest's erased boxes, in name order."""
    return tuple(EraseBox.from_dict(e.placement) for _, e in sorted(manifest.objects.items()) if e.kind == "erase")


def load_scene_objects(store: Any, manifest: Manifest, *, device: Any = "cpu", renderer: str = "baked") -> SceneObjects:
    """The manifest's objects, loaded and placed (``PlacedObject``), and its erased boxes. An
    object renders from its bake where it has one and ``renderer`` is ``baked``
    (``model.loading.renders_baked``), from its network otherwise."""
    from blocknerf.composition.placed import PlacedObject
    from blocknerf.model.baked_block import BakedBlock
    from blocknerf.model.block import BlockModel
    from blocknerf.model.loading import renders_baked

    erases = erased_boxes(manifest)
    placed = []
    for name, entry in sorted(manifest.objects.items()):
        if entry.kind != "field":
            continue
        arrays, attrs = store.read_object_version(name, entry.version)
        if renders_baked(attrs, renderer, device):
            source = BakedBlock.from_record(name, arrays, attrs, version=entry.version)
        else:
            source = BlockModel.from_record(name, arrays, attrs, version=entry.version, device=device)
        placed.append(PlacedObject(name, entry.version, source, Placement.from_dict(entry.placement), erases))
    return SceneObjects(tuple(placed), erases)


def _entry(store: Any, name: str) -> PublishedObject:
    entry = store.manifest().objects.get(name)
    if entry is None:
        known = ", ".join(sorted(store.manifest().objects)) or "none"
        raise StoreError(store.url, f"no object {name} (objects: {known})")
    return entry


def _placement(**fields: Any) -> Placement:
    try:
        return Placement(**fields)
    except ValueError as exc:
        raise InputError(None, str(exc)) from None

