"""Output directories that a command owns and may write again."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

__all__ = ["clear_outputs"]


def clear_outputs(out: Path, names: Iterable[str]) -> Path:
    """Delete what an earlier run of the command left in ``out`` (the entries ``names``), create
    ``out`` when missing, and return it resolved. The caller has checked that ``out`` is its own."""
    for name in names:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()
