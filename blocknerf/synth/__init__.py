"""The built-in synthetic city: a procedural, analytically defined city and its rendered capture.

It is the default scene of blocknerf and the ground truth of its tests: any view can be rendered
exactly (``render_city``), depth included, and ``--change`` makes the same city after a change.
Importing this package is cheap (numpy only; no torch).

    from blocknerf.synth import SynthConfig, synthesize, load_city, render_city
    capture = synthesize("out/city", SynthConfig(grid=(1, 1), width=64, height=48))
    city = load_city("out/city")
    rgb, depth = render_city(city, capture.frames[0].c2w, capture.frames[0].intrinsics)
"""

from blocknerf.synth.change import apply_change
from blocknerf.synth.city import Building, ChangeRegion, City, Lot, Prop, Street, load_city
from blocknerf.synth.config import SynthConfig
from blocknerf.synth.layout import build_city
from blocknerf.synth.materials import sky_colour
from blocknerf.synth.raycast import render_city
from blocknerf.synth.trajectory import RigView, drive_plan, look
from blocknerf.synth.writer import apply_appearance, capture_intrinsics, plan_capture, synthesize

__all__ = [
    "Building",
    "ChangeRegion",
    "City",
    "Lot",
    "Prop",
    "RigView",
    "Street",
    "SynthConfig",
    "apply_appearance",
    "apply_change",
    "build_city",
    "capture_intrinsics",
    "drive_plan",
    "load_city",
    "look",
    "plan_capture",
    "render_city",
    "sky_colour",
    "synthesize",
]
