"""An unchanged re-capture: views of a capture photographed again later, under another appearance.

The city has not changed, so an update given these frames must retrain nothing: the photos are
the originals with another camera response (exposure, white balance) applied, saved under new
file names (new frame ids) with later timestamps. Tests and ``bench/update.py`` use it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blocknerf.capture.frames import Capture
from blocknerf.capture.images import load_image, save_image

RECAPTURE_PREFIX = "again_"
"""Image names of a re-capture start with this."""


def write_recapture(
    capture: Capture,
    frame_ids: Sequence[str],
    out: str | os.PathLike[str],
    *,
    gain: float = 1.0,
    white_balance: Sequence[float] = (1.0, 1.0, 1.0),
    delay_s: float = 30 * 86400.0,
) -> Capture:
    """Write the frames ``frame_ids`` of ``capture`` again at ``out`` (``transforms.json`` and
    ``images/``): each image times ``gain * white_balance`` (clipped; the recorded exposure is
    left as it was, as an unknown camera response would be), a new name, ``delay_s`` later.
    Returns the capture as read back from ``out``."""
    from blocknerf.capture.transforms import read_capture, write_capture

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    response = float(gain) * np.asarray(white_balance, dtype=np.float32)
    frames = []
    for frame_id in frame_ids:
        f = capture.frame(frame_id)
        name = f"{RECAPTURE_PREFIX}{Path(f.image_path).stem}.png"
        rgb = load_image(f.image_path).astype(np.float32) / 255.0
        save_image(out / "images" / name, np.clip(rgb * response, 0.0, 1.0))
        frames.append(
            dataclasses.replace(
                f, id=f"images/{name}", image_path=(out / "images" / name).resolve(), depth_path=None,
                timestamp=None if f.timestamp is None else f.timestamp + delay_s,
            )
        )
    write_capture(dataclasses.replace(capture, frames=tuple(frames), root=out.resolve()), out / "transforms.json")
    return read_capture(out)


__all__ = ["RECAPTURE_PREFIX", "write_recapture"]
