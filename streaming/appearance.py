"""Appearance matching across neighbouring blocks (Block-NeRF), and the table of matched codes.

Blocks are trained independently, so the same street can come out brighter or bluer in one block
than in its neighbour, and a blend of the two shifts in colour as the camera moves. Block-NeRF's
remedy: fix one block's appearance code (here the root's zero code, its typical look), then for
each neighbour optimise *only its appearance code* (all weights frozen) so that its renders match
the already matched block's renders in views where both blocks overlap, and propagate outward
breadth-first. A block with several matched neighbours is matched to all of them at once.

The codes are stored in the block store as the JSON document ``appearance``, keyed by block id and
version together with the manifest serial they were matched against. Renders use a block's matched
code when the table holds one for its published version, its zero code otherwise (so a block
retrained by an update falls back to the zero code until matching runs again).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from blocknerf.errors import InputError
from streaming.protocol import BlockKey, CameraView

if TYPE_CHECKING:
    import torch

    from blocknerf.model.block import BlockModel
    from blocknerf.capture.frames import Capture
    from partitioning import BlockPlan, BlockSpec
    from streaming.config import MatchConfig

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class MatchedCode:
    """The matched appearance code of one block version."""

    version: int
    code: tuple[float, ...]
    reference: tuple[str, ...] = ()
    """Blocks it was matched to (empty for a root)."""
    loss_before: float | None = None
    """Visibility-weighted MSE to the references with the zero code."""
    loss_after: float | None = None
    """The same with the matched code."""
    views: int = 0
    """Overlap views used."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "code": list(self.code),
            "reference": list(self.reference),
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "views": self.views,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MatchedCode:
        opt = lambda v: None if v is None else float(v)  # noqa: E731
        return cls(
            version=int(d["version"]),
            code=tuple(float(v) for v in d["code"]),
            reference=tuple(str(v) for v in d.get("reference", ())),
            loss_before=opt(d.get("loss_before")),
            loss_after=opt(d.get("loss_after")),
            views=int(d.get("views", 0)),
        )


@dataclass(frozen=True)
class AppearanceTable:
    """Matched appearance codes by block id (each for one version), as stored in the block store."""

    DOCUMENT: ClassVar[str] = "appearance"
    """Name of the store document that holds the table."""

    codes: Mapping[str, MatchedCode] = field(default_factory=dict)
    roots: tuple[str, ...] = ()
    """The block whose code was fixed, one per connected group of blocks."""
    manifest_serial: int | None = None
    """Serial of the manifest whose published versions were matched."""
    schema_version: int = SCHEMA_VERSION

    def code(self, key: BlockKey) -> tuple[float, ...] | None:
        """The matched code of (block id, version), or None when that version was not matched."""
        entry = self.codes.get(key[0])
        return entry.code if entry is not None and entry.version == key[1] else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "manifest_serial": self.manifest_serial,
            "roots": list(self.roots),
            "codes": {b: c.to_dict() for b, c in sorted(self.codes.items())},
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, where: str = "appearance document") -> AppearanceTable:
        """Read ``to_dict``'s output; InputError naming ``where`` when it is malformed or newer."""
        try:
            version = int(doc["schema_version"])
            if version > SCHEMA_VERSION:
                raise InputError(where, f"schema_version {version} is newer than this blocknerf reads ({SCHEMA_VERSION})")
            serial = doc.get("manifest_serial")
            return cls(
                codes={str(b): MatchedCode.from_dict(c) for b, c in doc.get("codes", {}).items()},
                roots=tuple(str(r) for r in doc.get("roots", ())),
                manifest_serial=None if serial is None else int(serial),
                schema_version=version,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InputError(where, f"malformed appearance table ({type(exc).__name__}: {exc})") from None

    def save(self, store: Any) -> None:
        """Write the table into a writable BlockStore (atomically replacing the previous one)."""
        store.write_document(self.DOCUMENT, self.to_dict())

    @classmethod
    def load(cls, store: Any) -> AppearanceTable:
        """The table stored in a BlockStore (empty when there is none)."""
        doc = store.read_document(cls.DOCUMENT)
        return cls() if not doc else cls.from_dict(doc, where=f"{store.url}: docs/{cls.DOCUMENT}")


# -- choosing what to match ------------------------------------------------------------------------
def match_order(plan: BlockPlan, block_ids: Sequence[str], root: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """Breadth-first order over the neighbour graph of ``block_ids``: (block, matched neighbours
    it is matched to); roots come with no references. Each connected group starts at ``root``
    when it holds it, else at its block nearest the group's mean centre."""
    wanted = set(block_ids)
    if root is not None and root not in wanted:
        raise InputError(None, f"root block {root} is not among the published blocks ({', '.join(sorted(wanted))})")
    specs = {b.id: b for b in plan.blocks if b.id in wanted}
    graph = {b: tuple(sorted(n for n in specs[b].neighbors if n in wanted)) for b in specs}
    order: list[tuple[str, tuple[str, ...]]] = []
    done: set[str] = set()
    for group in _components(graph):
        start = root if root in group else _central(group, specs)
        queue = deque([start])
        seen = {start}
        while queue:
            b = queue.popleft()
            refs = tuple(n for n in graph[b] if n in done)
            order.append((b, refs))
            done.add(b)
            for n in graph[b]:
                if n not in seen:
                    seen.add(n)
                    queue.append(n)
    return order


def _components(graph: Mapping[str, tuple[str, ...]]) -> list[list[str]]:
    seen: set[str] = set()
    groups = []
    for start in sorted(graph):
        if start in seen:
            continue
        group, stack = [], [start]
        seen.add(start)
        while stack:
            b = stack.pop()
            group.append(b)
            for n in graph[b]:
                if n not in seen:
                    seen.add(n)
                    stack.append(n)
        groups.append(sorted(group))
    return groups


def _central(group: Sequence[str], specs: Mapping[str, BlockSpec]) -> str:
    centers = np.array([specs[b].center[:2] for b in group])
    d = np.linalg.norm(centers - centers.mean(axis=0), axis=1)
    return group[int(np.argmin(d))]


def overlap_views(a: BlockSpec, b: BlockSpec, capture: Capture, *, count: int, width: int) -> list[CameraView]:
    """Up to ``count`` views where blocks ``a`` and ``b`` overlap, ``width`` pixels wide: capture
    frames assigned to both whose cameras stand in both regions (else any assigned to both), spread
    evenly over the capture; without any, four level views from the midpoint of the two centres."""
    by_id = {f.id: f for f in capture.frames}
    shared = [by_id[f] for f in a.frames if f in set(b.frames) and f in by_id]
    inside = [f for f in shared if _in_disc(f.position, a) and _in_disc(f.position, b)]
    pool = inside or shared
    views: list[CameraView] = []
    if pool:
        pick = np.unique(np.linspace(0, len(pool) - 1, min(count, len(pool))).round().astype(int))
        for i in pick:
            f = pool[int(i)]
            k = f.intrinsics
            height = max(2, round(width * k.height / k.width))
            views.append(CameraView(f.c2w, k.scaled(width, height), frame_id=f.id))
        return views
    from blocknerf.capture.frames import Intrinsics
    from partitioning.layouts import heading_poses

    heights = capture.positions()[:, 2] if len(capture.frames) else np.array([0.5 * (a.z_min + a.z_max)])
    mid = np.array([*(0.5 * (a.center_xy + b.center_xy)), float(np.median(heights))])
    yaws = np.arange(4) * (math.pi / 2)
    k = Intrinsics.from_fov(width, max(2, round(width * 0.75)), math.radians(90.0))
    return [CameraView(c2w, k) for c2w in heading_poses(np.repeat(mid[None], 4, axis=0), yaws)[: max(1, count)]]


def _in_disc(position: np.ndarray, spec: BlockSpec) -> bool:
    return float(np.hypot(*(np.asarray(position[:2]) - spec.center_xy))) <= spec.radius_m


# -- optimising a code ---------------------------------------------------------------------------------
def optimise_code(
    block: BlockModel,
    targets: Sequence[tuple[CameraView, torch.Tensor, torch.Tensor]],
    cfg: MatchConfig,
    *,
    seed: int = 0,
) -> tuple[torch.Tensor, float, float]:
    """Optimise ``block``'s appearance code (weights frozen) so its renders of the views match the
    target colours: ``targets`` = (view, (R, 3) target rgb, (R,) target visibility) per view.

    Pixels count by the product of both blocks' predicted visibility (Block-NeRF: compare what
    both have seen). Each Adam step renders a random batch of ``cfg.batch_rays`` of the pixels
    through the block's differentiable training render (gradients reach only the code); the
    losses reported are over all pixels with the block's ordinary render. Returns (code (A,),
    loss with the zero code, loss with the result); a code that would not lower the loss is not
    taken.
    """
    import torch

    from blocknerf.model.renderer import Rays
    from blocknerf.capture.rays import image_rays

    assert block.field.appearance is not None, "the block has no appearance codes"
    device = block.device
    parts = [image_rays(np.array(v.c2w), v.intrinsics, device)[:2] for v, _, _ in targets]
    origins = torch.cat([o for o, _ in parts])
    dirs = torch.cat([d for _, d in parts])
    target = torch.cat([rgb.to(device) for _, rgb, _ in targets])
    zero = torch.zeros(block.field.appearance.embedding_dim, device=device)
    with torch.no_grad():
        own = block.render_rays(Rays(origins, dirs, None, None))
    weight = (torch.cat([vis.to(device) for _, _, vis in targets]).clamp(0, 1) * own.visibility.clamp(0, 1)).detach()
    total_w = float(weight.sum())
    if total_w <= 1e-6:
        return zero, float("nan"), float("nan")

    def full_loss(code: torch.Tensor) -> float:
        with torch.no_grad():
            rgb = block.render_rays(Rays(origins, dirs, code.expand(len(origins), -1), None)).rgb
        return float((((rgb - target) ** 2).sum(dim=-1) * weight).sum() / total_w)

    before = full_loss(zero)
    params = list(block.field.parameters())
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        generator = torch.Generator().manual_seed(seed)
        code = zero.clone().requires_grad_(True)
        opt = torch.optim.Adam([code], lr=cfg.lr)
        n = len(origins)
        for _ in range(cfg.steps):
            batch = torch.randperm(n, generator=generator)[: cfg.batch_rays].to(device)
            rays = Rays(origins[batch], dirs[batch], code.expand(len(batch), -1), None)
            rgb = block.renderer.render_train(block.field, block.occupied, rays, generator).rgb
            w = weight[batch]
            loss = (((rgb - target[batch]) ** 2).sum(dim=-1) * w).sum() / w.sum().clamp(min=1e-6)
            loss = loss + cfg.prior * code.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p, flag in zip(params, was):
            p.requires_grad_(flag)
    code = code.detach()
    after = full_loss(code)
    if not after < before:  # never make a seam worse than the typical look
        return zero, before, before
    return code, before, after


def match_appearance(
    store: Any,
    cfg: MatchConfig,
    *,
    root: str | None = None,
    device: Any = "cpu",
    progress: Callable[[str, MatchedCode], None] | None = None,
) -> AppearanceTable:
    """Match the appearance codes of every published block of a BlockStore (see the module
    docstring); returns the table (``table.save(store)`` stores it). ``progress(block, result)``
    hears about each block as it is done."""
    import torch

    from blocknerf.model.block import load_block
    from blocknerf.model.renderer import Rays
    from blocknerf.capture.rays import image_rays

    plan, capture, manifest = store.plan, store.capture, store.manifest()
    published = {b: p.version for b, p in manifest.blocks.items() if b in set(plan.ids)}
    order = match_order(plan, list(published), root)
    specs = {b.id: b for b in plan.blocks}
    loaded: dict[str, BlockModel] = {}
    codes: dict[str, MatchedCode] = {}

    def get(block_id: str) -> BlockModel:
        if block_id not in loaded:
            loaded[block_id] = load_block(store, block_id, version=published[block_id], device=device)
        return loaded[block_id]

    def code_tensor(block_id: str, model: BlockModel) -> torch.Tensor | None:
        if block_id in codes:
            return torch.tensor(codes[block_id].code, dtype=torch.float32, device=model.device)
        return model.appearance_code(None)

    for position, (block_id, refs) in enumerate(order):
        model = get(block_id)
        if model.field.appearance is None:
            continue  # no appearance codes to match
        if not refs:
            result = MatchedCode(published[block_id], tuple(0.0 for _ in range(model.field.appearance.embedding_dim)))
        else:
            targets = []
            for ref_id in refs:
                ref = get(ref_id)
                ref_code = code_tensor(ref_id, ref)
                for view in overlap_views(specs[block_id], specs[ref_id], capture, count=cfg.views, width=cfg.width):
                    origins, dirs, _ = image_rays(np.array(view.c2w), view.intrinsics, ref.device)
                    codes_r = None if ref_code is None else ref_code.expand(origins.shape[0], -1)
                    out = ref.render_rays(Rays(origins, dirs, codes_r, None))
                    targets.append((view, out.rgb, out.visibility))
            code, before, after = optimise_code(model, targets, cfg)
            result = MatchedCode(
                published[block_id], tuple(float(v) for v in code.cpu()), refs,
                None if math.isnan(before) else round(before, 6), None if math.isnan(after) else round(after, 6),
                len(targets),
            )
        codes[block_id] = result
        if progress is not None:
            progress(block_id, result)
        # Keep only blocks that a later block may still be matched to.
        remaining = {b for b, _ in order[position + 1 :]}
        for b in list(loaded):
            if not (set(specs[b].neighbors) & remaining) and b not in remaining:
                del loaded[b]
    roots = tuple(b for b, refs in order if not refs and b in codes)
    return AppearanceTable(codes=codes, roots=roots, manifest_serial=manifest.serial)


__all__ = [
    "AppearanceTable",
    "MatchedCode",
    "match_appearance",
    "match_order",
    "optimise_code",
    "overlap_views",
]
