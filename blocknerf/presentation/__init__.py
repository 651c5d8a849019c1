"""What people look at rather than read: the block map, GeoJSON footprints, the demo and its report.

    from blocknerf.presentation import draw_block_map, plan_to_geojson, run_demo, write_report
"""

from blocknerf.lazy import lazy_exports

_EXPORTS = {
    "draw_block_map": "blocknerf.presentation.blockmap",
    "PRESET_NAMES": "blocknerf.presentation.demo",
    "DemoPreset": "blocknerf.presentation.demo",
    "run_demo": "blocknerf.presentation.demo",
    "plan_to_geojson": "blocknerf.presentation.geojson",
    "screenshot": "blocknerf.presentation.report",
    "write_report": "blocknerf.presentation.report",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
