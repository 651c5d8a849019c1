"""Compositing renders by depth along each ray: placed objects in front of or behind the scene.

Each layer is a ray-batch render (``RenderResult``: colour composited over a grey background,
opacity, depth along the ray). Per ray, the layers are ordered by depth and composited front to
back with premultiplied colours ``c_i = rgb_i - (1 - a_i) * background``::

    rgb = sum_i c_i prod_{j before i} (1 - a_j) + background prod_i (1 - a_i)

For opaque surfaces (opacity near 1 where something is hit) this is what merging the layers'
samples along the ray gives: the nearest surface wins, whatever is behind it is hidden. A layer
with no opacity on a ray does not take part there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from blocknerf.model.renderer import RenderResult

__all__ = ["composite_by_depth"]

_NO_MATTER = 1e-4
"""Opacity below which a layer is treated as absent on a ray (its depth means nothing there)."""


def composite_by_depth(layers: Sequence[RenderResult], background: float) -> RenderResult:
    """(R,) rays of several layers -> one (R,) render, nearest surface first (module docstring).

    The result's depth is the opacity-weighted depth of the layers as composited; its visibility
    is the first layer's (the scene's).
    """
    if not layers:
        raise ValueError("composite_by_depth needs at least one layer")
    if len(layers) == 1:
        return layers[0]
    alpha = torch.stack([layer.opacity.clamp(0.0, 1.0) for layer in layers])  # (L, R)
    rgb = torch.stack([layer.rgb for layer in layers])  # (L, R, 3)
    premult = rgb - (1.0 - alpha)[..., None] * background
    depth = torch.stack([layer.depth for layer in layers])
    order_key = torch.where(alpha > _NO_MATTER, depth, torch.full_like(depth, float("inf")))
    order = torch.argsort(order_key, dim=0, stable=True)
    trans = torch.ones_like(alpha[0])
    out = torch.zeros_like(rgb[0])
    out_depth = torch.zeros_like(depth[0])
    for k in range(len(layers)):
        idx = order[k]
        a = alpha.gather(0, idx[None])[0]
        c = premult.gather(0, idx[None, :, None].expand(1, -1, 3))[0]
        w = trans * a
        out = out + trans[:, None] * c
        out_depth = out_depth + w * depth.gather(0, idx[None])[0]
        trans = trans * (1.0 - a)
    opacity = 1.0 - trans
    out = out + trans[:, None] * background
    return RenderResult(out, out_depth / opacity.clamp(min=1e-6), opacity, layers[0].visibility)
