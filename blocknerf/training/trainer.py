"""``train_block``: optimise one block's field on the pixels that see it, with checkpoints.

One step: draw rays (mostly from pixels whose rays cross the block), march the occupancy grid,
render, take the photometric loss (+ the visibility head's loss, a small appearance-code penalty
and, with ``depth_loss_weight`` and depth maps, DS-NeRF's depth loss), and step Adam (fused; hash tables without weight decay). The occupancy grid is refreshed
every few steps. The number of rays per step adapts so that each step processes about
``samples_per_step`` samples, as in Instant-NGP.

Checkpoints go to the store every ``checkpoint_every_s`` seconds and on Ctrl-C; a run that finds a
checkpoint made with the same settings resumes from it (same step, optimiser state, occupancy and
random state), so no finished work is repeated. The finished block becomes a new, complete,
unpublished version in the store; the caller publishes it.

A warm-started run (an update) begins from a stored version of the block instead of a random
initialisation: hash tables and MLPs are copied, appearance codes are carried over for the images
the two share, and the occupancy grid starts afresh (so that new geometry, e.g. a building on a
lot that was empty, gets sampled). It runs ``warm_start_steps`` steps, fewer than from scratch,
with the learning-rate warm-up shortened in proportion (the weights need no settling in).
Two fingerprints tell runs apart: ``training_fingerprint`` says what a version was trained *for*
(region, training frames, settings) and decides whether a block is up to date, however it was
initialised; a run's own id adds the initial version and the step count, so a checkpoint is only
resumed by the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from blocknerf.model.block import BlockModel, pick_device
from blocknerf.capture.frames import Capture
from blocknerf.config import to_dict
from blocknerf.errors import ConfigError, InputError, TrainingError
from blocknerf.evaluation.views import evaluate_views
from blocknerf.evaluation.metrics import mse_to_psnr
from blocknerf.model.bake import bake_block, frames_footprint_m
from blocknerf.model.bounds import BlockBounds
from blocknerf.model.config import ModelConfig
from blocknerf.model.field import BlockField
from blocknerf.model.marching import step_edges
from blocknerf.model.occupancy import OccupancyGrid
from blocknerf.model.renderer import BlockRenderer, Rays
from blocknerf.store import BlockStore, fault_point
from blocknerf.training.config import TrainConfig, background_rgb
from blocknerf.training.data import BlockPixels
from blocknerf.training.state import checkpoint_arrays, restore_checkpoint
from partitioning import BlockSpec

# Settings that do not change what is learned; a checkpoint stays valid when only these change.
_NON_SEMANTIC = ("checkpoint_every_s", "checkpoint_every_steps", "eval_views", "device", "bake", "bake_grid")
# Settings of how a run starts, not of what the block is trained for: they enter the run's id
# (checkpoints) but not the fingerprint that says whether a block is up to date.
_RUN_ONLY = ("warm_start_steps",)


class TrainProgress(Protocol):
    """Receives progress of one block's training (a progress bar, a dask event stream, a test)."""

    def start(self, block_id: str, total_steps: int, resumed_from: int) -> None: ...

    def update(self, block_id: str, step: int, metrics: Mapping[str, float]) -> None: ...

    def finish(self, block_id: str, stats: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class BlockResult:
    """A finished block: the version written to the store and its statistics."""

    block_id: str
    version: int
    stats: Mapping[str, Any] = field(default_factory=dict)


def training_fingerprint(
    spec: BlockSpec, model_cfg: ModelConfig, train_cfg: TrainConfig, far_m: float, held_out: Collection[str] = ()
) -> str:
    """A hash of what a block is trained for (region, training frames, settings), however it was
    initialised. Frames in ``held_out`` (the capture's test split) are left out: they are only
    rendered for evaluation, so gaining or losing one does not make a block out of date."""
    train = {k: v for k, v in to_dict(train_cfg).items() if k not in _NON_SEMANTIC + _RUN_ONLY}
    held_out = set(held_out)
    frames = [f for f in spec.frames if f not in held_out]
    doc = {
        "block": {"center": list(spec.center), "radius_m": spec.radius_m, "z": [spec.z_min, spec.z_max], "frames": frames},
        "model": to_dict(model_cfg),
        "train": train,
        "far_m": far_m,
    }
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def run_id(fingerprint: str, warm_start: WarmStart | None, run_cfg: TrainConfig, train_cfg: TrainConfig) -> str:
    """The identity of one training run: its fingerprint, plus the initial version and the run's
    own settings when those differ from a plain run (so checkpoints of plain runs keep their ids)."""
    run = {k: v for k, v in to_dict(run_cfg).items() if k not in _NON_SEMANTIC}
    if warm_start is None and run == {k: v for k, v in to_dict(train_cfg).items() if k not in _NON_SEMANTIC}:
        return fingerprint
    doc = {"fingerprint": fingerprint, "run": run, "init": None if warm_start is None else warm_start.checksum}
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def run_steps(train_cfg: TrainConfig, *, warm: bool) -> int:
    """Steps of a run: ``warm_start_steps`` (default a quarter of ``steps``) for a warm start,
    else ``steps``."""
    if warm:
        return train_cfg.warm_start_steps or max(1, train_cfg.steps // 4)
    return train_cfg.steps


def run_config(train_cfg: TrainConfig, *, warm: bool, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The settings a run trains with: ``train_cfg`` with the run's steps (``run_steps``), for a
    warm start the learning-rate warm-up shortened in the proportion of its steps to
    ``train_cfg.steps``, and ``overrides`` (TrainConfig fields for this run only, e.g. ``steps``
    or ``time_budget_s`` of an update)."""
    overrides = dict(overrides or {})
    n = overrides.pop("steps", None)
    n = run_steps(train_cfg, warm=warm) if n is None else n
    warmup = train_cfg.warmup_steps
    if warm and n < train_cfg.steps:
        warmup = max(1, round(warmup * n / train_cfg.steps))
    cfg = dataclasses.replace(train_cfg, steps=n, warmup_steps=warmup, **overrides)
    try:
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(None, f"train: {exc}") from None
    return cfg


@dataclass(frozen=True)
class WarmStart:
    """A stored version of a block that a run starts from."""

    version: int
    checksum: str
    model: BlockModel


def load_warm_start(
    store: BlockStore, block_id: str, version: int, model_cfg: ModelConfig, device: torch.device
) -> tuple[WarmStart | None, str]:
    """The version to start from, or None and why not (its model settings differ from ``model_cfg``)."""
    arrays, attrs = store.read_version(block_id, version)
    if attrs.get("model") != to_dict(model_cfg):
        return None, f"v{version} has other model settings; trained from scratch"
    model = BlockModel.from_record(block_id, arrays, attrs, version=version, device=device)
    return WarmStart(version, str(attrs["checksum"]), model), f"warm start from v{version}"


def block_seed(seed: int, block_id: str) -> int:
    """A per-block seed, stable across processes (unlike Python's salted hash)."""
    return (seed * 1_000_003 + int(hashlib.sha256(block_id.encode()).hexdigest()[:8], 16)) % (2**31)


def train_block(
    spec: BlockSpec,
    capture: Capture,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    store: BlockStore,
    *,
    far_m: float,
    progress: TrainProgress | None = None,
    probe: Callable[[int, float, Callable[[], BlockModel]], None] | None = None,
    warm_start: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | None = None,
) -> BlockResult:
    """Train (or resume) one block and write it to ``store`` as a new unpublished version.

    ``probe(step, train_seconds, snapshot)`` is called after every step, outside the timed part;
    ``snapshot()`` gives a BlockModel of the current state (benchmarks evaluate with it).
    ``warm_start``: a version of the block to start from (see the module docstring); it is
    ignored, and the run starts from scratch, when that version has other model settings.
    ``overrides``: settings of this run only (``run_config``), not part of the fingerprint.
    ``record``: extra attributes of the new version (e.g. why it was made).
    """
    device = pick_device(train_cfg.device)
    by_id = {f.id: f for f in capture.frames}
    frames = [by_id[fid] for fid in spec.frames if fid in by_id]
    train_frames = [f for f in frames if f.is_train]
    if not train_frames:
        raise InputError(store.url, f"block {spec.id} has no training frames (of {len(spec.frames)} assigned)")
    bounds = BlockBounds.from_spec(spec.center, spec.radius_m, spec.z_min, spec.z_max)
    held_out = {f.id for f in frames if not f.is_train}
    fingerprint = training_fingerprint(spec, model_cfg, train_cfg, far_m, held_out)
    seed = block_seed(train_cfg.seed, spec.id)
    init, init_note = (None, "") if warm_start is None else load_warm_start(store, spec.id, warm_start, model_cfg, device)
    cfg = run_config(train_cfg, warm=init is not None, overrides=overrides)
    run = run_id(fingerprint, init, cfg, train_cfg)

    with_depth = cfg.depth_loss_weight > 0 and any(f.depth_path is not None for f in train_frames)
    data = BlockPixels(train_frames, lambda o, d: spec.ray_crossing(o, d, far_m), device=device, with_depth=with_depth)
    backdrop = background_rgb(cfg.background)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fld = BlockField(model_cfg, num_images=data.num_images, with_exposure=data.log2_exposure is not None).to(device)
    carried = 0 if init is None else _copy_weights(init.model, fld, [f.id for f in train_frames])
    occupancy = OccupancyGrid(model_cfg.occupancy, min_step=model_cfg.sampler.min_step, device=device)
    edges = torch.from_numpy(step_edges(model_cfg.sampler, bounds.radius)).to(device)
    renderer = BlockRenderer(bounds, model_cfg.sampler, edges)
    optimizer = _optimizer(fld, cfg, device)
    generator = torch.Generator().manual_seed(seed)
    loop = _LoopState(n_rays=float(cfg.min_rays))

    checkpoint = store.latest_checkpoint(spec.id)
    if checkpoint is not None and checkpoint.attrs.get("fingerprint") == run:
        restore_checkpoint(checkpoint.arrays, checkpoint.attrs, fld, optimizer, occupancy, generator)
        loop = _LoopState.from_dict(checkpoint.attrs["loop"])
    resumed_from = loop.step
    if progress is not None:
        progress.start(spec.id, cfg.steps, resumed_from)

    def save_checkpoint() -> None:
        arrays, attrs = checkpoint_arrays(fld, optimizer, occupancy, generator)
        store.save_checkpoint(spec.id, loop.step, arrays, {**attrs, "fingerprint": run, "loop": loop.to_dict()})
        loop.last_checkpoint_step = loop.step

    fld.train()
    last_save = time.perf_counter()
    try:
        while loop.step < cfg.steps and not _out_of_time(loop, cfg):
            t0 = time.perf_counter()
            _set_lr(optimizer, cfg, loop)
            n_rays = int(min(cfg.max_rays, max(cfg.min_rays, loop.n_rays)))
            batch = data.sample(n_rays, generator, cfg.outside_ray_fraction)
            codes = fld.appearance_codes(batch.image_indices)
            log2e = None if data.log2_exposure is None else data.log2_exposure[batch.image_indices]
            rays = Rays(batch.origins, batch.directions, codes, log2e)
            out = renderer.render_train(fld, occupancy.occupied, rays, generator, depth=batch.depth, depth_sigma=cfg.depth_sigma)
            rgb = out.rgb + (1.0 - out.opacity)[:, None] * _background(backdrop, n_rays, generator, device)
            mse = torch.mean((rgb - batch.rgb) ** 2)
            loss = mse + cfg.visibility_weight * out.visibility_loss + cfg.distortion_weight * out.distortion_loss
            if batch.depth is not None:
                loss = loss + cfg.depth_loss_weight * out.depth_loss
            if codes is not None and cfg.appearance_l2 > 0:
                loss = loss + cfg.appearance_l2 * codes.pow(2).sum(dim=-1).mean()
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"block {spec.id}: loss became {loss.detach().item()} at step {loop.step}; training stopped "
                    f"(the last good checkpoint, step {loop.last_checkpoint_step}, is kept)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loop.step += 1
            if occupancy.due(loop.step):
                fld.eval()
                occupancy.update(fld.density_only, generator, loop.step)
                fld.train()
            # Adapt the batch so that a step processes about samples_per_step samples.
            per_ray = max(out.kept / n_rays, 1.0)
            loop.n_rays = 0.9 * loop.n_rays + 0.1 * (cfg.samples_per_step / per_ray) if loop.step > 1 else cfg.samples_per_step / per_ray
            dt = time.perf_counter() - t0
            loop.elapsed_s += dt
            mse_value = mse.detach().item()
            loop.ema_mse = mse_value if loop.step == 1 else 0.95 * loop.ema_mse + 0.05 * mse_value
            loop.rays += n_rays
            if progress is not None:
                progress.update(
                    spec.id,
                    loop.step,
                    {"loss": loss.detach().item(), "psnr": mse_to_psnr(loop.ema_mse), "rays_per_s": n_rays / dt,
                     "samples_per_ray": out.kept / n_rays,
                     "marched_per_ray": out.marched / n_rays, "occupied": occupancy.occupied_fraction()},
                )
            if probe is not None:
                probe(loop.step, loop.elapsed_s, lambda: _snapshot(spec.id, bounds, model_cfg, fld, occupancy, train_frames))
                fld.train()
            every = cfg.checkpoint_every_steps
            if time.perf_counter() - last_save >= cfg.checkpoint_every_s or (every and loop.step % every == 0):
                save_checkpoint()
                last_save = time.perf_counter()
            fault_point("during_training")
    except KeyboardInterrupt:
        save_checkpoint()  # Ctrl-C loses nothing
        raise

    model = _snapshot(spec.id, bounds, model_cfg, fld, occupancy, train_frames)
    test_frames = [f for f in frames if f.split == "test"]
    evaluation = (evaluate_views(model, test_frames[: cfg.eval_views], spec=spec, far_m=far_m, background=backdrop)
                  if cfg.eval_views else {})
    stats = {
        "steps": loop.step,
        "resumed_from": resumed_from,
        "train_seconds": round(loop.elapsed_s, 3),
        "rays": loop.rays,
        "train_psnr": round(mse_to_psnr(loop.ema_mse), 3),
        "occupied_fraction": round(occupancy.occupied_fraction(), 5),
        "train_frames": len(train_frames),
        "test_frames": len(test_frames),
        "data_bytes": data.nbytes,
        "warm_start": None if init is None else {"version": init.version, "checksum": init.checksum, "carried_params": carried},
    }
    if init_note and init is None:
        stats["warm_start_skipped"] = init_note
    model.attrs = {**dict(record or {}), "fingerprint": fingerprint, "train": stats, "eval": evaluation, "frames": list(spec.frames)}
    arrays, attrs = model.to_record()
    if cfg.bake:
        baked, attrs["baked"] = bake_block(model, cfg.bake_grid, footprint_m=frames_footprint_m(train_frames, bounds))
        arrays.update(baked)
    version = store.write_version(spec.id, arrays, attrs)
    store.clear_checkpoints(spec.id)
    if progress is not None:
        progress.finish(spec.id, {**stats, **{f"eval_{k}": v for k, v in evaluation.items() if not isinstance(v, list)}})
    return BlockResult(spec.id, version, {**stats, "eval": evaluation})


def _background(rgb: tuple[float, float, float] | None, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n, 3) colours behind the rays: ``rgb`` (``background_rgb``), or random ones for None."""
    if rgb is None:
        return torch.rand(n, 3, generator=generator).to(device)
    return torch.tensor(rgb, dtype=torch.float32, device=device).expand(n, 3)


def _copy_weights(source: BlockModel, fld: BlockField, image_ids: list[str]) -> int:
    """Copy a stored block's weights into a freshly initialised field of the same model settings;
    returns how many parameter tensors were carried over whole.

    Appearance codes follow their images: the code of an image both know is copied, new images
    keep their fresh codes. A tensor whose shape differs (e.g. the exposure input appeared or
    vanished) keeps its fresh initialisation.
    """
    old = source.field.state_dict()
    carried = 0
    with torch.no_grad():
        for name, tensor in fld.state_dict().items():
            if name == "appearance.weight":
                position = {image_id: i for i, image_id in enumerate(source.image_ids)}
                for i, image_id in enumerate(image_ids):
                    j = position.get(image_id)
                    if j is not None and j < old[name].shape[0]:
                        tensor[i] = old[name][j].to(tensor.device)
            elif name in old and old[name].shape == tensor.shape:
                tensor.copy_(old[name].to(tensor.device))
                carried += 1
    return carried


def _snapshot(block_id: str, bounds: BlockBounds, model_cfg: ModelConfig, fld: BlockField, occupancy: OccupancyGrid, frames: list) -> BlockModel:
    return BlockModel(block_id, bounds, model_cfg, fld, occupancy.occupied.clone(), tuple(f.id for f in frames))


@dataclass
class _LoopState:
    step: int = 0
    elapsed_s: float = 0.0
    n_rays: float = 256.0
    ema_mse: float = 1.0
    rays: int = 0
    last_checkpoint_step: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _LoopState:
        return cls(**{k: d[k] for k in cls().__dict__ if k in d})


def _optimizer(fld: BlockField, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    grid = list(fld.encoding.parameters())
    grid_ids = {id(p) for p in grid}
    rest = [p for p in fld.parameters() if id(p) not in grid_ids]
    groups = [{"params": grid, "weight_decay": 0.0}, {"params": rest, "weight_decay": cfg.mlp_weight_decay}]
    return torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.99), eps=1e-15, fused=device.type in ("cpu", "cuda"))


def _progress_fraction(loop: _LoopState, cfg: TrainConfig) -> float:
    frac = loop.step / cfg.steps
    if cfg.time_budget_s:
        frac = max(frac, loop.elapsed_s / cfg.time_budget_s)
    return min(frac, 1.0)


def _set_lr(optimizer: torch.optim.Optimizer, cfg: TrainConfig, loop: _LoopState) -> None:
    warm = min(1.0, (loop.step + 1) / max(1, cfg.warmup_steps))
    lr = cfg.lr * warm * math.pow(cfg.lr_final_ratio, _progress_fraction(loop, cfg))
    for group in optimizer.param_groups:
        group["lr"] = lr


def _out_of_time(loop: _LoopState, cfg: TrainConfig) -> bool:
    return cfg.time_budget_s is not None and loop.elapsed_s >= cfg.time_budget_s
