"""The bake: native vs reference grid renderer, an analytic field baked and rendered, and baked
data in the store (round trip, determinism, rollback/gc keep a version's arrays together)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from blocknerf.model.bake import bake_field, bake_resolution, pixel_footprint_m
from blocknerf.model.baked_grid import BakedGrid, render_grid
from blocknerf.model.config import BakeConfig, SamplerConfig
from blocknerf.model.marching import step_edges


def _random_grid(seed: int, m: int = 4, b: int = 4, f: int = 5) -> BakedGrid:
    g = torch.Generator().manual_seed(seed)
    occ = torch.rand(m, m, m, generator=g) < 0.4
    index = torch.full((m, m, m), -1, dtype=torch.int32)
    index[occ] = torch.arange(int(occ.sum()), dtype=torch.int32)
    nb = int(occ.sum())
    density = torch.rand(nb, (b + 1) ** 3, generator=g) * 5.0
    features = torch.randint(0, 256, (nb, (b + 1) ** 3, f), generator=g, dtype=torch.uint8)
    return BakedGrid(index, density, features, torch.full((f,), 1.0 / 255.0), torch.zeros(f), b)


def _rays(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.rand(n, 3, generator=g) * 1.6 - 0.8
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return o, d


@pytest.mark.native_kernel("baked")
@pytest.mark.parametrize("seed", [0, 1, 2], ids=["grid0", "grid1", "grid2"])
def test_native_renderer_matches_the_reference(seed: int) -> None:
    grid = _random_grid(seed)
    o, d = _rays(seed + 10, 200)
    edges = torch.from_numpy(step_edges(SamplerConfig(), 1.0))
    fast = render_grid(grid, o, d, edges, t_stop=1e-4, min_weight=1e-4, backend="fast")
    ref = render_grid(grid, o, d, edges, t_stop=1e-4, min_weight=1e-4, backend="reference")
    assert (ref.opacity > 0.5).float().mean() > 0.3  # the rays do hit the grid
    torch.testing.assert_close(fast.features, ref.features, atol=1e-4, rtol=0)  # colours decode from these
    torch.testing.assert_close(fast.opacity, ref.opacity, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.depth, ref.depth, atol=1e-4, rtol=1e-5)


@pytest.mark.native_kernel("baked")
@pytest.mark.parametrize("f", [15, 3], ids=["f15", "f3"])
def test_native_renderer_skips_empty_space_exactly(f: int) -> None:
    """A sparse 16^3-brick grid (whole empty coarse cells, lone bricks, matter in the shell) seen
    by cameras inside and outside the block's region: skipping never changes a result."""
    g = torch.Generator().manual_seed(7)
    m, b = 16, 4
    occ = torch.rand(m, m, m, generator=g) < 0.08
    occ[:4, :4, :4] = False  # a whole empty coarse cell
    occ[0, 8, 8] = occ[15, 3, 12] = True  # bricks in the contracted shell
    index = torch.full((m, m, m), -1, dtype=torch.int32)
    index[occ] = torch.arange(int(occ.sum()), dtype=torch.int32)
    nb = int(occ.sum())
    density = torch.rand(nb, (b + 1) ** 3, generator=g) * 8.0
    features = torch.randint(0, 256, (nb, (b + 1) ** 3, f), generator=g, dtype=torch.uint8)
    grid = BakedGrid(index, density, features, torch.full((f,), 1.0 / 255.0), torch.zeros(f), b)
    o_in, d_in = _rays(3, 300)
    o_out = torch.nn.functional.normalize(torch.randn(300, 3, generator=g), dim=-1) * 1.7  # outside the region
    d_out = torch.nn.functional.normalize(-o_out + torch.randn(300, 3, generator=g) * 0.4, dim=-1)
    o, d = torch.cat([o_in, o_out]), torch.cat([d_in, d_out])
    d[:5, 0] = 0.0  # rays parallel to a face
    d = torch.nn.functional.normalize(d, dim=-1)
    edges = torch.from_numpy(step_edges(SamplerConfig(), 1.0))
    fast = render_grid(grid, o, d, edges, t_stop=1e-4, min_weight=1e-4, backend="fast")
    ref = render_grid(grid, o, d, edges, t_stop=1e-4, min_weight=1e-4, backend="reference")
    assert (ref.opacity > 0.01).float().mean() > 0.2
    torch.testing.assert_close(fast.features, ref.features, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.opacity, ref.opacity, atol=1e-4, rtol=0)
    # Depths reach hundreds of radii in the shell, where float32 sums in another order differ by ~1e-5.
    torch.testing.assert_close(fast.depth, ref.depth, atol=1e-4, rtol=1e-4)


# -- an analytic field: a coloured sphere of radius 0.5 (normalised units) in a block of radius 1 --
RADIUS = 0.5


def _sphere(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense inside the sphere; features = a colour that varies with position (the 'decoder' is the identity)."""
    u = x01 * 4.0 - 2.0  # the sphere lies inside the region, where the contraction is linear
    inside = u.norm(dim=-1) < RADIUS
    color = (u / (2 * RADIUS) + 0.5).clamp(0, 1)
    return torch.where(inside, torch.full_like(u[:, 0], 400.0), torch.zeros_like(u[:, 0])), color


def _analytic(o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R,) hit mask and (R,) distance to the sphere (unit directions)."""
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - RADIUS**2
    disc = b * b - c
    t = -b - disc.clamp(min=0).sqrt()
    return (disc > 0) & (t > 0), t


@pytest.mark.parametrize("backend", [pytest.param("fast", marks=pytest.mark.native_kernel("baked")), "reference"])
def test_a_baked_sphere_renders_the_analytic_image(backend: str) -> None:
    cfg = BakeConfig(brick=8, min_resolution=128, max_resolution=128)
    # Occupancy as training would leave it: the 32^3 cells near the sphere (so only those are baked).
    centres = (torch.stack(torch.meshgrid(*[torch.arange(32)] * 3, indexing="ij"), -1) + 0.5) / 32 * 4.0 - 2.0
    grid = bake_field(_sphere, 128, cfg, occupied=centres.norm(dim=-1) < RADIUS + 0.15)
    # A 48x48 pinhole camera one unit from the centre, looking at the sphere.
    n = 48
    ys, xs = torch.meshgrid(torch.linspace(-0.7, 0.7, n), torch.linspace(-0.7, 0.7, n), indexing="ij")
    d = torch.nn.functional.normalize(torch.stack([xs, ys, -torch.ones_like(xs)], -1).reshape(-1, 3), dim=-1)
    o = torch.tensor([0.0, 0.0, 1.0]).expand_as(d).contiguous()
    edges = torch.from_numpy(step_edges(SamplerConfig(min_step=1 / 256), 1.0))
    step = float((edges[1:] - edges[:-1])[edges[1:] < 0.55].max())  # the longest step before the far side
    out = render_grid(grid, o, d, edges, t_stop=1e-4, backend=backend)
    hit, t = _analytic(o, d)
    # Voxels are 4/128 = 0.031 units wide (the cube [-2, 2] over 128 cells): a ray within about one
    # voxel of the silhouette crosses partial density, so only pixels whose ray passes the sphere's
    # rim by more than two voxels (inside or outside) are held to tight bounds.
    miss = (o + (-(o * d).sum(-1, keepdim=True)) * d).norm(dim=-1)  # closest approach to the centre
    clear = (miss - RADIUS).abs() > 2 * 4.0 / 128
    assert clear.float().mean() > 0.6
    assert torch.all(out.opacity[clear & hit] > 0.999)
    assert torch.all(out.opacity[clear & ~hit] < 1e-3)
    # Depth: the density ramps up over one voxel at the surface (trilinear), and samples are one
    # step apart, so the expected hit lies within a voxel + a step of the analytic one.
    assert (out.depth - t)[clear & hit].abs().max() < 4.0 / 128 + step
    # Colour: the colour changes by 1 per unit of distance, so the depth bound above bounds it too,
    # plus 8-bit quantisation (half of 1/255).
    expected = (o + t[:, None] * d) / (2 * RADIUS) + 0.5
    err = (out.features - expected)[clear & hit].abs().max()
    assert err < 4.0 / 128 + step + 0.5 / 255


@pytest.mark.parametrize("backend", [pytest.param("fast", marks=pytest.mark.native_kernel("baked")), "reference"])
def test_masking_a_baked_sphere_removes_its_matter_only_where_asked(backend: str) -> None:
    """Erasing on the baked path: the half of the sphere at x > 0 is masked away; rays through
    the other half render as before, rays through the masked half see nothing, and the masked
    bricks leave the index (so the renderer skips them)."""
    cfg = BakeConfig(brick=8, min_resolution=128, max_resolution=128)
    centres = (torch.stack(torch.meshgrid(*[torch.arange(32)] * 3, indexing="ij"), -1) + 0.5) / 32 * 4.0 - 2.0
    grid = bake_field(_sphere, 128, cfg, occupied=centres.norm(dim=-1) < RADIUS + 0.15)
    half = grid.masked(lambda x01: x01[:, 0] * 4.0 - 2.0 <= 0.0)
    same = grid.masked(lambda x01: torch.ones(len(x01), dtype=torch.bool))
    assert int((half.brick_index >= 0).sum()) < int((grid.brick_index >= 0).sum())
    assert torch.equal(same.brick_index, grid.brick_index) and torch.equal(same.density, grid.density)
    n = 48
    ys, xs = torch.meshgrid(torch.linspace(-0.7, 0.7, n), torch.linspace(-0.7, 0.7, n), indexing="ij")
    d = torch.nn.functional.normalize(torch.stack([xs, ys, -torch.ones_like(xs)], -1).reshape(-1, 3), dim=-1)
    o = torch.tensor([0.0, 0.0, 1.0]).expand_as(d).contiguous()
    edges = torch.from_numpy(step_edges(SamplerConfig(min_step=1 / 256), 1.0))
    full = render_grid(grid, o, d, edges, t_stop=1e-4, backend=backend)
    cut = render_grid(half, o, d, edges, t_stop=1e-4, backend=backend)
    hit, t = _analytic(o, d)
    x_hit = (o + t[:, None] * d)[:, 0]
    voxel = 4.0 / 128
    kept, gone = hit & (x_hit < -2 * voxel), hit & (x_hit > 2 * voxel)
    # A ray that hits the kept half first can cross the cut plane only behind the surface.
    assert kept.sum() > 100 and gone.sum() > 100
    torch.testing.assert_close(cut.opacity[kept], full.opacity[kept], atol=1e-4, rtol=0)
    torch.testing.assert_close(cut.depth[kept], full.depth[kept], atol=1e-4, rtol=0)
    # Rays whose surface point was removed see at most the kept half behind it, never in front.
    assert torch.all(full.opacity[gone] > 0.999)
    assert torch.all((cut.opacity[gone] < 1e-3) | (cut.depth[gone] > t[gone] + voxel))


def test_resolution_follows_the_pixel_footprint() -> None:
    cfg = BakeConfig(min_resolution=64, max_resolution=512)
    # Cameras 20 m from the centre of a 10 m block, focal length 100 px: 0.2 m per pixel;
    # 20 m across the region / 0.2 m = 100 voxels, doubled for the contracted cube: 200 -> 224.
    fp = pixel_footprint_m(np.array([[20.0, 0, 0], [0, 20.0, 0]]), np.array([100.0, 100.0]), (0, 0, 0), 10.0)
    assert fp == pytest.approx(0.2)
    assert bake_resolution(10.0, fp, cfg) == 224
    assert bake_resolution(10.0, fp, cfg, max_detail=128) == 128
    assert bake_resolution(10.0, 10.0, cfg) == 64


# -- baked blocks in the store -------------------------------------------------------------------
def test_training_bakes_and_the_bake_round_trips_through_the_store(tiny_store: Path) -> None:
    from blocknerf.model.bake import bake_block, frames_footprint_m
    from blocknerf.model.baked_block import BakedBlock
    from blocknerf.model.block import load_block
    from blocknerf.model.loading import load_renderable
    from blocknerf.store import BlockStore

    store = BlockStore.open(tiny_store)
    block_id = store.block_ids()[0]
    version, arrays, attrs = store.read_published(block_id)
    assert attrs["baked"]["bricks"] > 0 and "baked.density" in arrays
    baked = load_renderable(store, block_id, version)
    assert isinstance(baked, BakedBlock)
    assert not any(k.startswith("field.encoding") for k in store.read_version(block_id, version, names=lambda n: not n.startswith("field.encoding"))[0])
    # Baking the stored network again gives the stored bytes (deterministic).
    model = load_block(store, block_id, version=version)
    capture = store.read_capture()
    frames = [f for f in capture.frames if f.id in set(attrs["image_ids"])]
    again, info = bake_block(model, BakeConfig(max_resolution=64), footprint_m=frames_footprint_m(frames, model.bounds))
    for name, a in again.items():
        assert a.dtype == arrays[name].dtype and a.tobytes() == arrays[name].tobytes(), name
    assert info["resolution"] == attrs["baked"]["resolution"]
    # The baked block renders what the network renders, roughly (a 64^3 bake of a tiny block).
    from blocknerf.capture.rays import image_rays
    from blocknerf.model.renderer import Rays

    f = frames[0]
    o, d, _ = image_rays(f.c2w, f.intrinsics)
    neural = model.render_rays(Rays(o, d))
    fast = baked.render_rays(Rays(o, d))
    assert torch.all((fast.rgb >= 0) & (fast.rgb <= 1))
    assert (fast.rgb - neural.rgb).abs().mean() < 0.1
    assert (fast.opacity - neural.opacity).abs().mean() < 0.1


def test_rollback_and_gc_keep_neural_and_baked_arrays_together(tiny_store_copy: Path) -> None:
    from blocknerf.cli.main import main
    from blocknerf.store import BlockStore

    url = str(tiny_store_copy)
    store = BlockStore.open(url)
    block_id = store.block_ids()[0]
    v1, arrays1, _ = store.read_published(block_id)
    assert main(["bake", url, "--blocks", block_id, "--force", "--quiet"]) == 0  # a new version v2
    store = BlockStore.open(url)
    v2, arrays2, attrs2 = store.read_published(block_id)
    assert v2 == v1 + 1 and attrs2["reason"] == "bake"
    assert set(arrays2) == set(arrays1)
    assert all(arrays1[k].tobytes() == arrays2[k].tobytes() for k in arrays1)  # same network, same bake
    assert main(["rollback", url, block_id, "--to", str(v1)]) == 0
    assert main(["gc", url, "--keep", "1"]) == 0
    store = BlockStore.open(url)
    v3, arrays3, attrs3 = store.read_published(block_id)
    assert [v.version for v in store.versions(block_id)] == [v3]
    store.read_version(block_id, v3, verify=True)  # one checksum covers network and bake
    assert set(arrays3) == set(arrays1) and "baked" in attrs3


def test_levels_halve_the_resolution_down_to_four_bricks() -> None:
    from blocknerf.model.bake import level_prefix, level_resolutions

    assert level_resolutions(256, BakeConfig()) == [32, 64, 128, 256]
    assert level_resolutions(256, BakeConfig(levels=2)) == [128, 256]
    assert level_resolutions(96, BakeConfig()) == [96]  # 48 is not a multiple of 4 bricks of 8
    assert level_resolutions(64, BakeConfig(brick=4)) == [16, 32, 64]
    assert level_prefix(256, 256) == "baked." and level_prefix(64, 256) == "baked.r64."


def test_each_level_is_stored_apart_and_loads_alone(tiny_store_copy: Path) -> None:
    """The tiny store's bakes hold two levels (32^3 and 64^3); each loads by itself, is verified by
    its own arrays' checksums, and a coarse level's corruption does not stop the fine one."""
    from blocknerf.model.bake import stored_levels
    from blocknerf.model.loading import level_array, load_renderable
    from blocknerf.store import BlockStore

    store = BlockStore.open(tiny_store_copy)
    block_id = store.block_ids()[0]
    version, arrays, attrs = store.read_published(block_id)
    levels = stored_levels(attrs["baked"])
    assert [lv["resolution"] for lv in levels] == [32, 64] and [lv["prefix"] for lv in levels] == ["baked.r32.", "baked."]
    read = {lv["prefix"]: store.read_version(block_id, version, names=level_array(lv["prefix"]))[0] for lv in levels}
    assert not any(k.startswith("baked.r32.") for k in read["baked."]) and "baked.density" not in read["baked.r32."]
    coarse, fine = (load_renderable(store, block_id, version, level=k) for k in (0, 1))
    assert coarse.grid.resolution == 32 and fine.grid.resolution == 64
    assert coarse.nbytes < fine.nbytes
    # The bytes a level will hold, estimated from the version's attributes alone (what the
    # streamer charges before loading), match an estimate from the stored arrays' metadata, and
    # cover what the level holds once loaded.
    from blocknerf.model.loading import baked_nbytes_estimate

    class WithoutHeadBytes:  # the store as a bake written before ``heads_nbytes`` shows it
        def __getattr__(self, name):
            return getattr(store, name)

        def version_info(self, *key):
            info = store.version_info(*key)
            baked = {k: v for k, v in info.attrs["baked"].items() if k != "heads_nbytes"}
            return type(info)(info.block_id, info.version, {**info.attrs, "baked": baked})

    assert attrs["baked"]["heads_nbytes"] > 0
    for k, loaded in enumerate((coarse, fine)):
        estimate = baked_nbytes_estimate(store, block_id, version, k)
        assert estimate == baked_nbytes_estimate(WithoutHeadBytes(), block_id, version, k)
        assert loaded.nbytes <= estimate <= loaded.nbytes + (1 << 13)
    # Damage the coarse level's density: that level fails its checksum, the finest still loads.
    arr = __import__("zarr").open_array(str(tiny_store_copy / "blocks" / block_id / f"v{version}" / "baked.r32.density"), mode="r+")
    arr[0, 0] = np.float16(1234.0) if arr[0, 0] != 1234.0 else np.float16(0.0)
    from blocknerf.errors import StoreError

    with pytest.raises(StoreError, match="checksum"):
        load_renderable(store, block_id, version, level=0)
    assert load_renderable(store, block_id, version, level=1).grid.resolution == 64


def test_fused_colour_decode_matches_the_heads() -> None:
    """The baked block's fused decode (dequantisation folded in, a shared appearance code and
    exposure as a bias) gives the colour and visibility heads' outputs, shared or per ray."""
    from blocknerf.model.baked_block import ColorHeads
    from blocknerf.model.renderer import Rays

    g = torch.Generator().manual_seed(3)
    rnd = lambda *s: torch.randn(*s, generator=g) * 0.3
    f, a, s = 15, 8, 16
    w = {
        "color_geo.weight": rnd(64, f), "color_geo.bias": rnd(64), "color_ray.weight": rnd(64, s + a + 1),
        "color_rest.0.weight": rnd(64, 64), "color_rest.0.bias": rnd(64), "color_rest.2.weight": rnd(3, 64), "color_rest.2.bias": rnd(3),
        "vis_geo.weight": rnd(32, f), "vis_geo.bias": rnd(32), "vis_ray.weight": rnd(32, s), "vis_out.weight": rnd(1, 32), "vis_out.bias": rnd(1),
        "appearance.weight": rnd(5, a),
    }
    heads = ColorHeads(w, 4, True)
    n = 300
    q = torch.rand(n, f, generator=g) * 255
    scale, offset = torch.rand(f, generator=g) / 100, rnd(f)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    for app, exposure in (
        (w["appearance.weight"][2].expand(n, -1), torch.full((n,), 0.5)),  # one image: shared inputs
        (w["appearance.weight"][torch.randint(0, 5, (n,), generator=g)], torch.rand(n, generator=g)),  # per ray
        (None, None),
    ):
        rays = Rays(torch.zeros(n, 3), d, app, exposure)
        rgb, vis = heads.decode_folded(q, rays, scale, offset)
        rgb_ref, vis_ref = heads.decode_reference(q * scale + offset, rays)
        torch.testing.assert_close(rgb, rgb_ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(vis, vis_ref, atol=1e-5, rtol=0)


def test_a_coarse_level_marches_with_steps_as_long_as_its_voxels_allow() -> None:
    """Level k of a bake is sampled at about as many steps per voxel as the finest level: a grid
    4x coarser takes steps 4x longer (about 4x fewer), and the finest keeps the sampler's own."""
    from blocknerf.model.baked_block import level_sampler

    sampler = SamplerConfig()
    assert level_sampler(sampler, 256, 256) is sampler
    coarse = level_sampler(sampler, 256, 64)
    assert (coarse.min_step, coarse.cone_angle) == (4 * sampler.min_step, 4 * sampler.cone_angle)
    assert coarse.contracted_steps == sampler.contracted_steps // 4
    fine_steps, coarse_steps = len(step_edges(sampler, 1.0)) - 1, len(step_edges(coarse, 1.0)) - 1
    assert 3.0 <= fine_steps / coarse_steps <= 4.5, (fine_steps, coarse_steps)
