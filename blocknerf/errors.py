"""Errors a user can act on: each renders as one line naming the file and the problem."""

from __future__ import annotations

from os import PathLike


def one_line(text: str) -> str:
    """``text`` with every unprintable character (a newline from a user's file, say) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class BlockNerfError(Exception):
    """Base class for errors caused by input, configuration or the environment, not by a bug.

    The command line prints these as a single line and exits with status 2.
    """


class InputError(BlockNerfError):
    """Bad input data: the message names the offending file (or store) and what is wrong with it."""

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        line = one_line(problem) if self.path is None else f"{one_line(self.path)}: {one_line(problem)}"
        super().__init__(line)

    def __reduce__(self):  # noqa: ANN204 - errors cross process boundaries (dask) by pickle
        return (type(self), (self.path, self.problem))


class ConfigError(InputError):
    """An invalid configuration file or override (unknown key, wrong type, out of range)."""


class StoreError(InputError):
    """A block store that is missing, read-only, of an unknown format or otherwise unusable."""


class TrainingError(BlockNerfError):
    """Training of a block stopped for a reason the user must look at (e.g. a non-finite loss)."""


class StoreWarning(UserWarning):
    """A part of a store was skipped while reading it (e.g. a corrupt block left out of a render)."""


class CaptureWarning(UserWarning):
    """Something in a capture was skipped or repaired while loading it (e.g. missing images)."""
