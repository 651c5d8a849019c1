"""Held-out quality of a block: PSNR and SSIM of rendered views against the captured images."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from blocknerf.model.block import BlockModel
from blocknerf.capture.frames import Frame
from blocknerf.capture.images import load_image
from blocknerf.evaluation.metrics import mse_to_psnr, psnr, ssim
from blocknerf.capture.rays import image_rays
from partitioning import BlockSpec


def evaluate_views(
    model: BlockModel, frames: list[Frame], *, spec: BlockSpec | None = None, far_m: float = 0.0,
    background: tuple[float, float, float] | None = None,
) -> dict[str, Any]:
    """Held-out PSNR/SSIM of a block on whole views (zero appearance code, recorded exposure).

    With ``spec``, ``psnr_region`` also reports PSNR on the pixels whose rays cross the block.
    ``background``: the colour where the views show nothing (a block trained over a plain
    backdrop, ``TrainConfig.background``); None: the renderer's own.
    """
    if not frames:
        return {"views": 0}
    psnrs, ssims, region_se, region_n = [], [], 0.0, 0
    for f in frames:
        gt = torch.from_numpy(load_image(f.image_path).copy()).float().div(255.0).to(model.device)
        view = model.render_view(f.c2w, f.intrinsics, exposure=f.exposure)
        if background is not None:
            shift = torch.tensor(background, dtype=view.rgb.dtype, device=view.rgb.device) - model.renderer.background
            view = dataclasses.replace(view, rgb=view.rgb + (1.0 - view.opacity)[..., None] * shift)
        psnrs.append(psnr(view.rgb, gt))
        ssims.append(ssim(view.rgb, gt))
        if spec is not None:
            origins, dirs, _ = image_rays(f.c2w, f.intrinsics)
            mask = torch.from_numpy(np.asarray(spec.ray_crossing(origins.numpy().astype(np.float64), dirs.numpy().astype(np.float64), far_m)))
            mask = mask.reshape(gt.shape[:2]).to(model.device)
            region_se += float(((view.rgb - gt) ** 2)[mask].sum())
            region_n += int(mask.sum()) * 3
    out: dict[str, Any] = {
        "views": len(frames),
        "psnr": round(float(np.mean(psnrs)), 3),
        "ssim": round(float(np.mean(ssims)), 4),
        "per_view_psnr": [round(p, 3) for p in psnrs],
    }
    if region_n:
        out["psnr_region"] = round(mse_to_psnr(region_se / region_n), 3)
    return out
