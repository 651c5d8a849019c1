"""Appearance matching: the stored table, the matching order, overlap views, the frozen render
and the code optimisation on tiny untrained fields."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from blocknerf.model.block import BlockModel
from blocknerf.capture.frames import Capture, Frame, Intrinsics
from blocknerf.errors import InputError
from blocknerf.model.bounds import BlockBounds
from blocknerf.model.config import HashGridConfig, ModelConfig, OccupancyConfig, SamplerConfig
from blocknerf.model.field import BlockField
from blocknerf.model.renderer import Rays
from blocknerf.capture.rays import image_rays
from partitioning import BlockPlan, BlockSpec, PartitionConfig
from partitioning.layouts import heading_poses
from streaming.appearance import AppearanceTable, MatchedCode, match_order, optimise_code, overlap_views
from streaming.config import MatchConfig
from streaming.protocol import CameraView

TINY = ModelConfig(
    hashgrid=HashGridConfig(levels=4, log2_table_size=12, base_resolution=8, max_resolution=64),
    occupancy=OccupancyConfig(resolution=16),
    sampler=SamplerConfig(min_step=1.0 / 64.0, cone_angle=1.0 / 16.0, contracted_steps=16, max_samples_per_ray=64),
)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def tiny_block(seed: int = 0, block_id: str = "a") -> BlockModel:
    """An untrained tiny block (random MLPs, small random hash table) with 4 appearance codes,
    dense enough that rays end after about ten samples, as in a trained block."""
    torch.manual_seed(seed)
    fld = BlockField(TINY, num_images=4, with_exposure=False)
    with torch.no_grad():
        fld.encoding.table.uniform_(-0.5, 0.5)  # some structure, so views differ
        fld.density_mlp[-1].bias[0] += 5.0
    occupied = torch.ones((16, 16, 16), dtype=torch.bool)
    return BlockModel(block_id, BlockBounds((0.0, 0.0, 5.0), 20.0, 10.0), TINY, fld.eval(), occupied, ("f0", "f1", "f2", "f3"), version=1)


def view(x: float, y: float, yaw_deg: float, size: tuple[int, int] = (12, 9)) -> CameraView:
    c2w = heading_poses(np.array([[x, y, 2.0]]), np.array([math.radians(yaw_deg)]))[0]
    return CameraView(c2w, Intrinsics.from_fov(size[0], size[1], math.radians(80.0)))


def test_table_round_trip_and_lookup() -> None:
    table = AppearanceTable(
        codes={"a": MatchedCode(3, (0.0, 0.0)), "b": MatchedCode(2, (0.5, -0.25), ("a",), 0.02, 0.01, 4)},
        roots=("a",),
        manifest_serial=7,
    )
    back = AppearanceTable.from_dict(table.to_dict())
    assert back == table
    assert back.code(("b", 2)) == (0.5, -0.25)
    assert back.code(("b", 1)) is None and back.code(("c", 1)) is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [({"codes": {}}, "malformed"), ({"schema_version": 99}, "newer"), ({"schema_version": 1, "codes": {"a": {"code": [1]}}}, "malformed")],
    ids=["no-version", "newer", "no-code-version"],
)
def test_bad_tables_are_input_errors(doc: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        AppearanceTable.from_dict(doc, where="store/docs/appearance")


def _plan(centers: dict[str, tuple[float, float]], edges: list[tuple[str, str]]) -> BlockPlan:
    neighbours: dict[str, set[str]] = {b: set() for b in centers}
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    specs = tuple(
        BlockSpec(b, (x, y, 5.0), 30.0, 0.0, 10.0, neighbors=tuple(sorted(neighbours[b]))) for b, (x, y) in sorted(centers.items())
    )
    return BlockPlan(specs, "grid", PartitionConfig(), 30.0)


def test_match_order_is_breadth_first_from_the_centre() -> None:
    plan = _plan({"a": (0, 0), "b": (40, 0), "c": (80, 0), "d": (500, 0)}, [("a", "b"), ("b", "c")])
    assert match_order(plan, ["a", "b", "c", "d"]) == [("b", ()), ("a", ("b",)), ("c", ("b",)), ("d", ())]
    assert match_order(plan, ["a", "b", "c"], root="a") == [("a", ()), ("b", ("a",)), ("c", ("b",))]
    # Unpublished blocks are left out (c is then cut off from a and b).
    assert match_order(plan, ["a", "c"]) == [("a", ()), ("c", ())]
    with pytest.raises(InputError, match="root block z"):
        match_order(plan, ["a"], root="z")


def test_a_block_is_matched_to_every_matched_neighbour() -> None:
    plan = _plan({"a": (0, 0), "b": (40, 0), "c": (20, 30)}, [("a", "b"), ("b", "c"), ("a", "c")])
    order = match_order(plan, ["a", "b", "c"], root="a")
    assert order[0] == ("a", ()) and order[-1][1] == ("a", "b")


def _frame(i: int, x: float, y: float, yaw: float) -> Frame:
    c2w = heading_poses(np.array([[x, y, 2.0]]), np.array([math.radians(yaw)]))[0]
    return Frame(f"f{i}", Path(f"f{i}.png"), Intrinsics.from_fov(64, 48, math.radians(80.0)), c2w, i)


def test_overlap_views_prefer_cameras_inside_both_blocks() -> None:
    frames = [_frame(0, 5.0, 0.0, 0.0), _frame(1, 25.0, 0.0, 90.0), _frame(2, -20.0, 0.0, 0.0), _frame(3, 25.0, 5.0, 180.0)]
    capture = Capture(Path("."), tuple(frames))
    a = BlockSpec("a", (0.0, 0.0, 5.0), 30.0, 0.0, 10.0, frames=("f0", "f1", "f2", "f3"), shares=(1, 1, 1, 1))
    b = BlockSpec("b", (40.0, 0.0, 5.0), 30.0, 0.0, 10.0, frames=("f0", "f1", "f3"), shares=(1, 1, 1))
    views = overlap_views(a, b, capture, count=5, width=16)
    assert [v.frame_id for v in views] == ["f1", "f3"]  # f0 stands outside b, f2 is not b's
    assert views[0].intrinsics.width == 16 and views[0].intrinsics.height == 12
    # No shared frames: four level views from the midpoint.
    c = BlockSpec("c", (40.0, 0.0, 5.0), 30.0, 0.0, 10.0)
    views = overlap_views(a, c, capture, count=6, width=16)
    assert len(views) == 4
    np.testing.assert_allclose(views[0].position, [20.0, 0.0, 2.0])


def test_optimising_the_code_recovers_a_neighbours_look() -> None:
    """Two blocks with the same weights: the reference renders with a non-zero code; matching the
    other block's code from zero makes its renders match (the seam loses its colour shift)."""
    reference, block = tiny_block(0, "ref"), tiny_block(0, "blk")
    target_code = torch.tensor([2.0, -1.5, 1.2, -1.0, 1.5, 0.6, -1.8, 1.0])
    views = [view(0.0, 0.0, yaw, (10, 8)) for yaw in (0.0, 180.0)]
    targets = []
    for v in views:
        o, d, _ = image_rays(np.array(v.c2w), v.intrinsics)
        out = reference.render_rays(Rays(o, d, target_code.expand(len(o), -1), None))
        targets.append((v, out.rgb, out.visibility))
    code, before, after = optimise_code(block, targets, MatchConfig(steps=80, lr=0.1, prior=0.0, batch_rays=64))
    assert before > 1e-3
    assert after < 0.05 * before
    # The loss reported is the ordinary render's: check it.
    o, d, _ = image_rays(np.array(views[0].c2w), views[0].intrinsics)
    rgb = block.render_rays(Rays(o, d, code.expand(len(o), -1), None)).rgb
    assert float(((rgb - targets[0][1]) ** 2).sum(dim=-1).mean()) < 0.1 * before
    # The fields were left untouched and trainable as before.
    assert all(p.requires_grad for p in block.field.parameters())
    assert code.shape == (8,) and not code.requires_grad


def test_a_code_that_would_raise_the_loss_is_not_taken() -> None:
    """A flat grey target and one Adam step of lr 100 (which moves every code value by about 100):
    the step overshoots, the loss with that code is higher, so the zero code is kept and the loss
    reported is the zero code's, computed here from the block's own renders."""
    block = tiny_block(1)
    v = view(0.0, 0.0, 0.0)
    n = v.intrinsics.width * v.intrinsics.height
    target = torch.full((n, 3), 0.5)
    origins, dirs, _ = image_rays(np.array(v.c2w), v.intrinsics)
    renders = []  # (code, rgb) of every full render with a code: the zero code's, then the candidate's
    render_rays = block.render_rays

    def recording(rays: Rays, **kwargs: object):  # noqa: ANN202
        out = render_rays(rays, **kwargs)
        if rays.appearance is not None:
            renders.append((rays.appearance[0].clone(), out.rgb))
        return out

    block.render_rays = recording
    code, before, after = optimise_code(block, [(v, target, torch.ones(n))], MatchConfig(steps=1, lr=100.0, prior=0.0))
    weight = render_rays(Rays(origins, dirs, None, None)).visibility.clamp(0, 1)

    def loss(rgb: torch.Tensor) -> float:
        return float((((rgb - target) ** 2).sum(dim=-1) * weight).sum() / weight.sum())

    (zero, zero_rgb), (candidate, candidate_rgb) = renders
    assert torch.count_nonzero(zero) == 0 and before == pytest.approx(loss(zero_rgb), rel=1e-6)
    assert float(candidate.abs().min()) > 50.0 and loss(candidate_rgb) > before  # the step overshot
    assert torch.count_nonzero(code) == 0 and after == before
