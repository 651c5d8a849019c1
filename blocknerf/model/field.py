"""The radiance field of one block: hash encoding -> density MLP -> colour and visibility heads.

Instant-NGP's layout with Block-NeRF's additions: the colour MLP sees the view direction (SH),
a per-image appearance embedding (NeRF-W), and the image's exposure when the capture records it;
a visibility head predicts the transmittance that volume rendering computes, so that at render
time a block can tell whether it ever saw a point.

Per-ray inputs (direction, appearance, exposure) go through the colour MLP's first layer once per
ray, not once per sample: the first layer is split into a per-sample part (geometry features) and
a per-ray part, added before the activation. This is the same function as concatenating the inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from blocknerf.model.config import ModelConfig
from blocknerf.model.hashgrid import HashGridEncoding
from blocknerf.model.sh import sh_encode


def _mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers):
        mods += [nn.Linear(dim, hidden), nn.ReLU(inplace=True)]
        dim = hidden
    mods.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*mods)


class _TruncExp(torch.autograd.Function):
    """exp with a gradient clamped at exp(15): Instant-NGP's density activation, stable early on."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


class BlockField(nn.Module):
    """Density, colour and visibility at contracted positions in [0, 1]^3."""

    def __init__(self, cfg: ModelConfig, *, num_images: int, with_exposure: bool) -> None:
        super().__init__()
        f = cfg.field
        self.cfg = cfg
        self.sh_degree = f.direction_sh_degree
        self.with_exposure = with_exposure and f.use_exposure
        self.encoding = HashGridEncoding(cfg.hashgrid)
        self.density_mlp = _mlp(self.encoding.output_dim, f.hidden_dim, 1, 1 + f.geo_features)
        ray_dim = f.direction_sh_degree**2 + f.appearance_dim + int(self.with_exposure)
        # Colour: first layer split into per-sample (geometry) and per-ray (direction, appearance, exposure).
        self.color_geo = nn.Linear(f.geo_features, f.color_hidden_dim)
        self.color_ray = nn.Linear(ray_dim, f.color_hidden_dim, bias=False)
        self.color_rest = _mlp(f.color_hidden_dim, f.color_hidden_dim, f.color_layers - 1, 3)
        self.vis_geo = nn.Linear(f.geo_features, f.visibility_hidden_dim)
        self.vis_ray = nn.Linear(f.direction_sh_degree**2, f.visibility_hidden_dim, bias=False)
        self.vis_out = nn.Linear(f.visibility_hidden_dim, 1)
        self.appearance = nn.Embedding(max(1, num_images), f.appearance_dim) if f.appearance_dim else None
        if self.appearance is not None:
            nn.init.normal_(self.appearance.weight, std=0.01)

    @property
    def num_images(self) -> int:
        return 0 if self.appearance is None else self.appearance.num_embeddings

    def density(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3) positions -> (N,) density (per unit of contracted length), (N, geo_features) features."""
        h = self.density_mlp(self.encoding(x01))
        return trunc_exp(h[:, 0] - 1.0), h[:, 1:]

    def density_only(self, x01: torch.Tensor) -> torch.Tensor:
        return self.density(x01)[0]

    def ray_features(
        self,
        directions: torch.Tensor,
        appearance: torch.Tensor | None,
        log2_exposure: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-ray inputs: (R, 3) unit world directions, (R, A) appearance codes or None (zero codes),
        (R,) log2 exposure or None (0). Returns the per-ray pre-activations of the colour and
        visibility heads and the SH encoding."""
        sh = sh_encode(directions, self.sh_degree)
        parts = [sh]
        n = directions.shape[0]
        if self.appearance is not None:
            parts.append(appearance if appearance is not None else directions.new_zeros(n, self.appearance.embedding_dim))
        if self.with_exposure:
            parts.append((log2_exposure if log2_exposure is not None else directions.new_zeros(n))[:, None])
        return self.color_ray(torch.cat(parts, dim=-1)), self.vis_ray(sh), sh

    def color(self, geo: torch.Tensor, color_ray: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor:
        """(S, geo) features + per-ray pre-activations (R, H) gathered by (S,) ray index -> (S, 3) RGB."""
        h = torch.relu(self.color_geo(geo) + color_ray[ray_indices])
        return torch.sigmoid(self.color_rest(h))

    def visibility(self, geo: torch.Tensor, vis_ray: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor:
        """(S,) predicted transmittance in [0, 1] (Block-NeRF's visibility network)."""
        h = torch.relu(self.vis_geo(geo) + vis_ray[ray_indices])
        return torch.sigmoid(self.vis_out(h)[:, 0])

    def appearance_codes(self, indices: torch.Tensor) -> torch.Tensor | None:
        """(R,) local image indices -> (R, A) codes (None when appearance is disabled)."""
        return None if self.appearance is None else self.appearance(indices)
