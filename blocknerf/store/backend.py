"""How the store meets zarr and the file system: timestamps, local paths, array chunking, errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from collections.abc import Iterable, Mapping

import numpy as np
import zarr

__all__ = ["chunks", "is_local", "local_path", "reason", "utc_now", "write_arrays"]


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (second precision)."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def write_arrays(group: zarr.Group, arrays: Mapping[str, np.ndarray]) -> None:
    """Write each array of ``arrays`` into ``group``, chunked along its first axis."""
    for name, value in arrays.items():
        a = np.ascontiguousarray(value)
        group.create_array(name, data=a, chunks=chunks(a.shape, a.dtype.itemsize))


def read_arrays(group: zarr.Group, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named arrays of ``group``, whole, fetched concurrently: their metadata and chunks are
    requested together, so a version of many small arrays costs about one round trip, not one per
    array (on an object store, and on a local disk through zarr's event loop alike)."""
    import asyncio

    from zarr.core.sync import sync

    parent = group._async_group  # zarr's asynchronous twin of the group; the synchronous API has no batch read

    async def one(name: str) -> tuple[str, np.ndarray]:
        array = await parent.getitem(name)
        return name, np.asarray(await array.getitem(...))

    async def every() -> dict[str, np.ndarray]:
        return dict(await asyncio.gather(*(one(name) for name in names)))

    return sync(every())


def chunks(shape: tuple[int, ...], itemsize: int, target_bytes: int = 4 << 20) -> tuple[int, ...]:
    """Chunk along the first axis so one chunk holds about ``target_bytes``."""
    if not shape:
        return ()
    row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize or 1
    return (max(1, min(shape[0], target_bytes // row)), *shape[1:])


def local_path(url: str) -> Path:
    """The local directory of a local store URL."""
    return Path(url.removeprefix("file://"))


def is_local(url: str) -> bool:
    """Whether ``url`` is a local path (plain, or ``file://``)."""
    return "://" not in url or url.startswith("file://")


def reason(exc: BaseException) -> str:
    """A short reason for an I/O error, for one-line messages."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__

