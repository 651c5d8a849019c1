"""Keys of a store read and written with compare-and-swap (conditional writes): the writer lease, version claims.

zarr gives no conditional writes, so the few keys that need them go through ``StoreObjects``:

- a local directory: ``create`` is an exclusive ``open(O_CREAT | O_EXCL)``; ``replace`` and
  ``delete`` compare the object's token under an ``flock`` on a lock file beside the store (one
  holder at a time, released by the kernel when a process dies) and write by rename;
- S3 (``s3://``, through s3fs): ``create`` is a ``PutObject`` with ``If-None-Match: *``;
  ``replace`` a ``PutObject`` with ``If-Match: <ETag>``; the token is the ETag;
- any other fsspec URL: best effort (check, then write), with no guarantee against a racing writer.

A token names one content of an object: a writer that read token T replaces the object only if it
still holds T, so two writers never both win.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from blocknerf.store.backend import is_local, local_path

__all__ = ["LocalObjects", "S3Objects", "FsspecObjects", "StoreObjects", "store_objects"]


class StoreObjects(Protocol):
    """Compare-and-swap access to small objects under a store (keys are ``/``-separated)."""

    def read(self, key: str) -> tuple[bytes, str] | None:
        """(content, token) of an object, or None when it does not exist."""
        ...

    def create(self, key: str, data: bytes) -> str | None:
        """Write a new object; its token, or None when the key exists already."""
        ...

    def replace(self, key: str, data: bytes, token: str) -> str | None:
        """Overwrite an object whose token is still ``token``; the new token, or None when it changed."""
        ...

    def delete(self, key: str, token: str) -> bool:
        """Delete an object whose token is still ``token``; False when it changed or is gone."""
        ...


def store_objects(url: str, storage_options: dict[str, Any] | None = None) -> StoreObjects:
    """The ``StoreObjects`` for a store URL (local path, ``s3://`` or another fsspec URL)."""
    if is_local(url):
        return LocalObjects(local_path(url))
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if "s3" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return S3Objects(fs, path)
    return FsspecObjects(fs, path)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalObjects:
    """``StoreObjects`` in a local directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = (self.root / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return data, _digest(data)

    def create(self, key: str, data: bytes) -> str | None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the key, then linked to it: link() fails when the key exists, so the
        # object appears complete or not at all.
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.partial"
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return None
        finally:
            tmp.unlink(missing_ok=True)
        return _digest(data)

    def replace(self, key: str, data: bytes, token: str) -> str | None:
        path = self.root / key
        with self._locked():
            current = self.read(key)
            if current is None or current[1] != token:
                return None
            tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.partial"
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return _digest(data)

    def delete(self, key: str, token: str) -> bool:
        with self._locked():
            current = self.read(key)
            if current is None or current[1] != token:
                return False
            (self.root / key).unlink(missing_ok=True)
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        lock = self.root.parent / f".{self.root.name}.lock"
        with open(lock, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class S3Objects:
    """``StoreObjects`` on S3 through s3fs, with conditional ``PutObject`` (see the module docstring)."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.bucket, _, prefix = path.strip("/").partition("/")
        self.prefix = prefix.rstrip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> tuple[bytes, str] | None:
        for _ in range(5):  # the ETag must belong to the bytes read: retry if it changed in between
            before = self._etag(key)
            if before is None:
                return None
            try:
                data = self.fs.cat_file(f"{self.bucket}/{self._key(key)}")
            except FileNotFoundError:
                return None
            if self._etag(key) == before:
                return data, before
        return None

    def create(self, key: str, data: bytes) -> str | None:
        return self._put(key, data, IfNoneMatch="*")

    def replace(self, key: str, data: bytes, token: str) -> str | None:
        return self._put(key, data, IfMatch=token)

    def delete(self, key: str, token: str) -> bool:
        # S3 deletes unconditionally: check the token first (a racing replace in between is lost,
        # which a lease owner's own delete tolerates).
        if self._etag(key) != token:
            return False
        self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self._key(key))
        self.fs.invalidate_cache()
        return True

    def _put(self, key: str, data: bytes, **condition: str) -> str | None:
        try:
            out = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except (OSError, ValueError) as exc:
            if _precondition_failed(exc):
                return None
            raise
        finally:
            self.fs.invalidate_cache()
        return str(out["ETag"])

    def _etag(self, key: str) -> str | None:
        try:
            out = self.fs.call_s3("head_object", Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError:
            return None
        return str(out["ETag"])


def _precondition_failed(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        text = f"{type(seen).__name__} {seen}"
        if any(s in text for s in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class FsspecObjects:
    """Best-effort ``StoreObjects`` for fsspec file systems without conditional writes."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/")

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.fs.cat_file(f"{self.path}/{key}")
        except FileNotFoundError:
            return None
        return data, _digest(data)

    def create(self, key: str, data: bytes) -> str | None:
        if self.read(key) is not None:
            return None
        self.fs.pipe_file(f"{self.path}/{key}", data)
        return _digest(data)

    def replace(self, key: str, data: bytes, token: str) -> str | None:
        current = self.read(key)
        if current is None or current[1] != token:
            return None
        self.fs.pipe_file(f"{self.path}/{key}", data)
        return _digest(data)

    def delete(self, key: str, token: str) -> bool:
        current = self.read(key)
        if current is None or current[1] != token:
            return False
        self.fs.rm_file(f"{self.path}/{key}")
        return True
