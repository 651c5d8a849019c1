"""Prefetching: a background thread loads the blocks the camera will need next.

The renderer tells the prefetcher where the camera is going, either as the upcoming poses of a
known path (``schedule``) or by reporting each position so that the prefetcher extrapolates the
motion (``observe``). The worker turns positions into the cache keys they need (the streamer's
position-only selection, no rendering) in order of first need, and loads the missing ones through
``BlockCache.prefetch``: a prefetch never evicts a block in use, pinned for the current frame, or
needed sooner than the one it loads, and it gives up (until the next schedule) when the budget
has no such room. So at steady speed a flythrough rarely waits on a load.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from streaming.protocol import LevelKey
from streaming.streamer import BlockStreamer


def extrapolate(history: np.ndarray, steps: int) -> np.ndarray:
    """Constant-velocity prediction: recent positions (H, 3), oldest first -> the next ``steps``
    positions (steps, 3). With one position, the camera is assumed to stand still."""
    h = np.asarray(history, dtype=np.float64).reshape(-1, 3)
    if len(h) == 0 or steps <= 0:
        return np.zeros((0, 3))
    # Mean velocity over the recent history smooths jitter in a hand-driven camera.
    velocity = (h[-1] - h[0]) / (len(h) - 1) if len(h) > 1 else np.zeros(3)
    return h[-1] + velocity * np.arange(1, steps + 1)[:, None]


class Prefetcher:
    """Loads upcoming blocks of a streamer in a daemon thread; use as a context manager."""

    def __init__(self, streamer: BlockStreamer, *, lookahead: int | None = None, history: int = 4) -> None:
        self.streamer = streamer
        self.lookahead = streamer.cfg.prefetch_lookahead if lookahead is None else lookahead
        self._history: list[np.ndarray] = []
        self._history_len = max(2, history)
        self._cond = threading.Condition()
        self._work: list[LevelKey] | None = None
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        """Errors of failed prefetches (the demand load retries and reports them)."""

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Prefetcher:
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="blocknerf-prefetch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the worker after the load it is doing (if any) and wait for it."""
        with self._cond:
            self._stop = True
            self._work = None
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Prefetcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- telling it where the camera goes --------------------------------------------------------
    def schedule(self, positions: Sequence[np.ndarray] | np.ndarray, *, focal_px: float | None = None) -> None:
        """Prefetch for the upcoming camera positions (K, 3), soonest first (replaces earlier work):
        the coarse levels of their blocks, and with ``focal_px`` (the views' focal length in
        pixels) the finer levels the views will want."""
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)[: max(self.lookahead, 0)]
        keys = self.streamer.keys_along(pos, focal_px=focal_px) if len(pos) else []
        with self._cond:
            self._work = keys
            self._cond.notify_all()

    def observe(self, position: np.ndarray, *, focal_px: float | None = None) -> None:
        """Report the camera's current position; prefetch along its extrapolated motion."""
        self._history.append(np.asarray(position, dtype=np.float64).reshape(3))
        self._history = self._history[-self._history_len :]
        self.schedule(extrapolate(np.array(self._history), self.lookahead), focal_px=focal_px)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the scheduled work is done (or given up); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._work is None and not self._busy, timeout=timeout)

    # -- the worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        cache = self.streamer.cache
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._work is not None)
                if self._stop:
                    return
                work, self._work = self._work or [], None
                self._busy = True
            try:
                current = self.streamer.snapshot
                for key in reversed(work):
                    cache.touch(key)  # loaded blocks needed soon become recently used, soonest last
                for i, key in enumerate(work):
                    with self._cond:
                        if self._stop or self._work is not None:
                            break  # newer work supersedes this list
                    if key in cache or current.versions.get(key[0]) != key[1]:
                        continue
                    # Blocks needed sooner than this one must not make room for it.
                    if not cache.prefetch(key, protected=work[:i]):
                        break  # no room without evicting something needed sooner
            except Exception as exc:  # noqa: BLE001 - the renderer's own load reports real problems
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


__all__ = ["Prefetcher", "extrapolate"]
