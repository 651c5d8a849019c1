"""Native CPU kernels (plain C + OpenMP, loaded with ctypes), compiled on first use and cached.

Each ``<name>.c`` in this folder is one kernel library: ``hashgrid`` (the hash encoding, forward and
backward), ``march`` (samples along rays through the occupancy grid) and ``composite`` (volume
rendering weights, forward and backward). ``load_library(name)`` compiles it with the system C
compiler into a per-user cache keyed by the source, compiler and CPU and returns a ``ctypes.CDLL``,
or raises KernelUnavailable. Components choose through ``native_library(name, backend)``, one rule
for all of them: ``reference`` never uses a kernel, ``fast`` requires it, ``auto`` uses it on CPU
and falls back to the component's torch reference path with one warning when it cannot be built.
The tests of the kernels fail on a machine that cannot build them, unless
``BLOCKNERF_ALLOW_NO_KERNEL=1`` is set.
"""

from blocknerf.kernels.build import BACKENDS, KernelUnavailable, load_library, native_library

__all__ = ["ALLOW_NO_KERNEL_ENV", "BACKENDS", "KernelUnavailable", "load_library", "native_library"]

ALLOW_NO_KERNEL_ENV = "BLOCKNERF_ALLOW_NO_KERNEL"
"""Set to 1 to let the kernel tests pass on a machine where the kernels cannot be built."""
