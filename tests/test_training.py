"""Training a block: it learns, it stores what it learned exactly, it resumes, it stops on NaN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from blocknerf.model.block import load_block
from blocknerf.capture.transforms import read_capture
from blocknerf.cli.settings import Settings
from blocknerf.config import read_preset, replace
from blocknerf.errors import InputError, TrainingError
from blocknerf.capture.images import load_image
from blocknerf.evaluation.metrics import psnr
from blocknerf.store import BlockStore
from blocknerf.training.trainer import train_block
from partitioning import BlockSpec, PartitionConfig, plan_blocks

# The tiny preset with a short schedule: 60 steps, warm-ups that end early in them, and 2
# held-out views evaluated after training.
SMALL = replace(
    replace(Settings(), read_preset("tiny"), where="preset tiny"),
    {"model": {"occupancy": {"warmup_steps": 16}}, "train": {"steps": 60, "warmup_steps": 5, "eval_views": 2}},
    where="tests/test_training.py SMALL",
)


class Recorder:
    """A TrainProgress that records steps and can interrupt training at a given step."""

    def __init__(self, fail_at: int | None = None, on_step=None) -> None:  # noqa: ANN001
        self.fail_at = fail_at
        self.on_step = on_step
        self.steps: list[int] = []
        self.started: list[int] = []

    def start(self, block_id, total, resumed_from):  # noqa: ANN001, ANN201
        self.started.append(resumed_from)

    def update(self, block_id, step, metrics):  # noqa: ANN001, ANN201
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        if step == self.fail_at:
            raise RuntimeError("simulated crash")

    def finish(self, block_id, stats):  # noqa: ANN001, ANN201
        pass


@pytest.fixture(scope="module")
def setup(tiny_city):
    settings = SMALL
    capture = read_capture(tiny_city)
    plan = plan_blocks(capture.camera_arrays(), PartitionConfig(spacing_m="auto"))
    return settings, capture, plan


@pytest.fixture
def store(setup, tmp_path):
    settings, capture, plan = setup
    return BlockStore.create(tmp_path / "s.zarr", plan=plan, capture=capture)


def _train(setup, store, *, progress=None, probe=None, **train):  # noqa: ANN001, ANN202
    settings, capture, plan = setup
    cfg = replace(settings.train, train)
    return train_block(plan.blocks[0], capture, settings.model, cfg, store, far_m=plan.far_m, progress=progress, probe=probe)


def test_a_trained_block_beats_a_flat_colour_and_loads_back_exactly(setup, store, single_torch_thread):
    settings, capture, plan = setup
    # A small block: the 40-odd frames within 12 m of a held-out view, so that 150 steps of a
    # thousand rays see each pixel of them about once.
    view = capture.test_frames[0]
    near = tuple(f.id for f in capture.frames if np.linalg.norm(f.c2w[:3, 3] - view.c2w[:3, 3]) < 12.0)
    assert 30 <= len(near) <= 60
    spec = dataclasses.replace(plan.blocks[0], frames=near, shares=tuple(1.0 for _ in near))
    steps = 150
    last = {}

    def probe(step, seconds, snapshot):  # noqa: ANN001, ANN202
        if step == steps:
            last["model"] = snapshot()

    cfg = replace(settings.train, {"steps": steps})
    result = train_block(spec, capture, settings.model, cfg, store, far_m=plan.far_m, probe=probe)
    assert result.version == 1 and result.stats["steps"] == steps
    gt = torch.from_numpy(load_image(view.image_path).copy()).float() / 255.0
    trained = last["model"].render_view(view.c2w, view.intrinsics, exposure=view.exposure)
    loaded = load_block(store, spec.id, version=result.version)
    again = loaded.render_view(view.c2w, view.intrinsics, exposure=view.exposure)
    assert torch.equal(trained.rgb, again.rgb) and torch.equal(trained.depth, again.depth)
    # Learned something: clearly better than the best constant image (the mean colour).
    flat = gt.reshape(-1, 3).mean(0).expand_as(gt)
    assert psnr(again.rgb, gt) > psnr(flat, gt) + 2.0
    assert result.stats["eval"]["views"] == 2 and result.stats["eval"]["psnr"] > psnr(flat, gt)


def test_an_interrupted_run_resumes_without_repeating_work(setup, store, single_torch_thread):
    crashed = Recorder(fail_at=25)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(setup, store, progress=crashed, checkpoint_every_steps=10)
    assert store.latest_checkpoint(setup[2].blocks[0].id).step == 20
    resumed = Recorder()
    result = _train(setup, store, progress=resumed, checkpoint_every_steps=10)
    assert resumed.started == [20] and resumed.steps[0] == 21 and resumed.steps[-1] == 60
    assert result.stats["steps"] == 60 and result.stats["resumed_from"] == 20
    assert store.latest_checkpoint(setup[2].blocks[0].id) is None  # a finished block keeps no checkpoint


def test_a_checkpoint_from_other_settings_is_not_resumed(setup, store, single_torch_thread):
    with pytest.raises(RuntimeError):
        _train(setup, store, progress=Recorder(fail_at=12), checkpoint_every_steps=10)
    other = Recorder()
    _train(setup, store, progress=other, steps=30, lr=5e-3)
    assert other.started == [0]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(setup, store, single_torch_thread):
    holder = {}

    def poison(step):  # noqa: ANN001, ANN202
        if step == 15:
            with torch.no_grad():
                holder["field"].encoding.table.fill_(float("nan"))

    def probe(step, seconds, snapshot):  # noqa: ANN001, ANN202
        holder["field"] = snapshot().field

    with pytest.raises(TrainingError, match=r"last good checkpoint, step 10"):
        _train(setup, store, progress=Recorder(on_step=poison), probe=probe, checkpoint_every_steps=10)
    ckpt = store.latest_checkpoint(setup[2].blocks[0].id)
    assert ckpt.step == 10
    assert all(np.isfinite(a).all() for k, a in ckpt.arrays.items() if a.dtype.kind == "f")


def test_a_block_without_training_frames_is_a_clear_error(setup, store):
    settings, capture, plan = setup
    tests_only = [f.id for f in capture.test_frames]
    spec = BlockSpec("b_empty", (0.0, 0.0, 5.0), 30.0, -5.0, 15.0, frames=tuple(tests_only), shares=tuple(1.0 for _ in tests_only))
    with pytest.raises(InputError, match="no training frames"):
        train_block(spec, capture, settings.model, settings.train, store, far_m=plan.far_m)


def test_a_fixed_backdrop_colour_is_parsed_and_bad_ones_are_refused() -> None:
    from blocknerf.training.config import TrainConfig, background_rgb

    assert background_rgb("random") is None
    assert background_rgb("white") == (1.0, 1.0, 1.0)
    assert background_rgb("#ebebeb") == pytest.approx((235 / 255,) * 3)
    for bad in ("pink", "#ebeb", "#ebebez", "ebebeb"):
        with pytest.raises(ValueError, match="background"):
            TrainConfig(background=bad).validate()


def test_views_are_scored_over_the_backdrop_a_block_was_trained_over(tmp_path) -> None:
    """A block that renders nothing is perfect against a photo of the bare backdrop when scored
    over that backdrop, and far off over the renderer's own grey."""
    from types import SimpleNamespace

    from PIL import Image

    from blocknerf.capture.frames import Frame, Intrinsics
    from blocknerf.evaluation.views import evaluate_views
    from blocknerf.model.block import View

    k = Intrinsics.from_fov(8, 6, 1.0)
    Image.fromarray(np.full((6, 8, 3), 235, dtype=np.uint8)).save(tmp_path / "bare.png")
    frame = Frame("bare.png", tmp_path / "bare.png", k, np.eye(4), 0)
    empty = View(torch.full((6, 8, 3), 0.5), torch.full((6, 8), float("inf")), torch.zeros(6, 8), torch.ones(6, 8))
    model = SimpleNamespace(device=torch.device("cpu"), renderer=SimpleNamespace(background=0.5),
                            render_view=lambda *a, **kw: empty)
    over_backdrop = evaluate_views(model, [frame], background=(235 / 255,) * 3)
    assert over_backdrop["psnr"] > 60
    assert evaluate_views(model, [frame])["psnr"] < 10
