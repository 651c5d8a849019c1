"""The pixels that train one block, and the sampling of ray batches from them.

Only the block's own training frames are loaded, as uint8 (3 bytes a pixel); rays are made on the
fly from pixel indices, never stored. Pixels whose rays cross the block's region are sampled
preferentially (Mega-NeRF trains a block on the rays that intersect it); a small share of the
others keeps the block's view of its surroundings plausible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from blocknerf.capture.frames import Frame
from blocknerf.errors import InputError
from blocknerf.capture.images import load_image
from blocknerf.capture.rays import camera_directions, world_rays

RayTest = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(N, 3) origins, (N, 3) unit directions -> (N,) bool: does the ray cross the block's region?"""


@dataclass(frozen=True)
class RayBatch:
    """Sampled training rays with their target colours."""

    image_indices: torch.Tensor
    """(R,) int64 index of each ray's image among the block's training frames."""
    origins: torch.Tensor
    directions: torch.Tensor
    rgb: torch.Tensor
    """(R, 3) float32 target colour in [0, 1]."""
    depth: torch.Tensor | None = None
    """(R,) float32 measured distance along each ray (world units; +inf: sky, NaN: none), when the
    pixels were loaded with depth."""


class BlockPixels:
    """The training frames of one block, their pixels and the pixel subsets to sample from."""

    def __init__(
        self,
        frames: Sequence[Frame],
        crosses: RayTest,
        *,
        device: torch.device | str = "cpu",
        workers: int = 4,
        with_depth: bool = False,
    ) -> None:
        if not frames:
            raise InputError(None, "the block has no training frames")
        self.frames = tuple(frames)
        self.device = torch.device(device)
        intrinsics = sorted({f.intrinsics for f in self.frames}, key=repr)
        group_of = {k: i for i, k in enumerate(intrinsics)}
        tables = [camera_directions(k) for k in intrinsics]
        sizes = np.array([f.intrinsics.width * f.intrinsics.height for f in self.frames], dtype=np.int64)
        self.offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)]))
        table_offsets = np.concatenate([[0], np.cumsum([len(t) for t in tables])])
        self._dir_table = torch.cat(tables).to(self.device)
        self._frame_table_offset = torch.tensor([table_offsets[group_of[f.intrinsics]] for f in self.frames], dtype=torch.int64)
        self.c2w = torch.tensor(np.array([f.c2w for f in self.frames]), dtype=torch.float32, device=self.device)
        exposures = [f.exposure for f in self.frames]
        self.log2_exposure = (
            torch.tensor(np.log2(np.array(exposures, dtype=np.float64)), dtype=torch.float32, device=self.device)
            if all(e is not None and e > 0 for e in exposures)
            else None
        )
        with ThreadPoolExecutor(max_workers=workers) as pool:
            images = list(pool.map(self._load, self.frames))
        self.pixels = torch.from_numpy(np.concatenate([im.reshape(-1, 3) for im in images])).to(self.device)
        self.depth: torch.Tensor | None = None
        """(pixels,) float32 distance along each pixel's ray, when loaded with depth."""
        if with_depth:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                depths = list(pool.map(self._ray_depth, range(len(self.frames))))
            self.depth = torch.from_numpy(np.concatenate(depths)).to(self.device)
        inside = [self._crossing_pixels(i, crosses) for i in range(len(self.frames))]
        mask = torch.from_numpy(np.concatenate(inside))
        ids = torch.arange(int(self.offsets[-1]), dtype=torch.int64)
        self.inside = ids[mask]
        self.outside = ids[~mask]

    @staticmethod
    def _load(frame: Frame) -> np.ndarray:
        image = load_image(frame.image_path)
        k = frame.intrinsics
        if image.shape[:2] != (k.height, k.width):
            raise InputError(frame.image_path, f"image is {image.shape[1]}x{image.shape[0]} but its intrinsics say {k.width}x{k.height}")
        return image

    def _ray_depth(self, i: int) -> np.ndarray:
        """(H*W,) distance along the rays of frame i from its depth map (NaN throughout without one)."""
        frame = self.frames[i]
        n = int(self.offsets[i + 1] - self.offsets[i])
        if frame.depth_path is None:
            return np.full(n, np.nan, dtype=np.float32)
        z = load_depth(frame).reshape(-1)
        if z.shape[0] != n:
            raise InputError(frame.depth_path, f"depth map has {z.shape[0]} pixels but the image {n}")
        start = int(self._frame_table_offset[i])
        cam = self._dir_table[start : start + n].cpu().numpy()
        # Camera directions have z = -1: the distance along a ray is the depth times its length.
        return (z * np.linalg.norm(cam, axis=1)).astype(np.float32)

    def _crossing_pixels(self, i: int, crosses: RayTest) -> np.ndarray:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        cam = self._dir_table[int(self._frame_table_offset[i]) : int(self._frame_table_offset[i]) + hi - lo].cpu()
        origins, dirs = world_rays(self.c2w[i].cpu(), cam)
        return np.asarray(crosses(origins.numpy().astype(np.float64), dirs.numpy().astype(np.float64)), dtype=bool)

    @property
    def num_images(self) -> int:
        return len(self.frames)

    @property
    def nbytes(self) -> int:
        return int(self.pixels.numel() + 8 * (self.inside.numel() + self.outside.numel()))

    def sample(self, n: int, generator: torch.Generator, outside_fraction: float) -> RayBatch:
        """``n`` rays: ``outside_fraction`` of them from pixels not crossing the block (when any)."""
        n_out = int(round(n * outside_fraction)) if self.outside.numel() else 0
        if not self.inside.numel():
            n_out = n
        picks = []
        if n - n_out:
            picks.append(self.inside[torch.randint(0, self.inside.numel(), (n - n_out,), generator=generator)])
        if n_out:
            picks.append(self.outside[torch.randint(0, self.outside.numel(), (n_out,), generator=generator)])
        return self.rays_of(torch.cat(picks))

    def rays_of(self, pixel_ids: torch.Tensor) -> RayBatch:
        """Rays and colours of global pixel ids (N,) int64."""
        image = torch.searchsorted(self.offsets, pixel_ids, right=True) - 1
        local = pixel_ids - self.offsets[image]
        cam = self._dir_table[(self._frame_table_offset[image] + local).to(self.device)]
        image = image.to(self.device)
        origins, dirs = world_rays(self.c2w[image], cam)
        rgb = self.pixels[pixel_ids.to(self.device)].float() / 255.0
        depth = None if self.depth is None else self.depth[pixel_ids.to(self.device)]
        return RayBatch(image, origins, dirs, rgb, depth)


def load_depth(frame: Frame) -> np.ndarray:
    """(H, W) float32 depth along the optical axis of a frame, in world units: its ``.npy`` (float)
    or 16-bit ``.png`` (nerfstudio) times ``depth_unit_scale``; +inf stays (sky), 0 and NaN are
    "no depth" (NaN)."""
    path = frame.depth_path
    if path is None:
        raise InputError(None, f"frame {frame.id} has no depth map")
    try:
        if path.suffix.lower() == ".npy":
            raw = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as img:
                raw = np.asarray(img)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read depth map ({exc})") from None
    z = np.asarray(raw, dtype=np.float32) * np.float32(frame.depth_unit_scale)
    if z.ndim == 3:
        z = z[..., 0]
    return np.where(z > 0, z, np.float32(np.nan)).astype(np.float32)
