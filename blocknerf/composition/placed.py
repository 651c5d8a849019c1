"""A placed object as a renderable block, and matter removed from a block's space.

``PlacedObject`` wraps the source block of an object: it turns world rays into the source's frame
(``Placement``), renders them with the source's own renderer and turns the depth back into world
distance. It satisfies the streaming block protocol (``render_rays``, ``appearance_code``,
``bounds``, ``nbytes``), so the compositor treats it like any block, and it works for any source
that renders rays -- the neural block or a baked one.

Cropping and erasing remove matter where a predicate on positions fails: ``restrict`` gives a
neural block a field whose density is zero at every sample outside what is kept (exact, per
sample), and drops the occupancy cells that cannot hold kept matter, so the marcher skips them
(``cell_centres``, ``with_occupancy``); a baked block zeroes the density of its grid vertices
outside what is kept (exact to one voxel) and drops the bricks left empty (``masked``), so it
keeps rendering through its native kernel. Nothing is written: the source arrays stay as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blocknerf.composition.placement import EraseBox, Placement
from blocknerf.errors import InputError
from blocknerf.model.renderer import Rays, RenderResult

__all__ = ["PlacedObject", "Region", "erase_predicate", "restrict"]

BOUNDS_MARGIN = 0.1
"""Rays are rendered where they pass within the object's bounding sphere grown by this fraction:
interpolation puts matter up to one voxel past a crop's edge."""
Keep = Callable[[np.ndarray], np.ndarray]
"""(N, 3) float64 points -> (N,) bool: where matter stays."""


@dataclass(frozen=True, slots=True)
class Region:
    """A world sphere (what the compositor needs of a block's region)."""

    center: tuple[float, float, float]
    radius: float


class MaskedField:
    """A block's field with zero density wherever ``keep`` fails (positions in the block's frame);
    everything else is the wrapped field's."""

    def __init__(self, field: Any, bounds: Any, keep: Keep) -> None:
        self._field = field
        self._bounds = bounds
        self._keep = keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._field, name)

    def _mask(self, x01: torch.Tensor) -> torch.Tensor:
        from blocknerf.model.bounds import uncontract

        u = uncontract(x01.detach().double()).cpu().numpy()
        points = np.asarray(self._bounds.center) + u * self._bounds.scale
        return torch.from_numpy(np.asarray(self._keep(points), dtype=bool)).to(x01.device)

    def density(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma, geo = self._field.density(x01)
        return sigma * self._mask(x01).to(sigma.dtype), geo

    def density_only(self, x01: torch.Tensor) -> torch.Tensor:
        sigma = self._field.density_only(x01)
        return sigma * self._mask(x01).to(sigma.dtype)


def restrict(block: Any, keep: Keep, within: tuple[np.ndarray, float] | None = None) -> Any:
    """``block`` with no matter where ``keep`` fails (positions in the block's own frame).
    ``within``: a sphere (centre, radius) holding everything kept; occupancy cells that cannot
    reach it are dropped too, so rays skip them. The field is shared, nothing is copied. A baked
    block (one with ``masked``) is masked per grid vertex instead (``within`` is then implied)."""
    if hasattr(block, "masked"):
        return block.masked(keep)
    if not (hasattr(block, "cell_centres") and hasattr(block, "with_occupancy")):
        raise InputError(None, f"block {getattr(block, 'block_id', '?')} cannot be cropped or erased (its representation has no occupancy cells)")
    occupied = block.occupied
    if within is not None:
        g = int(occupied.shape[0])
        centres = block.cell_centres()
        # A cell's half diagonal (in the block's region; cells of the contracted shell are larger,
        # but a crop lies inside the region in practice, so they are dropped).
        half_diag = 0.5 * float(np.linalg.norm(4.0 * np.asarray(block.bounds.scale) / g))
        near = np.linalg.norm(centres - np.asarray(within[0]), axis=1) <= within[1] + half_diag
        occupied = occupied & torch.from_numpy(near.reshape(occupied.shape)).to(occupied.device)
    return block.with_occupancy(occupied, MaskedField(block.field, block.bounds, keep))


def erase_predicate(boxes: Sequence[EraseBox], to_world: Callable[[np.ndarray], np.ndarray] | None = None) -> Keep:
    """Keep points outside every box; ``to_world`` maps the block's points into the world first."""

    def keep(points: np.ndarray) -> np.ndarray:
        world = points if to_world is None else to_world(points)
        out = np.ones(len(world), dtype=bool)
        for box in boxes:
            out &= ~box.contains(world)
        return out

    return keep


class PlacedObject:
    """A source block placed into the world (see the module docstring)."""

    def __init__(self, name: str, version: int | None, source: Any, placement: Placement, erases: Sequence[EraseBox] = ()) -> None:
        self.block_id = name
        self.version = version
        self.placement = placement
        erased = erase_predicate(erases, placement.to_world)
        crop = placement.crop
        self.source = restrict(source, lambda p: crop.contains(p) & erased(p), within=(np.asarray(crop.center), crop.extent))
        self._rotation = torch.as_tensor(placement.rotation, dtype=torch.float32, device=self.device)
        self._position = torch.as_tensor(placement.position, dtype=torch.float32, device=self.device)
        self._anchor = torch.as_tensor(placement.anchor, dtype=torch.float32, device=self.device)

    @property
    def device(self) -> torch.device:
        return getattr(self.source, "device", torch.device("cpu"))

    @property
    def bounds(self) -> Region:
        c = self.placement.world_center
        return Region((float(c[0]), float(c[1]), float(c[2])), self.placement.radius_m)

    @property
    def nbytes(self) -> int:
        return int(self.source.nbytes)

    @property
    def background(self) -> float:
        """The grey the source's renderer composites over (what its transparent rays show)."""
        return float(getattr(getattr(self.source, "renderer", None), "background", 0.5))

    def appearance_code(self, frame_id: str | None = None) -> torch.Tensor | None:
        """The source's typical look (its zero code): a scene's frames are not the object's."""
        return self.source.appearance_code(None)

    def render_rays(self, rays: Rays) -> RenderResult:
        """World rays -> the object's colour, world depth (distance along the ray), opacity. Only
        the rays that pass through the object's bounding sphere are rendered; the others carry no
        matter (opacity 0, the background's colour)."""
        hit = self._through_bounds(rays)
        n_hit = int(hit.sum())
        if n_hit == len(rays):
            return self._render(rays)
        n = len(rays)
        rgb = torch.full((n, 3), self.background, device=rays.origins.device)
        depth, opacity, visibility = (torch.zeros(n, device=rays.origins.device) for _ in range(3))
        if n_hit:
            idx = hit.nonzero().squeeze(1)
            part = self._render(rays.take(idx))
            rgb[idx], depth[idx], opacity[idx], visibility[idx] = part.rgb, part.depth, part.opacity, part.visibility
        return RenderResult(rgb, depth, opacity, visibility)

    def _through_bounds(self, rays: Rays) -> torch.Tensor:
        """(R,) bool: rays that meet the bounding sphere (grown by ``BOUNDS_MARGIN``) ahead of their origin."""
        c = torch.as_tensor(self.placement.world_center, dtype=rays.origins.dtype, device=rays.origins.device)
        r = self.placement.radius_m * (1.0 + BOUNDS_MARGIN)
        oc = rays.origins - c
        a = (rays.directions * rays.directions).sum(-1)
        b = (oc * rays.directions).sum(-1)
        disc = b * b - a * ((oc * oc).sum(-1) - r * r)
        return (disc >= 0) & (-b + disc.clamp(min=0).sqrt() > 0)

    def _render(self, rays: Rays) -> RenderResult:
        o = self._anchor + ((rays.origins - self._position) / self.placement.scale) @ self._rotation
        d = rays.directions @ self._rotation
        code = self.appearance_code()
        n = len(rays)
        codes = None if code is None else code.to(self.device).expand(n, -1)
        out = self.source.render_rays(Rays(o.contiguous(), d.contiguous(), codes, rays.log2_exposure))
        return RenderResult(out.rgb, out.depth * self.placement.scale, out.opacity, out.visibility)
