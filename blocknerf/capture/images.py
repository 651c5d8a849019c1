"""Reading and writing images, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from blocknerf.errors import InputError


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(path, f"unreadable image ({_reason(exc)})") from None


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image to ``(H, W, 3) uint8`` RGB; truncated or corrupt files raise InputError."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                # Composite transparent captures (e.g. NeRF-synthetic) over white, as instant-ngp shows them.
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"unreadable or truncated image ({_reason(exc)})") from None


def save_image(path: str | Path, rgb: np.ndarray, *, exif: bytes | None = None, quality: int = 95) -> None:
    """Write ``(H, W, 3)`` uint8 or float in [0, 1] as PNG/JPEG (by suffix), with raw ``exif``
    (``Exif\\0\\0`` + TIFF) when given; ``quality`` is the JPEG quality."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    options: dict = {} if exif is None else {"exif": exif}
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        options["quality"] = quality
    Image.fromarray(arr).save(path, **options)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
