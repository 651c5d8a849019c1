"""Composition on the tiny trained store: objects placed by depth, moved, removed, erased boxes.

The object placed in these tests is a piece of the tiny store itself (``STORE:BLOCK`` cropped to
a sphere around a facade point the ground truth names), so no second model needs training; the
city's ground truth (``city.json`` boxes, per-frame depth) says where the streets and buildings are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blocknerf.cli.main import main

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _render(store: Path, frame) -> np.ndarray:  # noqa: ANN001
    from streaming import BlockStreamer, CameraView, Compositor, StreamConfig

    return Compositor(BlockStreamer.open(store, StreamConfig())).render(CameraView(frame.c2w, frame.intrinsics)).rgb


def _project(frame, point: np.ndarray) -> tuple[float, float, float]:  # noqa: ANN001
    """(column, row, depth along the optical axis) of a world point in a frame."""
    cam = frame.c2w[:3, :3].T @ (np.asarray(point) - frame.c2w[:3, 3])
    k = frame.intrinsics
    z = -cam[2]
    return k.cx + k.fx * cam[0] / z, k.cy - k.fy * cam[1] / z, z


def _ray(frame, col: int, row: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """World origin and unit direction through a pixel centre."""
    k = frame.intrinsics
    d_cam = np.array([(col + 0.5 - k.cx) / k.fx, -(row + 0.5 - k.cy) / k.fy, -1.0])
    d = frame.c2w[:3, :3] @ d_cam
    return frame.c2w[:3, 3].copy(), d / np.linalg.norm(d)


@pytest.fixture(scope="module")
def scene(tiny_city: Path):  # noqa: ANN201
    """The capture and its ground truth: test frames, depth maps and building boxes."""
    from types import SimpleNamespace

    from blocknerf.capture.transforms import read_capture

    capture = read_capture(tiny_city)
    city = json.loads((tiny_city / "city.json").read_text())
    boxes = [(np.array([*b["lo"], 0.0]), np.array([*b["hi"], b["height_m"]])) for b in city["buildings"]]
    return SimpleNamespace(capture=capture, boxes=boxes, depth=lambda f: np.load(f.depth_path))


@pytest.fixture(scope="module")
def source(tiny_store: Path) -> tuple[str, str]:
    """``STORE:BLOCK`` of the object these tests place, and its crop centre: a 30 m sphere of one
    of the tiny store's blocks (placed at scale 0.1, a 3 m object; a tiny model's matter is thin,
    so a thick piece of it is needed to be clearly seen)."""
    from blocknerf.store import BlockStore

    store = BlockStore.open(tiny_store)
    block = store.plan.ids[0]
    _, _, attrs = store.read_published(block)
    return f"{tiny_store}:{block}", ",".join(f"{v:.3f}" for v in attrs["bounds"]["center"])


def _street_spot(scene, *, behind_building: bool):  # noqa: ANN001, ANN202
    """(frame, world point, ground-truth distance along the ray) where a 3 m object is seen in the open (``behind_building`` False: the
    ground truth sees at least 12 m past it) or hidden (beyond the far side of the first building
    the pixel's ray enters, still inside the image)."""
    for frame in scene.capture.test_frames:
        depth = scene.depth(frame)
        h, w = depth.shape
        row, col = h // 2, w // 2
        o, d = _ray(frame, col, row)
        t = depth[row, col] / abs(d @ -frame.c2w[:3, 2])
        if not behind_building and t > 26.0:
            return frame, o + 10.0 * d, t
        if behind_building and 5.0 < t < 20.0:
            hit = o + (t + 0.05) * d
            for lo, hi in scene.boxes:
                if ((lo - 0.1 <= hit) & (hit <= hi + 0.1)).all():
                    with np.errstate(divide="ignore"):
                        exits = np.maximum((lo - o) / d, (hi - o) / d)
                    t_exit = float(np.min(exits))
                    return frame, o + (t_exit + 5.0) * d, t
    raise AssertionError("no such spot in the tiny city")


def _add(store: Path, source: tuple[str, str], name: str, at: np.ndarray, *extra: str) -> None:
    src, centre = source
    args = ["compose", str(store), "add", src, "--name", name, f"--at-enu={','.join(f'{v:.3f}' for v in at)}",
            "--crop", "sphere", centre, "30", "--scale", "0.1", *extra]
    assert main(args) == 0


def test_a_placed_object_changes_the_pixels_around_it_and_remove_restores_the_render(tiny_store_copy, scene, source):  # noqa: ANN001
    frame, spot, _ = _street_spot(scene, behind_building=False)
    before = _render(tiny_store_copy, frame)
    _add(tiny_store_copy, source, "thing", spot)
    with_object = _render(tiny_store_copy, frame)
    col, row, z = _project(frame, spot)
    diff = np.abs(with_object - before).max(axis=2)
    h, w = diff.shape
    rows, cols = np.mgrid[0:h, 0:w]
    # A 3 m sphere at distance z covers about fx * 3 / z pixels of radius.
    r_px = frame.intrinsics.fx * 3.0 / z
    near = np.hypot(rows + 0.5 - row, cols + 0.5 - col) < 0.5 * r_px
    far = np.hypot(rows + 0.5 - row, cols + 0.5 - col) > 1.5 * r_px + 2
    assert near.any() and far.any()
    # The tiny model's matter looks like its surroundings, so the change is modest; far from the
    # object nothing changes beyond float rounding.
    assert diff[near].mean() > 0.01, diff[near].mean()
    assert diff[far].max() < 1e-4, diff[far].max()
    # The object was copied with its bake, so it renders through the baked path, like the blocks.
    from streaming import BlockStreamer, StreamConfig

    placed = BlockStreamer.open(tiny_store_copy, StreamConfig()).snapshot.objects.placed
    assert [type(p.source).__name__ for p in placed] == ["BakedBlock"]

    assert main(["compose", str(tiny_store_copy), "remove", "thing"]) == 0
    np.testing.assert_array_equal(_render(tiny_store_copy, frame), before)


class GroundTruthBlock:
    """The synthetic city itself as a block: exact colour and depth (opacity 1) by ray casting."""

    block_id, version, nbytes = "truth", 1, 1

    def __init__(self, city_dir: Path) -> None:
        from types import SimpleNamespace

        from blocknerf.synth import load_city
        from blocknerf.synth.scene import compile_scene

        self.scene = compile_scene(load_city(city_dir))
        self.bounds = SimpleNamespace(center=(0.0, 0.0, 0.0), radius=1000.0)

    def render_rays(self, rays):  # noqa: ANN001, ANN201
        import torch

        from blocknerf.model.renderer import RenderResult
        from blocknerf.synth.materials import shade
        from blocknerf.synth.raycast import cast

        o = rays.origins[0].numpy().astype(np.float32)
        d = rays.directions.numpy().astype(np.float32)
        hits = cast(self.scene, o, d)
        rgb = shade(self.scene, o, d, hits, np.zeros(len(d), dtype=np.float32))
        t = np.where(np.isfinite(hits.t), hits.t, 1e4).astype(np.float32)
        ones = torch.ones(len(d))
        return RenderResult(torch.from_numpy(np.clip(rgb, 0, 1)), torch.from_numpy(t), ones, ones)

    def appearance_code(self, frame_id=None):  # noqa: ANN001, ANN201
        return None


def test_an_object_behind_a_building_is_hidden_and_in_front_of_it_seen(tiny_city, tiny_store, scene, source, fakes):  # noqa: ANN001
    """The trained object placed into the exact city: behind the building the ground truth puts
    on its pixel's ray it changes nothing; in front of it, on the same ray, it shows."""
    from blocknerf.composition.edits import SceneObjects
    from blocknerf.composition.placed import PlacedObject
    from blocknerf.composition.placement import Crop, Placement
    from blocknerf.model.block import load_block
    from blocknerf.store import BlockStore
    from streaming import BlockStreamer, CameraView, Compositor, StreamConfig

    frame, spot, building_t = _street_spot(scene, behind_building=True)
    src, centre = source
    block = load_block(BlockStore.open(src.rsplit(":", 1)[0]), src.rsplit(":", 1)[1])
    c = tuple(float(v) for v in centre.split(","))
    o = frame.c2w[:3, 3]

    def render(at: np.ndarray | None) -> np.ndarray:
        class Source(fakes.Source):
            def scene_objects(self):  # noqa: ANN202
                if at is None:
                    return self.serial, SceneObjects()
                placement = Placement(tuple(at), Crop("sphere", c, 30.0), c, scale=0.1)
                return self.serial, SceneObjects((PlacedObject("thing", 1, block, placement),))

        streamer = BlockStreamer(Source([GroundTruthBlock(tiny_city)]), StreamConfig())
        return Compositor(streamer).render(CameraView(frame.c2w, frame.intrinsics)).rgb

    d = (spot - o) / np.linalg.norm(spot - o)
    empty, behind, in_front = render(None), render(spot), render(o + 0.5 * building_t * d)
    col, row, _ = _project(frame, spot)
    h, w = empty.shape[:2]
    rows, cols = np.mgrid[0:h, 0:w]
    window = np.hypot(rows + 0.5 - row, cols + 0.5 - col) < 2
    assert np.abs(in_front - empty).max(axis=2)[window].mean() > 0.05
    np.testing.assert_allclose(behind, empty, atol=1e-5)


@pytest.mark.parametrize("renderer", ["baked", "neural"])
def test_erasing_a_building_box_makes_the_render_see_further_there(tiny_store_copy, scene, renderer):  # noqa: ANN001
    from blocknerf.store import BlockStore
    from streaming import BlockStreamer, CameraView, Compositor, StreamConfig

    frame = None
    for f in scene.capture.test_frames:
        depth = scene.depth(f)
        h, w = depth.shape
        o, d = _ray(f, w // 2, h // 2)
        t = depth[h // 2, w // 2] / abs(d @ -f.c2w[:3, 2])
        if 5.0 < t < 20.0:
            hit = o + (t + 0.05) * d
            box = next(((lo, hi) for lo, hi in scene.boxes if ((lo - 0.1 <= hit) & (hit <= hi + 0.1)).all()), None)
            if box is not None:
                frame = f
                break
    assert frame is not None
    lo, hi = box
    # The box's image region: pixels whose ground-truth ray ends on this building.
    h, w = depth.shape
    region = np.zeros((h, w), dtype=bool)
    for r in range(h):
        for c in range(w):
            o, d = _ray(frame, c, r)
            p = o + (depth[r, c] / abs(d @ -frame.c2w[:3, 2]) + 0.05) * d
            region[r, c] = np.isfinite(p).all() and bool(((lo - 0.1 <= p) & (p <= hi + 0.1)).all())
    assert region.sum() > 20

    def rendered_depth() -> np.ndarray:
        streamer = BlockStreamer.open(tiny_store_copy, StreamConfig(renderer=renderer))
        compositor = Compositor(streamer)
        view = CameraView(frame.c2w, frame.intrinsics)
        key = streamer.select(view.position)[0].key
        depth = compositor.render_block(key, view).depth.reshape(h, w).numpy()
        for level_key in streamer.cache.keys():  # an erase keeps the block on the path asked for
            with streamer.cache.lease(level_key) as block:
                assert (type(block).__name__ == "BakedBlock") == (renderer == "baked")
        return depth

    before = rendered_depth()
    centre, size = 0.5 * (lo + hi), hi - lo + np.array([2.0, 2.0, 2.0])
    assert main(["compose", str(tiny_store_copy), "erase", "--name", "gone", "--box",
                 ",".join(f"{v:.3f}" for v in centre), ",".join(f"{v:.3f}" for v in size), "0"]) == 0
    after = rendered_depth()
    assert np.median(after[region]) > np.median(before[region]) + 3.0, (np.median(before[region]), np.median(after[region]))
    assert BlockStore.open(tiny_store_copy).manifest().objects["gone"].kind == "erase"
    assert main(["compose", str(tiny_store_copy), "remove", "gone"]) == 0
    np.testing.assert_array_equal(rendered_depth(), before)


def test_placement_round_trips_and_move_changes_only_the_pose_record(tiny_store_copy, source, capsys):  # noqa: ANN001
    from blocknerf.composition.placement import Placement
    from blocknerf.store import BlockStore

    src, centre = source
    assert main(["compose", str(tiny_store_copy), "add", src, "--name", "obj", "--at-enu=1,2,0.5", "--heading", "30",
                 "--scale", "0.5", "--crop", "sphere", centre, "3"]) == 0
    store = BlockStore.open(tiny_store_copy)
    entry = store.manifest().objects["obj"]
    placement = Placement.from_dict(entry.placement)
    assert placement.position == (1.0, 2.0, 0.5) and placement.heading_deg == 30.0 and placement.scale == 0.5
    assert placement.crop.kind == "sphere" and placement.crop.radius == 3.0
    assert Placement.from_dict(placement.to_dict()) == placement
    block = src.rsplit(":", 1)[1]
    arrays, _ = store.read_object_version("obj", entry.version, verify=True)
    source_arrays = BlockStore.open(src.rsplit(":", 1)[0]).read_published(block)[1]
    assert sorted(arrays) == sorted(source_arrays) and all(np.array_equal(arrays[k], source_arrays[k]) for k in arrays)
    blocks_before = store.manifest().blocks

    assert main(["compose", str(tiny_store_copy), "move", "obj", "--at-enu=4,5,0.5", "--heading", "60"]) == 0
    moved = BlockStore.open(tiny_store_copy).manifest()
    new = moved.objects["obj"]
    assert (new.kind, new.version, new.checksum) == (entry.kind, entry.version, entry.checksum)
    assert Placement.from_dict(new.placement) == placement.moved(position=(4.0, 5.0, 0.5), heading_deg=60.0)
    assert moved.blocks == blocks_before
    assert sorted(k for k in store._root["objects/obj"].group_keys()) == ["v1"]  # no new arrays

    assert main(["rollback", str(tiny_store_copy), "obj"]) == 0
    assert Placement.from_dict(BlockStore.open(tiny_store_copy).manifest().objects["obj"].placement) == placement

    capsys.readouterr()
    assert main(["compose", str(tiny_store_copy), "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["obj"] and rows[0]["position"] == [1.0, 2.0, 0.5]
    geojson = tiny_store_copy.parent / "blocks.geojson"
    assert main(["info", str(tiny_store_copy), "--geojson", str(geojson)]) == 0
    features = json.loads(geojson.read_text())["features"]
    obj = [f for f in features if f["properties"].get("feature") == "object"]
    assert len(obj) == 1 and obj[0]["properties"]["name"] == "obj" and obj[0]["geometry"]["type"] == "Polygon"


def test_gc_keeps_the_object_versions_the_scene_needs_and_drops_removed_ones(tiny_store_copy, source, capsys):  # noqa: ANN001
    from blocknerf.store import BlockStore

    src, centre = source
    add = ["add", src, "--at-enu=1,2,0.5", "--crop", "sphere", centre, "3"]
    for name in ("kept", "gone"):
        assert main(["compose", str(tiny_store_copy), *add, "--name", name]) == 0
    # Removed and placed again: a second version; the first is no longer named by the manifest.
    assert main(["compose", str(tiny_store_copy), "remove", "kept"]) == 0
    assert main(["compose", str(tiny_store_copy), *add, "--name", "kept"]) == 0
    assert main(["compose", str(tiny_store_copy), "remove", "gone"]) == 0
    store = BlockStore.open(tiny_store_copy)
    assert sorted(store._root["objects/kept"].group_keys()) == ["v1", "v2"]

    capsys.readouterr()
    assert main(["gc", str(tiny_store_copy), "--keep", "2", "--json"]) == 0
    assert sorted(map(tuple, json.loads(capsys.readouterr().out)["objects"])) == [("gone", 1), ("kept", 1)]
    store = BlockStore.open(tiny_store_copy)
    assert sorted(store._root["objects/kept"].group_keys()) == ["v2"]
    assert list(store._root["objects/gone"].group_keys()) == []
    store.read_object_version("kept", store.manifest().objects["kept"].version, verify=True)
    assert main(["gc", str(tiny_store_copy), "--keep", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "{src}", "--name", "x", "--at-enu", "1,2"], "--at-enu must be NUMBER,NUMBER,NUMBER"),
        (["add", "{src}", "--name", "x", "--at-enu", "1,2,3", "--scale", "0"], "--scale must be positive"),
        (["add", "{src}", "--name", "x/y", "--at-enu", "1,2,3"], "object name"),
        (["add", "{src}", "--name", "x", "--at-enu", "1,2,3", "--crop", "cone", "1"], "--crop must be"),
        (["move", "nothing", "--at-enu", "1,2,3"], "no object nothing"),
        (["remove", "nothing"], "no object nothing"),
        (["erase", "--name", "e", "--box", "0,0,0", "1,0,1", "0"], "box size must be positive"),
    ],
    ids=["short-position", "zero-scale", "bad-name", "bad-crop", "move-unknown", "remove-unknown", "flat-box"],
)
def test_bad_input_is_one_line_and_exit_2(tiny_store_copy, source, capsys, args, message):  # noqa: ANN001
    argv = ["compose", str(tiny_store_copy), *(a.replace("{src}", source[0]) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_synth_object_writes_a_360_capture_with_exact_depth_and_known_size(tmp_path):  # noqa: ANN001
    from blocknerf.capture.transforms import read_capture
    from blocknerf.synth.objects import BACKGROUND, build_object

    out = tmp_path / "kiosk"
    assert main(["synth", str(out), "--object", "kiosk", "--size", "32x24", "--views", "8", "--quiet"]) == 0
    capture = read_capture(out)
    doc = json.loads((out / "object.json").read_text())
    kiosk = build_object("kiosk")
    assert doc["size_m"] == pytest.approx([2.4, 2.05, 2.8]) and tuple(doc["size_m"]) == pytest.approx(kiosk.size_m)
    assert len(capture.frames) == 8 and len(capture.test_frames) == 1 and capture.geo_origin is None
    azimuths = sorted(f.extra["azimuth_deg"] for f in capture.frames)
    assert azimuths[-1] - azimuths[0] > 270.0  # all the way round
    for frame in capture.frames:
        depth = np.load(frame.depth_path)
        with Image_open(frame.image_path) as img:
            rgb = np.asarray(img, dtype=np.float64) / 255.0
        # Corners see the plain background; the centre ray hits the kiosk's body, whose distance
        # from the camera is at least its distance to the middle minus the half diagonal.
        assert np.isinf(depth[0, 0]) and np.allclose(rgb[0, 0], BACKGROUND, atol=1 / 255)
        middle_distance = float(np.linalg.norm(frame.c2w[:3, 3] - kiosk.center))
        half_diagonal = 0.5 * float(np.linalg.norm(kiosk.size_m))
        assert middle_distance - half_diagonal <= depth[12, 16] <= middle_distance


def Image_open(path):  # noqa: ANN001, ANN201, N802
    from PIL import Image

    return Image.open(path)


def test_a_manifest_written_before_objects_reads_as_having_none():
    from blocknerf.store.manifest import Manifest

    old = {"schema_version": 2, "serial": 4, "records": 0, "blocks": {"b": {"version": 1, "published_at": "t", "checksum": "c", "history": []}}}
    manifest = Manifest.from_dict(old)
    assert manifest.objects == {} and manifest.version_of("b") == 1
    assert Manifest.from_dict(manifest.to_dict()) == manifest


def test_a_placed_object_renders_only_the_rays_through_its_bounds():
    """Rays that miss the object's bounding sphere never reach its renderer and carry no matter;
    rays through it get the source's render unchanged."""
    import torch

    from blocknerf.composition.placed import PlacedObject
    from blocknerf.composition.placement import Crop, Placement
    from blocknerf.model.renderer import Rays, RenderResult

    class Source:
        """Opaque everywhere, so a ray shows whether it was rendered; remembers how many were."""

        rendered: list[int] = []

        def masked(self, keep):  # noqa: ANN001, ANN202
            return self

        def appearance_code(self, frame_id=None):  # noqa: ANN001, ANN202
            return None

        def render_rays(self, rays):  # noqa: ANN001, ANN202
            n = len(rays)
            self.rendered.append(n)
            return RenderResult(torch.full((n, 3), 0.2), torch.full((n,), 2.0), torch.ones(n), torch.ones(n))

    obj = PlacedObject("thing", 1, Source(), Placement((10.0, 0.0, 0.0), Crop("sphere", (0.0, 0.0, 0.0), 1.0), (0.0, 0.0, 0.0), scale=2.0))
    # From the origin: straight at the object (2 m radius at 10 m), just past its edge, away from it.
    directions = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.15, 0.0], [1.0, 0.3, 0.0], [-1.0, 0.0, 0.0]]), dim=-1)
    out = obj.render_rays(Rays(torch.zeros(4, 3), directions))
    assert Source.rendered == [2]
    torch.testing.assert_close(out.opacity, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(out.depth, torch.tensor([4.0, 4.0, 0.0, 0.0]))  # source depth x scale
    assert torch.all(out.rgb[:2] == 0.2) and torch.all(out.rgb[2:] == obj.background)


def test_placed_objects_take_their_bytes_off_the_memory_budget(fakes):  # noqa: ANN001
    from types import SimpleNamespace

    from blocknerf.composition.edits import SceneObjects
    from blocknerf.errors import StoreError
    from streaming import BlockStreamer, StreamConfig

    placed: list[SimpleNamespace] = [SimpleNamespace(nbytes=300_000)]

    class Source(fakes.Source):
        def scene_objects(self):  # noqa: ANN202
            return self.serial, SceneObjects(tuple(placed))

    source = Source(fakes.grid(2))
    streamer = BlockStreamer(source, StreamConfig(memory_budget_mb=1.0))
    assert (streamer.object_bytes, streamer.cache.max_bytes) == (300_000, 700_000)
    placed.clear()  # removed: the whole budget is the cache's again
    source.serial += 1
    streamer.refresh()
    assert (streamer.object_bytes, streamer.cache.max_bytes) == (0, 1_000_000)
    placed.append(SimpleNamespace(nbytes=2_000_000))
    source.serial += 1
    with pytest.raises(StoreError, match="placed objects take .* memory budget"):
        streamer.refresh()
