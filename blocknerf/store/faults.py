"""Fault injection, for crash-safety tests only.

When the environment variable ``BLOCKNERF_FAULT`` names one of ``FAULT_POINTS``, the process exits
at once (``os._exit``, no cleanup, status ``FAULT_EXIT_CODE``) on reaching that point, leaving the
store as a kill would. Unset -- the default -- fault points do nothing.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FAULT_ENV", "FAULT_EXIT_CODE", "FAULT_POINTS", "armed", "fault_point", "leave_torn_write"]

FAULT_ENV = "BLOCKNERF_FAULT"
FAULT_EXIT_CODE = 86
FAULT_POINTS = ("during_training", "during_version_write", "during_manifest_swap")
"""Where ``BLOCKNERF_FAULT`` can stop a process: after a training step; with a version's arrays
written but not marked complete; halfway through writing the new manifest, every version complete
but unpublished (a torn temporary file is left)."""


def fault_point(name: str) -> None:
    """Exit the process at once when ``BLOCKNERF_FAULT`` names this point (crash-safety tests only)."""
    if armed(name):
        os._exit(FAULT_EXIT_CODE)


def armed(name: str) -> bool:
    """Whether ``BLOCKNERF_FAULT`` names this point."""
    return os.environ.get(FAULT_ENV) == name


def leave_torn_write(root: Path, attrs: Mapping[str, Any]) -> None:
    """Fault injection: the half-written temporary file a kill inside zarr's atomic write leaves."""
    text = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": dict(attrs)})
    (root / f"zarr.{uuid.uuid4().hex}.partial").write_text(text[: len(text) // 2])

