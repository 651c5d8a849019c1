"""Native CPU kernels (plain C + OpenMP, loaded with ctypes), compiled on first use and cached.

Each ``<name>.c`` in this folder is one kernel library. ``load_library(name)`` compiles it with the
system C compiler into a per-user cache keyed by the source, compiler and CPU, and returns a
``ctypes.CDLL`` -- or None when no compiler is available, in which case callers use their plain
torch reference path.
"""

from blocknerf.kernels.build import KernelUnavailable, load_library

__all__ = ["KernelUnavailable", "load_library"]
