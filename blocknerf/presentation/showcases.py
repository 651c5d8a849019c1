"""Two things the demo shows beyond the pipeline, each run as the ``blocknerf`` commands a user
would type, and the figures the report takes from what those commands wrote:

* **baked against neural rendering**: the same frames of the drive rendered from the blocks'
  baked grids and from their networks (``render --renderer``); each one's seconds per frame, from
  the statistics ``render --stats`` writes, and the PSNR of the baked frames against the neural ones;
* **composition**: a small object (the synthetic kiosk) captured all around, trained as a store of
  its own, and placed on a pavement beside the drive (``compose add``; where: ``roadside``), with
  the drive up to it rendered before and after placing it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blocknerf.presentation.roadside import ObjectExtent, RoadsideSpot, pass_by_path, projected_box, roadside_spot

if TYPE_CHECKING:
    from blocknerf.presentation.demo import DemoRun

__all__ = ["OBJECT_KIND", "RENDERERS", "compare_renderers", "place_object", "placement_figures", "renderer_figures"]

RENDERERS = ("neural", "baked")
"""The renderers compared, in the order they run and are shown."""
OBJECT_KIND = "kiosk"
"""The synthetic object the demo places (``synth --object``), also its name in the scene."""
CROP_MARGIN = 1.05
"""The crop sphere's radius over the object's half diagonal: the whole object, and little of the
empty space around it that a briefly trained model fills with faint fog."""


def compare_renderers(demo: DemoRun, store: Path) -> dict[str, Any]:
    """Render ``preset.renderer_frames`` frames of the drive with each renderer; their figures."""
    preset, out = demo.preset, demo.out / "renderers"
    for renderer in RENDERERS:
        demo.run(
            f"render {preset.renderer_frames} frames of the drive from the blocks' {_renderer_words(renderer)}",
            ["render", store, "--auto", "--frames", preset.renderer_frames, "--size", preset.renderer_size, "--renderer", renderer,
             "--frames-dir", out / renderer, "--stats", out / f"{renderer}_stats.json"],
        )
    return renderer_figures(out)


def _renderer_words(renderer: str) -> str:
    return {"neural": "networks (--renderer neural)", "baked": "baked grids (--renderer baked)"}[renderer]


def renderer_figures(out: Path) -> dict[str, Any]:
    """The comparison's figures from ``out`` (``<renderer>/`` frames and ``<renderer>_stats.json``):
    per renderer the median seconds a frame took to draw its blocks (``s_per_frame``, from
    ``render_ms_median``: the renderers' own cost) and the median whole frame (``frame_s``, from
    ``frame_ms_median``: block loads it waited for included; a short cold render of large bakes
    waits for them), how many times faster baked draws, and the PSNR of each baked frame against
    the neural one (None where they are identical) and their mean."""
    figures: dict[str, Any] = {}
    for renderer in RENDERERS:
        summary = json.loads((out / f"{renderer}_stats.json").read_text())["summary"]
        figures[renderer] = {"s_per_frame": round(summary["render_ms_median"] / 1e3, 4), "frame_s": round(summary["frame_ms_median"] / 1e3, 4),
                             "frames": summary["frames"], "size": summary["size"]}
    neural, baked = (_frames(out / r) for r in RENDERERS)
    if [n for n, _ in neural] != [n for n, _ in baked]:
        raise ValueError(f"{out}: the renderers wrote different frames")
    per_frame = [{"image": name, "psnr": _psnr(b, n)} for (name, n), (_, b) in zip(neural, baked)]
    finite = [f["psnr"] for f in per_frame if f["psnr"] is not None]
    baked_s = figures["baked"]["s_per_frame"]
    return {
        **figures,
        "speedup": round(figures["neural"]["s_per_frame"] / baked_s, 1) if baked_s > 0 else None,
        "psnr": round(float(np.mean(finite)), 2) if finite else None,
        "per_frame": per_frame,
        "shown": per_frame[len(per_frame) // 2]["image"] if per_frame else None,
    }


def place_object(demo: DemoRun, store: Path, city_dir: Path) -> dict[str, Any]:
    """Capture and train the kiosk, place it beside the drive of the city in ``city_dir`` (its
    ``city.json``: streets and change discs) and render the drive up to it before and after;
    the figures of what changed."""
    import yaml

    from blocknerf.presentation.demo import merged
    from blocknerf.synth import load_city

    preset, out = demo.preset, demo.out
    capture, source, config = out / OBJECT_KIND, out / f"{OBJECT_KIND}.zarr", out / "object.yaml"
    demo.run(
        f"capture a small object all around: a {OBJECT_KIND}, {preset.object_views} views",
        ["synth", capture, "--object", OBJECT_KIND, "--size", preset.size, "--views", preset.object_views],
    )
    backdrop = json.loads((capture / "object.json").read_text())["capture"]["background"]
    config.write_text(f"# Settings of the demo's {OBJECT_KIND} store ({preset.name}): trained over the capture's plain backdrop.\n"
                      + yaml.safe_dump(merged(preset.object_config(), {"train": {"background": backdrop}}), sort_keys=False))
    demo.run(f"make the {OBJECT_KIND}'s capture a store of one block", ["partition", capture, "--store", source, "--config", config, "--map", out / f"{OBJECT_KIND}_map.png"])
    demo.run(f"train the {OBJECT_KIND} ({preset.object_train_s:.0f} s)", ["train", source, "--in-process"])

    extent = ObjectExtent.from_object_json(json.loads((capture / "object.json").read_text()))
    flythrough = json.loads((out / "camera_path.json").read_text())
    cameras = np.array([np.reshape(p["camera_to_world"], (4, 4))[:3, 3] for p in flythrough["camera_path"]])
    city = load_city(city_dir)
    spot = roadside_spot(city, cameras, avoid=city.change_regions, clearance_m=extent.half_diagonal_m)
    fov_y = float(np.median([p["fov"] for p in flythrough["camera_path"]]))
    path = pass_by_path(city, spot, frames=preset.pass_by_frames, size=_size(preset.pass_by_size), fov_y_deg=fov_y)
    renders = out / "composition"
    renders.mkdir(parents=True, exist_ok=True)
    (renders / "pass_by_path.json").write_text(json.dumps(path, indent=1))

    def render(which: str) -> list[Any]:
        return ["render", store, "--path", renders / "pass_by_path.json", "--frames-dir", renders / which, "--stats", renders / f"{which}_stats.json"]

    demo.run(f"render the drive along {spot.street} up to an empty pavement", render("before"))
    added = demo.run(
        f"place the {OBJECT_KIND} on that pavement, its front to the road",
        ["compose", store, "add", source, "--name", OBJECT_KIND, "--at-enu", _triple(spot.position), "--heading", f"{spot.heading_deg:g}",
         "--crop", "sphere", _triple(extent.centre), f"{CROP_MARGIN * extent.half_diagonal_m:.2f}", "--anchor", _triple(extent.base)],
    )
    listing = demo.run("list the scene's objects", ["compose", store, "list"], keep_output=True)
    demo.run(f"render the same drive with the {OBJECT_KIND} in the scene", render("after"))
    return {
        "object": OBJECT_KIND,
        "street": spot.street,
        "position": list(spot.position),
        "heading_deg": spot.heading_deg,
        "size_m": [round(b - a, 3) for a, b in zip(extent.lo, extent.hi)],
        "object_eval": _published_eval(source),
        "command": added.command,
        "list_command": listing.command,
        "list": (listing.output or "").strip(),
        **placement_figures(renders, path, spot, extent),
    }


def placement_figures(renders: Path, path: dict[str, Any], spot: RoadsideSpot, extent: ObjectExtent) -> dict[str, Any]:
    """Per pass-by frame (``renders/before``, ``renders/after``): the pixel box the placed object's
    bounding box projects to, and the mean per-pixel change (largest channel difference, 0..1)
    inside it and outside it; ``shown``: the last frame whose box is in the picture."""
    corners = spot.to_world(extent, extent.corners())
    frames = []
    for i, ((name, before), (_, after)) in enumerate(zip(_frames(renders / "before"), _frames(renders / "after"))):
        box = projected_box(path, i, corners)
        change = np.abs(after - before).max(axis=2)
        inside = np.zeros(change.shape, dtype=bool)
        if box is not None:
            inside[box[1] : box[3], box[0] : box[2]] = True
        frames.append({
            "image": name,
            "box": None if box is None else list(box),
            "change_inside": round(float(change[inside].mean()), 4) if inside.any() else None,
            "change_outside": round(float(change[~inside].mean()), 4) if (~inside).any() else None,
        })
    shown = [f["image"] for f in frames if f["box"] is not None]
    size = [int(path["render_width"]), int(path["render_height"])]
    return {"size": size, "frames": frames, "shown": shown[-1] if shown else None}


def _published_eval(store: Path) -> dict[str, Any] | None:
    """Held-out figures (views, PSNR, SSIM) of the published version of a one-block store."""
    from blocknerf.store import BlockStore

    opened = BlockStore.open(store)
    block = opened.plan.ids[0]
    version = opened.manifest().version_of(block)
    record = next((v for v in opened.versions(block) if v.version == version), None)
    ev = (record.attrs.get("eval") if record is not None else None) or {}
    return {k: ev[k] for k in ("views", "psnr", "ssim") if k in ev} or None


def _frames(directory: Path) -> list[tuple[str, np.ndarray]]:
    """(name, (H, W, 3) float64 in [0, 1]) of every PNG frame in ``directory``, in name order."""
    from blocknerf.capture.images import load_image

    return [(p.name, load_image(p).astype(np.float64) / 255.0) for p in sorted(directory.glob("*.png"))]


def _psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    from blocknerf.evaluation.metrics import mse_to_psnr

    value = mse_to_psnr(float(np.mean((a - b) ** 2)))
    return round(value, 2) if math.isfinite(value) else None


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def _triple(values: tuple[float, ...] | list[float]) -> str:
    return ",".join(f"{float(v):.2f}" for v in values)
