"""Held-out quality of the streamed composite, and of the best single block on the same views.

Each held-out frame (split ``test``) of the store's capture is rendered by the compositor exactly
as a flythrough would render it (same selection, visibility test, blend and matched appearance
codes; the frame's recorded exposure) and compared with the captured image. For comparison, every
block that is a candidate for at least one of these views renders all of them on its own (with the
same appearance code): ``best_block_psnr`` is the best such block's mean PSNR over the views, and
``oracle_block_psnr`` the mean over views of the best candidate for each view (a bound no single
fixed choice reaches). PSNR and SSIM are means over views, as in ``blocknerf.evaluation.views``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from streaming.config import StreamConfig


def evaluate_composite(
    store: Any,
    cfg: StreamConfig,
    *,
    max_views: int | None = None,
    device: Any = None,
    single_blocks: bool = True,
    progress: bool = False,
    frames: list[Any] | None = None,
    save_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Composite PSNR/SSIM on a BlockStore's held-out frames (at most ``max_views``, spread evenly
    over them), and the single-block comparison (see the module docstring).

    ``frames``: evaluate these capture Frames instead (e.g. the held-out views of a new capture).
    ``save_dir``: also write each view as a PNG, the render left of the captured image; its path
    (relative to ``save_dir``) is the view's ``"image"``.
    """
    import torch
    from tqdm import tqdm

    from blocknerf.capture.images import load_image
    from blocknerf.evaluation.metrics import psnr, ssim
    from streaming.compositor import Compositor
    from streaming.protocol import CameraView
    from streaming.streamer import BlockStreamer

    streamer = BlockStreamer.open(store, cfg, device=device)
    snap = streamer.snapshot
    if not snap.versions:
        return {"views": 0, "error": "no published blocks"}
    frames = list(store.capture.test_frames) if frames is None else list(frames)
    if max_views and len(frames) > max_views:
        frames = [frames[int(i)] for i in np.unique(np.linspace(0, len(frames) - 1, max_views).round().astype(int))]
    if not frames:
        return {"views": 0, "error": "the capture has no held-out (test) frames"}
    compositor = Compositor(streamer)
    views, targets, per_view = [], [], []
    candidates: dict[tuple[str, int], None] = {}
    for f in tqdm(frames, desc="composite", unit="view", disable=not progress):
        view = CameraView(f.c2w, f.intrinsics, exposure=f.exposure, frame_id=f.id)
        gt = torch.from_numpy(np.array(load_image(f.image_path))).float().div(255.0)  # a writable copy for torch
        frame = compositor.render(view, settled=True)
        rgb = torch.from_numpy(frame.rgb)
        per_view.append(
            {
                "frame": f.id,
                "psnr": round(psnr(rgb, gt), 3),
                "ssim": round(ssim(rgb, gt), 4),
                "blocks": [{"id": b.block_id, "weight": round(b.weight, 4)} for b in frame.used],
                "candidates": [b.block_id for b in frame.blocks],
            }
        )
        if save_dir is not None:
            per_view[-1]["image"] = _save_side_by_side(Path(save_dir), len(per_view) - 1, f.id, frame.rgb, gt.numpy())
        for b in frame.blocks:
            candidates.setdefault((b.block_id, b.version), None)
        views.append(view)
        targets.append(gt)
    out: dict[str, Any] = {
        "views": len(views),
        "psnr": round(float(np.mean([v["psnr"] for v in per_view])), 3),
        "ssim": round(float(np.mean([v["ssim"] for v in per_view])), 4),
        "blocks_per_view_mean": round(float(np.mean([len(v["blocks"]) for v in per_view])), 3),
        "manifest_serial": snap.serial,
    }
    if single_blocks:
        table = np.full((len(candidates), len(views)), np.nan)
        ssim_table = np.full_like(table, np.nan)
        keys = list(candidates)
        for i, key in enumerate(tqdm(keys, desc="single blocks", unit="block", disable=not progress)):
            for j, (view, gt) in enumerate(zip(views, targets)):
                res = compositor.render_block(key, view, snap)
                rgb = res.rgb.reshape(gt.shape).clamp(0.0, 1.0).float().cpu()
                table[i, j] = psnr(rgb, gt)
                ssim_table[i, j] = ssim(rgb, gt)
        means = table.mean(axis=1)
        best = int(np.argmax(means))
        out.update(
            {
                "best_block": keys[best][0],
                "best_block_psnr": round(float(means[best]), 3),
                "best_block_ssim": round(float(ssim_table[best].mean()), 4),
                "oracle_block_psnr": round(float(table.max(axis=0).mean()), 3),
                "per_block_psnr": {k[0]: round(float(m), 3) for k, m in zip(keys, means)},
            }
        )
        for j, v in enumerate(per_view):
            v["best_block_psnr"] = round(float(table[:, j].max()), 3)
    out["per_view"] = per_view
    return out


def _save_side_by_side(directory: Path, index: int, frame_id: str, rgb: np.ndarray, gt: np.ndarray) -> str:
    """Write render | captured image as ``NNN_<frame>.png`` in ``directory``; its file name."""
    from blocknerf.capture.images import save_image

    directory.mkdir(parents=True, exist_ok=True)
    gap = np.ones((gt.shape[0], 2, 3), dtype=np.float32)
    both = np.concatenate([np.clip(rgb, 0.0, 1.0), gap, gt], axis=1)
    name = f"{index:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(frame_id).stem)}.png"
    save_image(directory / name, both)
    return name


__all__ = ["evaluate_composite"]
