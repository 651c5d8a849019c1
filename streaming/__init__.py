"""Streaming a city of blocks: load blocks on demand within a memory budget and blend them per view.

    from streaming import BlockStreamer, Compositor, StreamConfig, read_camera_path, render_flythrough
    streamer = BlockStreamer.open("city.zarr", StreamConfig(memory_budget_mb=512))
    frame = Compositor(streamer).render(view)            # CameraView -> CompositeFrame
    render_flythrough(streamer, read_camera_path("camera_path.json"), size=(320, 240), video="fly.mp4")

Pieces: ``BlockIndex`` (KD-tree of block centres), ``BlockCache`` (LRU under a byte budget),
``Prefetcher`` (background loads along the camera's path), ``BlockStreamer`` (store + manifest +
index + cache), ``Compositor`` (select, visibility test, inverse-distance blend), appearance
matching across neighbours, nerfstudio camera paths and an automatic path, flythroughs to mp4,
the composite's held-out evaluation, and the live browser viewer (``Viewer`` on viser, with a
``LiveRenderer`` thread that always renders the latest camera). Importing this package is cheap:
names load on first use, and torch only with the modules that render.
"""

from blocknerf.lazy import lazy_exports

_EXPORTS = {
    "AppearanceTable": "streaming.appearance",
    "MatchedCode": "streaming.appearance",
    "match_appearance": "streaming.appearance",
    "blend_weights": "streaming.blend",
    "BlockCache": "streaming.cache",
    "BlockTooLargeError": "streaming.cache",
    "CacheCounters": "streaming.cache",
    "CacheFullError": "streaming.cache",
    "CameraPath": "streaming.camera_path",
    "auto_path": "streaming.camera_path",
    "keyframe_document": "streaming.camera_path",
    "read_camera_path": "streaming.camera_path",
    "BlockUse": "streaming.compositor",
    "CompositeFrame": "streaming.compositor",
    "Compositor": "streaming.compositor",
    "AutoPathConfig": "streaming.config",
    "MatchConfig": "streaming.config",
    "StreamConfig": "streaming.config",
    "ViewerConfig": "streaming.config",
    "parse_bytes": "streaming.config",
    "evaluate_composite": "streaming.evaluation",
    "FlythroughResult": "streaming.flythrough",
    "render_flythrough": "streaming.flythrough",
    "BlockIndex": "streaming.index",
    "Candidate": "streaming.index",
    "LiveCamera": "streaming.live_renderer",
    "LiveFrame": "streaming.live_renderer",
    "LiveRenderer": "streaming.live_renderer",
    "ResolutionPolicy": "streaming.live_renderer",
    "BlockState": "streaming.overview_map",
    "draw_overview": "streaming.overview_map",
    "fit_levels": "streaming.levels",
    "level_for": "streaming.levels",
    "Prefetcher": "streaming.prefetch",
    "BlockKey": "streaming.protocol",
    "CameraView": "streaming.protocol",
    "LevelKey": "streaming.protocol",
    "RenderableBlock": "streaming.protocol",
    "BlockSource": "streaming.streamer",
    "BlockStreamer": "streaming.streamer",
    "StoreSource": "streaming.streamer",
    "Viewer": "streaming.viewer",
    "write_keyframes": "streaming.viewer",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
