"""A trained block: its field, occupancy and region, stored as plain arrays + JSON attributes.

``block_to_record`` turns a trained model into what the store writes (no pickle);
``BlockModel.from_record`` rebuilds it, ready to render rays or whole views. Loading a record
renders exactly the pixels the trained model rendered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from blocknerf.capture.frames import Intrinsics
from blocknerf.capture.rays import image_rays
from blocknerf.config import from_dict, to_dict
from blocknerf.model.bounds import BlockBounds
from blocknerf.model.config import ModelConfig
from blocknerf.model.field import BlockField
from blocknerf.model.marching import step_edges
from blocknerf.model.renderer import BlockRenderer, Rays, RenderResult

RECORD_SCHEMA = 1
_PARAM_PREFIX = "field."


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class View:
    """A rendered view: (H, W, 3) colour, (H, W) depth along the optical axis, opacity, visibility."""

    rgb: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    visibility: torch.Tensor


@dataclass
class BlockModel:
    """A block's model, ready to render (what the streaming compositor loads)."""

    block_id: str
    bounds: BlockBounds
    model_cfg: ModelConfig
    field: BlockField
    occupied: torch.Tensor
    """(G, G, G) bool occupancy mask."""
    image_ids: tuple[str, ...]
    """Frame ids in the order of the appearance embeddings."""
    version: int | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        edges = torch.from_numpy(step_edges(self.model_cfg.sampler, self.bounds.radius)).to(self.occupied.device)
        self.renderer = BlockRenderer(self.bounds, self.model_cfg.sampler, edges)

    @property
    def device(self) -> torch.device:
        return self.occupied.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the loaded model (parameters + occupancy)."""
        params = sum(p.numel() * p.element_size() for p in self.field.parameters())
        return int(params + self.occupied.numel() * self.occupied.element_size())

    def appearance_code(self, frame_id: str | None = None) -> torch.Tensor | None:
        """(A,) appearance code of a training image, or the zero code (a typical look) otherwise;
        None when the block has no appearance embedding."""
        if self.field.appearance is None:
            return None
        if frame_id is not None and frame_id in self.image_ids:
            return self.field.appearance.weight[self.image_ids.index(frame_id)].detach()
        return torch.zeros(self.field.appearance.embedding_dim, device=self.device)

    def render_rays(self, rays: Rays, *, chunk: int = 16384) -> RenderResult:
        """Render world rays (see streaming's block protocol)."""
        self.field.eval()
        return self.renderer.render(self.field, self.occupied, rays, chunk=chunk)

    def render_view(
        self,
        c2w: np.ndarray,
        intrinsics: Intrinsics,
        *,
        appearance: torch.Tensor | None = None,
        exposure: float | None = None,
        chunk: int = 16384,
    ) -> View:
        """Render a whole image from a camera pose; ``appearance`` (A,) code or None (zero code)."""
        return render_view(self, c2w, intrinsics, appearance=appearance, exposure=exposure, with_exposure=self.field.with_exposure, chunk=chunk)

    def cell_centres(self) -> np.ndarray:
        """(G^3, 3) float64 world positions of the occupancy cells' centres, in the grid's order
        (cells of the contracted shell map to their far-away uncontracted points)."""
        from blocknerf.model.bounds import uncontract

        g = int(self.occupied.shape[0])
        axis = (torch.arange(g, dtype=torch.float64) + 0.5) / g
        x01 = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        u = uncontract(x01).numpy()
        return np.asarray(self.bounds.center) + u * self.bounds.scale

    def with_occupancy(self, occupied: torch.Tensor, field: Any = None) -> BlockModel:
        """This block rendering only inside ``occupied`` (G, G, G) bool -- the marcher never
        samples outside it -- with ``field`` in place of its own (e.g. one that masks density;
        default: shared)."""
        return BlockModel(
            self.block_id, self.bounds, self.model_cfg, self.field if field is None else field,
            occupied.to(self.device), self.image_ids, self.version, self.attrs,
        )

    # -- persistence ---------------------------------------------------------------------------
    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and JSON attrs for the store."""
        arrays = {f"{_PARAM_PREFIX}{k}": v.detach().cpu().numpy() for k, v in self.field.state_dict().items()}
        arrays["occupancy_bits"] = np.packbits(self.occupied.cpu().numpy().reshape(-1))
        attrs = {
            **{k: v for k, v in self.attrs.items()},
            "schema_version": RECORD_SCHEMA,
            "bounds": self.bounds.to_dict(),
            "model": to_dict(self.model_cfg),
            "image_ids": list(self.image_ids),
            "with_exposure": self.field.with_exposure,
            "occupancy_resolution": int(self.occupied.shape[0]),
        }
        return arrays, attrs

    @classmethod
    def from_record(
        cls,
        block_id: str,
        arrays: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any],
        *,
        version: int | None = None,
        device: torch.device | str = "cpu",
    ) -> BlockModel:
        """Rebuild a block from the store's arrays and attrs."""
        cfg = from_dict(ModelConfig, attrs["model"], where=f"block {block_id}")
        image_ids = tuple(attrs["image_ids"])
        fld = BlockField(cfg, num_images=len(image_ids), with_exposure=bool(attrs["with_exposure"]))
        state = {k[len(_PARAM_PREFIX) :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(_PARAM_PREFIX)}
        fld.load_state_dict(state)
        fld.to(device).eval()
        g = int(attrs["occupancy_resolution"])
        bits = np.unpackbits(np.asarray(arrays["occupancy_bits"]))[: g**3].astype(bool)
        occupied = torch.from_numpy(bits.reshape(g, g, g)).to(device)
        return cls(
            block_id=block_id,
            bounds=BlockBounds.from_dict(attrs["bounds"]),
            model_cfg=cfg,
            field=fld,
            occupied=occupied,
            image_ids=image_ids,
            version=version,
            attrs=dict(attrs),
        )


def render_view(
    block: Any,
    c2w: np.ndarray,
    intrinsics: Intrinsics,
    *,
    appearance: torch.Tensor | None,
    exposure: float | None,
    with_exposure: bool,
    chunk: int = 16384,
) -> View:
    """A whole image of any block with ``render_rays(rays, chunk=)`` and ``device`` (neural or baked);
    ``with_exposure``: whether the block's colour head takes the image exposure."""
    from blocknerf.kernels.build import torch_threads

    with torch_threads(1):  # small ops: see torch_threads
        origins, dirs, z_per_t = image_rays(c2w, intrinsics, block.device)
    n = origins.shape[0]
    codes = None if appearance is None else appearance.to(block.device).expand(n, -1)
    log2e = None
    if with_exposure:
        log2e = torch.full((n,), float(np.log2(exposure)) if exposure else 0.0, device=block.device)
    out = block.render_rays(Rays(origins, dirs, codes, log2e), chunk=chunk)
    h, w = intrinsics.height, intrinsics.width
    return View(
        rgb=out.rgb.reshape(h, w, 3),
        depth=(out.depth * z_per_t).reshape(h, w),
        opacity=out.opacity.reshape(h, w),
        visibility=out.visibility.reshape(h, w),
    )


def load_block(store: Any, block_id: str, *, version: int | None = None, device: torch.device | str = "cpu") -> BlockModel:
    """Load a block from a BlockStore: the published version, or ``version``."""
    from blocknerf.errors import BlockNerfError, StoreError

    if version is None:
        version, arrays, attrs = store.read_published(block_id)
    else:
        arrays, attrs = store.read_version(block_id, version)
    for name, value in arrays.items():
        if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all():
            raise StoreError(store.url, f"block {block_id} version {version} is unusable: array {name} holds non-finite values")
    g = attrs.get("occupancy_resolution") if isinstance(attrs, Mapping) else None
    if not isinstance(g, int) or not 1 <= g <= 1024 or np.asarray(arrays.get("occupancy_bits", ())).size * 8 < g**3:
        raise StoreError(store.url, f"block {block_id} version {version} is unusable: occupancy grid does not match its resolution")
    try:
        return BlockModel.from_record(block_id, arrays, attrs, version=version, device=device)
    except BlockNerfError as exc:
        raise StoreError(store.url, f"block {block_id} version {version} is unusable: {exc}") from None
    except (KeyError, TypeError, ValueError, OverflowError, RuntimeError, IndexError, AttributeError) as exc:
        problem = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise StoreError(store.url, f"block {block_id} version {version} is unusable: {problem}") from None
