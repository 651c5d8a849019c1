"""The per-block model: a hash-grid NeRF over the block's contracted space.

Layers, bottom up: ``hashgrid`` (the multiresolution hash encoding) and ``sh`` (view directions)
-> ``field`` (density, colour and visibility MLPs) -> ``bounds`` (the block's contraction),
``occupancy`` and ``marching`` (where samples go), ``volume`` (compositing) -> ``renderer`` (rays to
colours) -> ``block`` (a trained block loaded from the store). The render-only bake:
``bake`` (field -> grid), ``baked_grid`` (the grid and its renderer), ``baked_block`` (a block
rendered from its bake), ``loading`` (bake or network, as asked). ``config`` holds their settings and
imports no torch; the other names load on first use.
"""

from blocknerf.lazy import lazy_exports

_EXPORTS = {
    "bake_block": "blocknerf.model.bake",
    "bake_field": "blocknerf.model.bake",
    "BakedBlock": "blocknerf.model.baked_block",
    "BakedGrid": "blocknerf.model.baked_grid",
    "render_grid": "blocknerf.model.baked_grid",
    "load_renderable": "blocknerf.model.loading",
    "BakeConfig": "blocknerf.model.config",
    "BlockModel": "blocknerf.model.block",
    "View": "blocknerf.model.block",
    "load_block": "blocknerf.model.block",
    "pick_device": "blocknerf.model.block",
    "BlockBounds": "blocknerf.model.bounds",
    "contract": "blocknerf.model.bounds",
    "uncontract": "blocknerf.model.bounds",
    "FieldConfig": "blocknerf.model.config",
    "HashGridConfig": "blocknerf.model.config",
    "ModelConfig": "blocknerf.model.config",
    "OccupancyConfig": "blocknerf.model.config",
    "SamplerConfig": "blocknerf.model.config",
    "BlockField": "blocknerf.model.field",
    "HashGridEncoding": "blocknerf.model.hashgrid",
    "march": "blocknerf.model.marching",
    "RaySamples": "blocknerf.model.marching",
    "OccupancyGrid": "blocknerf.model.occupancy",
    "BlockRenderer": "blocknerf.model.renderer",
    "Rays": "blocknerf.model.renderer",
    "RenderResult": "blocknerf.model.renderer",
    "transmittance_and_weights": "blocknerf.model.volume",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
