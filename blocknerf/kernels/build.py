"""Compile-on-first-use of the C kernels next to this file, with an on-disk cache."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SOURCE_DIR = Path(__file__).resolve().parent
# Not -ffast-math: GCC then links crtfastmath.o, whose constructor turns on flush-to-zero for the
# whole process when the library loads, silently changing numerics elsewhere (scipy, torch).
_FLAGS = (
    "-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros",
    "-fassociative-math", "-freciprocal-math", "-ffp-contract=fast", "-fopenmp", "-fPIC", "-shared", "-std=c11",
)


class KernelUnavailable(RuntimeError):
    """A native kernel could not be built or loaded on this machine."""


def cache_dir() -> Path:
    """Where compiled kernels live: ``$BLOCKNERF_CACHE`` or ``~/.cache/blocknerf``, under ``kernels/``."""
    base = os.environ.get("BLOCKNERF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "blocknerf"
    )
    return Path(base) / "kernels"


@functools.cache
def load_library(name: str) -> ctypes.CDLL:
    """Compile (once per source/compiler/CPU) and load ``<name>.c``; raises KernelUnavailable.

    torch must be imported first: the library then shares torch's OpenMP runtime (same soname).
    """
    import torch  # see docstring

    source = _SOURCE_DIR / f"{name}.c"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise KernelUnavailable("no C compiler found (set CC)")
    key = hashlib.sha256()
    key.update(source.read_bytes())
    key.update(" ".join((compiler, *_FLAGS)).encode())
    key.update(_cpu_signature().encode())
    target = cache_dir() / f"{name}-{key.hexdigest()[:16]}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Compile to a private file and rename, so concurrent workers never load a partial library.
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            result = subprocess.run(
                [compiler, *_FLAGS, str(source), "-o", tmp, "-lm"], capture_output=True, text=True
            )
            if result.returncode != 0:
                raise KernelUnavailable(f"compiling {source.name} failed: {result.stderr.strip()[:2000]}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    flushing_before = _flushes_denormals()
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        raise KernelUnavailable(f"loading {target.name} failed: {exc}") from None
    if not flushing_before and _flushes_denormals():
        # A library built with fast-math (e.g. by a CC override) switched the loading thread to
        # flush-to-zero, which silently changes float results everywhere else; switch it back.
        torch.set_flush_denormal(False)
    return lib


_DENORMAL = 5e-324  # smallest positive double; a module global, so the test is not constant-folded


def _flushes_denormals() -> bool:
    """Whether this thread flushes denormals to zero (MXCSR FTZ/DAZ on x86)."""
    return _DENORMAL * 1.0 == 0.0


BACKENDS = ("auto", "fast", "reference")
"""How a component picks between a native kernel and its torch reference path."""


def native_library(name: str, backend: str, *, device_type: str = "cpu") -> ctypes.CDLL | None:
    """The native library ``name`` that ``backend`` asks for, or None for the torch reference path.

    The one rule every kernel follows:

    * ``"reference"``: None.
    * ``"fast"``: the library; KernelUnavailable (its message says ``'fast' requested``) when it
      cannot be built, ValueError for a non-CPU device (the kernels are CPU-only).
    * ``"auto"``: the library for CPU inputs; None on other devices (CUDA takes the torch path);
      when the library cannot be built, None and one RuntimeWarning per kernel and process.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} for kernel '{name}' (expected auto, fast or reference)")
    if backend == "reference":
        return None
    if device_type != "cpu":
        if backend == "fast":
            raise ValueError(f"native kernel '{name}' is CPU-only, got inputs on {device_type}; use backend 'auto' or 'reference'")
        return None
    try:
        return load_library(name)
    except KernelUnavailable as exc:
        if backend == "fast":
            raise KernelUnavailable(f"backend 'fast' requested but native kernel '{name}' is unavailable: {exc}") from None
        warn_fallback(name, str(exc))
        return None


@functools.cache
def warn_fallback(name: str, reason: str) -> None:
    """Warn once per kernel and reason that the torch reference path stands in for ``name``."""
    warnings.warn(f"native kernel '{name}' unavailable, using the (slower) torch reference path: {reason}", RuntimeWarning, stacklevel=4)


_THREADS_LOCK = threading.Lock()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the duration (serialised: the setting is global).

    For small tensor glue around a kernel (ray setup, masks): on a machine whose cores other
    processes also use, torch's threaded ops spin at their barriers whenever a core is taken, and
    on the shared 2-core machine they cost 10-40x the CPU time of the same ops on one thread.
    """
    import torch

    with _THREADS_LOCK:
        before = torch.get_num_threads()
        if before == n:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _cpu_signature() -> str:
    """A string that changes when -march=native would generate different code."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return f"{platform.machine()}|{platform.processor()}|{flags}"
