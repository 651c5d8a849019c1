"""Composition: separately trained NeRFs placed into a scene, moved, removed; matter erased.

    from blocknerf.composition import add_object, move_object, erase_region
    add_object(store, "kiosk.zarr", name="kiosk", position=(3.0, -12.0, 0.0), heading_deg=30)

``placement`` holds the pose records (``Placement``, ``Crop``, ``EraseBox``), ``placed`` the
placed object as a renderable block and the erasing of matter, ``depth`` the compositing of
objects with the scene by depth along each ray, ``edits`` the store operations behind
``blocknerf compose``.
"""

from blocknerf.lazy import lazy_exports

_EXPORTS = {
    "Crop": "blocknerf.composition.placement",
    "EraseBox": "blocknerf.composition.placement",
    "Placement": "blocknerf.composition.placement",
    "rotation": "blocknerf.composition.placement",
    "PlacedObject": "blocknerf.composition.placed",
    "erase_predicate": "blocknerf.composition.placed",
    "restrict": "blocknerf.composition.placed",
    "composite_by_depth": "blocknerf.composition.depth",
    "SceneObjects": "blocknerf.composition.edits",
    "add_object": "blocknerf.composition.edits",
    "erase_region": "blocknerf.composition.edits",
    "load_scene_objects": "blocknerf.composition.edits",
    "move_object": "blocknerf.composition.edits",
    "object_rows": "blocknerf.composition.edits",
    "remove_object": "blocknerf.composition.edits",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
