"""Held-out quality of one block: PSNR and SSIM against captured images.

``metrics`` holds the measures, ``views`` renders a block's held-out views and scores them. The
streamed composite's evaluation is ``streaming.evaluation``. Names load on first use (torch).
"""

from blocknerf.lazy import lazy_exports

_EXPORTS = {
    "mse_to_psnr": "blocknerf.evaluation.metrics",
    "psnr": "blocknerf.evaluation.metrics",
    "ssim": "blocknerf.evaluation.metrics",
    "evaluate_views": "blocknerf.evaluation.views",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
