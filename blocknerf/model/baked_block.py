"""A baked block: renders rays from its baked grid and decodes colour once per pixel.

It loads only the baked arrays and the small colour and visibility heads (plus the appearance
codes) of a version, never the hash tables, so it is small to load and to hold. Colour is the
block's own colour head applied to the weight-averaged geometry features of a ray (deferred
shading), with the ray's direction, appearance code and exposure, exactly the per-ray inputs of
the neural path; where a ray's weights sit on one surface, this is the neural colour.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blocknerf.capture.frames import Intrinsics
from blocknerf.kernels.build import torch_threads
from blocknerf.model.baked_grid import PREFIX, BakedGrid, has_baked_arrays, render_grid_means
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
STOP_TRANSMITTANCE = 1e-2
"""A baked ray stops once its transmittance falls below this (or the sampler's own threshold, if
higher). What is left behind can change a colour by at most this much, and in a trained city block
(2000 steps, 160x120 held-out views) it changed colours by 0.0014 on average (55.6 dB against
rendering on to the sampler's 1e-4) while the march cost 1.47x less: the foggy space such blocks
keep behind their surfaces is where most samples go."""
DECODE_CHUNK = 8192
"""Rays decoded per pass of the colour head: its activations then stay in a core's cache (on the
2-core machine 8192 rays decode 1.5x faster than one pass over a 320x240 frame)."""


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
        return self.decode_folded(geo, rays, _ONE, _ZERO)

    def decode_reference(self, geo: torch.Tensor, rays: Rays) -> tuple[torch.Tensor, torch.Tensor]:
        """``decode`` written as the field's heads are (the oracle of the fused ``decode``)."""
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

    def decode_folded(
        self, geo: torch.Tensor, rays: Rays, scale: torch.Tensor, offset: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``decode`` of the features ``geo * scale + offset`` (a dequantisation folded into the
        first layer's weights), fused: the colour and visibility heads' first layers are one
        matrix product, and a per-image appearance code / exposure shared by all rays (the
        compositor's case) is a bias computed once, not a column block of every ray's input."""
        n = geo.shape[0]
        packed = self._packed(scale, offset)
        sh = sh_encode(rays.directions, self.sh_degree)
        extra = self._ray_extra(rays, n, geo)
        bias = packed["bias"]
        if extra is not None and extra.shape[0] == 1:
            bias = bias.clone()
            bias[: packed["hc"]] += (extra @ packed["w_extra"])[0]
            extra = None
        pre = torch.addmm(bias, geo, packed["w_geo"])
        pre.addmm_(sh, packed["w_sh"])
        if extra is not None:
            pre[:, : packed["hc"]].addmm_(extra, packed["w_extra"])
        pre.relu_()
        h = pre[:, : packed["hc"]]
        last = len(packed["rest"]) - 1
        for i, (w, b) in enumerate(packed["rest"]):
            h = torch.addmm(b, h, w) if b is not None else h @ w
            if i < last:
                h.relu_()
        rgb = h.sigmoid_()
        vis = torch.addmm(packed["vis_b"], pre[:, packed["hc"] :], packed["vis_w"]) if packed["vis_b"] is not None else pre[:, packed["hc"] :] @ packed["vis_w"]
        return rgb, vis[:, 0].sigmoid_()

    def _ray_extra(self, rays: Rays, n: int, like: torch.Tensor) -> torch.Tensor | None:
        """The colour head's per-ray inputs after the SH (appearance code, exposure): (1, E) when
        every ray shares them, (R, E) otherwise, None when there are none."""
        parts = []
        shared = True
        if self.appearance_dim:
            a = rays.appearance
            if a is None:
                parts.append(like.new_zeros(1, self.appearance_dim))
            elif n <= 1 or a.stride(0) == 0:
                parts.append(a[:1])
            else:
                shared = False
                parts.append(a)
        if self.with_exposure:
            e = rays.log2_exposure
            if e is None:
                parts.append(like.new_zeros(1, 1))
            elif n <= 1 or e.stride(0) == 0 or bool((e == e[0]).all()):
                parts.append(e[:1, None])
            else:
                shared = False
                parts.append(e[:, None])
        if not parts:
            return None
        if not shared:
            parts = [p.expand(n, -1) for p in parts]
        return torch.cat([p.float() for p in parts], dim=-1)

    def _packed(self, scale: torch.Tensor, offset: torch.Tensor) -> dict[str, Any]:
        """The heads' weights laid out for ``decode_folded`` (cached per dequantisation)."""
        key = (tuple(scale.reshape(-1).tolist()), tuple(offset.reshape(-1).tolist()))
        cache = self.__dict__.setdefault("_packed_cache", {})
        if key in cache:
            return cache[key]
        w = self.weights
        s = self.sh_degree**2
        cg, cr = w["color_geo.weight"], w["color_ray.weight"]
        vg, vr = w["vis_geo.weight"], w["vis_ray.weight"]
        hc = cg.shape[0]
        zero = lambda k: torch.zeros(k)
        geo_w = torch.cat([cg, vg])
        w_geo = geo_w * scale.float().reshape(1, -1)
        bias = torch.cat([w.get("color_geo.bias", zero(hc)), w.get("vis_geo.bias", zero(vg.shape[0]))])
        bias = bias + geo_w @ offset.float().reshape(-1).expand(geo_w.shape[1])
        layers = sorted({int(k.split(".")[1]) for k in w if k.startswith("color_rest.")})
        packed = {
            "hc": hc,
            "w_geo": w_geo.t().contiguous(),
            "w_sh": torch.cat([cr[:, :s], vr]).t().contiguous(),
            "w_extra": cr[:, s:].t().contiguous(),
            "bias": bias.contiguous(),
            "rest": [(w[f"color_rest.{i}.weight"].t().contiguous(), w.get(f"color_rest.{i}.bias")) for i in layers],
            "vis_w": w["vis_out.weight"].t().contiguous(),
            "vis_b": w.get("vis_out.bias"),
        }
        cache.clear()
        cache[key] = packed
        return packed


@functools.cache
def _decode_pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="baked-decode")


_ONE = torch.ones(())
_ZERO = torch.zeros(())


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
    stop_transmittance: float = STOP_TRANSMITTANCE
    """Early ray termination of the baked render (see ``STOP_TRANSMITTANCE``)."""
    finest_resolution: int | None = None
    """Resolution of the bake's finest level (None: this grid's). A coarser level marches with
    steps longer by the ratio of the resolutions (``level_sampler``)."""

    def __post_init__(self) -> None:
        sampler = level_sampler(self.sampler, self.finest_resolution or self.grid.resolution, self.grid.resolution)
        self.edges = torch.from_numpy(step_edges(sampler, self.bounds.radius))

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

    def masked(self, keep: Callable[[np.ndarray], np.ndarray]) -> BakedBlock:
        """This block with no matter wherever ``keep`` fails ((N, 3) float64 positions in the
        block's world frame -> (N,) bool), for cropping and erasing: ``BakedGrid.masked``, so an
        edge is exact to one voxel and rendering stays native."""
        from blocknerf.model.bounds import uncontract

        centre, scale = np.asarray(self.bounds.center), np.asarray(self.bounds.scale)

        def keep01(x01: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.asarray(keep(centre + uncontract(x01).numpy() * scale), dtype=bool))

        return dataclasses.replace(self, grid=self.grid.masked(keep01))

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
        threads = torch.get_num_threads()
        with torch_threads(1):  # the glue: small ops (see ``torch_threads``); the kernel gets ``threads``
            cpu = Rays(*(None if t is None else t.detach().float().cpu() for t in (rays.origins, rays.directions, rays.appearance, rays.log2_exposure)))
            o, d = self.bounds.normalize_rays(cpu.origins, cpu.directions)
            t_stop = max(self.sampler.early_stop_transmittance, self.stop_transmittance)
            feat, opacity, depth = render_grid_means(self.grid, o, d, self.edges, t_stop=t_stop,
                                                     min_weight=self.sampler.min_weight, backend=self.backend, threads=threads)
            n = len(cpu)
            hit = opacity > 0
            n_hit = int(hit.sum())
            rgb = torch.full((n, 3), BACKGROUND)
            vis = torch.zeros(n)
        if n_hit * 2 >= n:  # most rays hit: decode every ray (a miss decodes to the background below)
            self._decode_into(feat, cpu, opacity, rgb, vis, threads)
            vis.mul_(hit)
        elif n_hit:
            idx = hit.nonzero().squeeze(1)
            sub = cpu.take(idx)
            c, v = torch.empty(n_hit, 3), torch.empty(n_hit)
            self._decode_into(feat[idx], sub, opacity[idx], c, v, threads)
            rgb[idx] = c
            vis[idx] = v
        return RenderResult(rgb.to(dev), depth.to(dev), opacity.to(dev), vis.to(dev))

    def _decode_into(
        self, feat: torch.Tensor, rays: Rays, opacity: torch.Tensor, rgb: torch.Tensor, vis: torch.Tensor, threads: int | None = None
    ) -> None:
        """Colour over the background and visibility of weight-averaged quantised features, into
        ``rgb`` (R, 3) and ``vis`` (R,), in slices of ``DECODE_CHUNK`` rays.

        With T > 1 torch threads the slices are shared out to T Python threads while torch's own
        intra-op threads are set to one: on the shared 2-core machine torch's threaded matrix
        products of this size spun at their barriers whenever another process held a core (2
        threads took 5-25x the CPU time of 1 for the same decode); threads that each own whole
        slices never wait for each other."""
        n = feat.shape[0]
        threads = threads or torch.get_num_threads()
        if threads <= 1 or n <= DECODE_CHUNK:
            self._decode_slices(feat, rays, opacity, rgb, vis)
            return
        per = -(-n // min(threads, -(-n // DECODE_CHUNK)))
        parts = [(s, min(s + per, n)) for s in range(0, n, per)]
        with torch_threads(1):
            futures = [
                _decode_pool(threads).submit(self._decode_slices, feat[s:e], rays.slice(s, e), opacity[s:e], rgb[s:e], vis[s:e])
                for s, e in parts
            ]
            for f in futures:
                f.result()

    def _decode_slices(self, feat: torch.Tensor, rays: Rays, opacity: torch.Tensor, rgb: torch.Tensor, vis: torch.Tensor) -> None:
        for s in range(0, feat.shape[0], DECODE_CHUNK):
            e = s + DECODE_CHUNK
            c, v = self.heads.decode_folded(feat[s:e], rays.slice(s, e), self.grid.scale, self.grid.offset)
            a = opacity[s:e, None]
            rgb[s:e] = c.sub_(BACKGROUND).mul_(a).add_(BACKGROUND)  # a * c + (1 - a) * background
            vis[s:e] = v

    @classmethod
    def from_record(
        cls, block_id: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], *, version: int | None = None,
        backend: str = "auto", prefix: str = PREFIX,
    ) -> BakedBlock:
        """The baked block of a version's arrays and attrs (``is_baked(attrs)`` must hold), rendering
        the level of detail stored under ``prefix`` (``bake.level_prefix``; default the finest)."""
        from blocknerf.config import from_dict

        sampler = from_dict(SamplerConfig, attrs["model"].get("sampler", {}), where=f"block {block_id}")
        finest = attrs["baked"].get("resolution")
        return cls(
            block_id=block_id,
            bounds=BlockBounds.from_dict(attrs["bounds"]),
            grid=BakedGrid.from_arrays(arrays, int(attrs["baked"]["brick"]), prefix),
            heads=ColorHeads.from_arrays(arrays, attrs),
            sampler=sampler,
            image_ids=tuple(attrs.get("image_ids", ())),
            version=version,
            backend=backend,
            finest_resolution=None if finest is None else int(finest),
        )


def level_sampler(sampler: SamplerConfig, finest: int, resolution: int) -> SamplerConfig:
    """The step schedule a level of ``resolution`` cells marches with when the finest level has
    ``finest``: the sampler's, with steps ``finest / resolution`` times longer (minimum step and
    cone angle longer, contracted steps fewer), so every level takes about as many steps per voxel
    as the finest does. Sampling a coarse grid at the finest level's steps costs up to 4x more
    samples per ray and adds nothing: the grid is trilinear within a voxel."""
    factor = max(1, finest // max(resolution, 1))
    if factor == 1:
        return sampler
    return dataclasses.replace(
        sampler, min_step=sampler.min_step * factor, cone_angle=sampler.cone_angle * factor,
        contracted_steps=max(1, sampler.contracted_steps // factor),
    )


def is_baked(attrs: Mapping[str, Any], names: object = None) -> bool:
    """Whether a version (its attrs, and its array names when given) holds a bake."""
    return "baked" in attrs and (names is None or has_baked_arrays(names))


__all__ = ["BACKGROUND", "HEAD_ARRAYS", "STOP_TRANSMITTANCE", "BakedBlock", "ColorHeads", "is_baked", "level_sampler"]
