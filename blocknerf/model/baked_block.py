"""A baked block: renders rays from its baked grid and decodes colour once per pixel.

It loads only the baked arrays and the small colour and visibility heads (plus the appearance
codes) of a version, never the hash tables, so it is small to load and to hold. Colour is the
block's own colour head applied to the weight-averaged geometry features of a ray (deferred
shading), with the ray's direction, appearance code and exposure, exactly the per-ray inputs of
the neural path; where a ray's weights sit on one surface, this is the neural colour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blocknerf.capture.frames import Intrinsics
from blocknerf.model.baked_grid import PREFIX, BakedGrid, has_baked_arrays, render_grid
from blocknerf.model.block import View, render_view
from blocknerf.model.bounds import BlockBounds
from blocknerf.model.config import SamplerConfig
from blocknerf.model.marching import step_edges
from blocknerf.model.renderer import Rays, RenderResult
from blocknerf.model.sh import sh_encode

HEAD_ARRAYS = re.compile(r"^field\.(color_geo|color_ray|color_rest|vis_geo|vis_ray|vis_out|appearance)\.")
"""Names of the arrays of a version that a baked block needs besides its grid (heads, codes)."""
BACKGROUND = 0.5
"""What shows through where a ray's opacity is short of one (the neural renderer's choice)."""


@dataclass(frozen=True)
class ColorHeads:
    """The colour and visibility heads of a ``BlockField`` as plain tensors (functional)."""

    weights: Mapping[str, torch.Tensor]
    """The field's state-dict entries of the heads, keys without the ``field.`` prefix."""
    sh_degree: int
    with_exposure: bool

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> ColorHeads:
        w = {k[len("field.") :]: torch.from_numpy(np.array(v)).float() for k, v in arrays.items() if HEAD_ARRAYS.match(k)}
        return cls(w, int(attrs["model"]["field"]["direction_sh_degree"]), bool(attrs["with_exposure"]))

    @property
    def appearance_dim(self) -> int:
        a = self.weights.get("appearance.weight")
        return 0 if a is None else int(a.shape[1])

    @property
    def nbytes(self) -> int:
        return int(sum(t.numel() * t.element_size() for t in self.weights.values()))

    def _linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weights[f"{name}.weight"], self.weights.get(f"{name}.bias"))

    def decode(self, geo: torch.Tensor, rays: Rays) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, F) geometry features and the rays' inputs -> (R, 3) colour, (R,) visibility."""
        n = geo.shape[0]
        sh = sh_encode(rays.directions, self.sh_degree)
        parts = [sh]
        if self.appearance_dim:
            parts.append(rays.appearance if rays.appearance is not None else geo.new_zeros(n, self.appearance_dim))
        if self.with_exposure:
            parts.append((rays.log2_exposure if rays.log2_exposure is not None else geo.new_zeros(n))[:, None])
        h = torch.relu(self._linear("color_geo", geo) + self._linear("color_ray", torch.cat(parts, dim=-1)))
        layers = sorted({int(k.split(".")[1]) for k in self.weights if k.startswith("color_rest.")})
        for i, idx in enumerate(layers):
            h = self._linear(f"color_rest.{idx}", h)
            if i + 1 < len(layers):
                h = torch.relu(h)
        rgb = torch.sigmoid(h)
        hv = torch.relu(self._linear("vis_geo", geo) + self._linear("vis_ray", sh))
        return rgb, torch.sigmoid(self._linear("vis_out", hv)[:, 0])


@dataclass
class BakedBlock:
    """A block version rendered from its bake (a ``streaming.protocol.RenderableBlock``)."""

    block_id: str
    bounds: BlockBounds
    grid: BakedGrid
    heads: ColorHeads
    sampler: SamplerConfig
    image_ids: tuple[str, ...] = ()
    version: int | None = None
    backend: str = "auto"
    """Kernel choice (``kernels.native_library``'s rule) for the grid renderer."""

    def __post_init__(self) -> None:
        self.edges = torch.from_numpy(step_edges(self.sampler, self.bounds.radius))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def nbytes(self) -> int:
        """Bytes held in memory: the grid and the heads."""
        return self.grid.nbytes + self.heads.nbytes + self.edges.numel() * 4

    def appearance_code(self, frame_id: str | None = None) -> torch.Tensor | None:
        """(A,) code of a training image, the zero code otherwise; None without appearance codes."""
        table = self.heads.weights.get("appearance.weight")
        if table is None:
            return None
        if frame_id is not None and frame_id in self.image_ids:
            return table[self.image_ids.index(frame_id)]
        return torch.zeros(table.shape[1])

    def render_view(
        self, c2w: np.ndarray, intrinsics: Intrinsics, *, appearance: torch.Tensor | None = None, exposure: float | None = None
    ) -> View:
        """Render a whole image from a camera pose (as ``BlockModel.render_view``)."""
        return render_view(self, c2w, intrinsics, appearance=appearance, exposure=exposure, with_exposure=self.heads.with_exposure, chunk=1 << 16)

    def render_rays(self, rays: Rays, *, chunk: int = 1 << 16) -> RenderResult:
        """Render world rays (see streaming's block protocol)."""
        outs = [self._render_chunk(rays.slice(s, s + chunk)) for s in range(0, len(rays), chunk)]
        if not outs:
            z = rays.origins.new_zeros(0)
            return RenderResult(rays.origins.new_zeros(0, 3), z, z, z)
        return RenderResult(*(torch.cat([getattr(o, k) for o in outs]) for k in ("rgb", "depth", "opacity", "visibility")))

    @torch.no_grad()
    def _render_chunk(self, rays: Rays) -> RenderResult:
        dev = rays.origins.device
        cpu = Rays(*(None if t is None else t.detach().float().cpu() for t in (rays.origins, rays.directions, rays.appearance, rays.log2_exposure)))
        o, d = self.bounds.normalize_rays(cpu.origins, cpu.directions)
        out = render_grid(self.grid, o, d, self.edges, t_stop=self.sampler.early_stop_transmittance,
                          min_weight=self.sampler.min_weight, backend=self.backend)
        rgb = torch.full((len(cpu), 3), BACKGROUND)
        vis = torch.zeros(len(cpu))
        hit = (out.opacity > 0).nonzero().squeeze(1)
        if hit.numel():
            sub = Rays(*(None if t is None else t[hit] for t in (cpu.origins, cpu.directions, cpu.appearance, cpu.log2_exposure)))
            c, v = self.heads.decode(out.features[hit], sub)
            a = out.opacity[hit, None]
            rgb[hit] = a * c + (1.0 - a) * BACKGROUND
            vis[hit] = v
        return RenderResult(rgb.to(dev), out.depth.to(dev), out.opacity.to(dev), vis.to(dev))

    @classmethod
    def from_record(
        cls, block_id: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], *, version: int | None = None,
        backend: str = "auto", prefix: str = PREFIX,
    ) -> BakedBlock:
        """The baked block of a version's arrays and attrs (``is_baked(attrs)`` must hold), rendering
        the level of detail stored under ``prefix`` (``bake.level_prefix``; default the finest)."""
        from blocknerf.config import from_dict

        sampler = from_dict(SamplerConfig, attrs["model"].get("sampler", {}), where=f"block {block_id}")
        return cls(
            block_id=block_id,
            bounds=BlockBounds.from_dict(attrs["bounds"]),
            grid=BakedGrid.from_arrays(arrays, int(attrs["baked"]["brick"]), prefix),
            heads=ColorHeads.from_arrays(arrays, attrs),
            sampler=sampler,
            image_ids=tuple(attrs.get("image_ids", ())),
            version=version,
            backend=backend,
        )


def is_baked(attrs: Mapping[str, Any], names: object = None) -> bool:
    """Whether a version (its attrs, and its array names when given) holds a bake."""
    return "baked" in attrs and (names is None or has_baked_arrays(names))


__all__ = ["BACKGROUND", "HEAD_ARRAYS", "BakedBlock", "ColorHeads", "is_baked"]
