"""The live renderer: one thread that renders the latest camera of each viewer, never a stale one.

A viewer submits its camera whenever the user moves it (``submit``); the submission replaces the
one before it, so the thread never works through a queue of old cameras: whatever it renders next
is the newest camera it has. Resolution adapts to the motion:

* a camera not shown yet is rendered at the *moving* width, chosen from the measured
  cost of recent frames so that one frame fits ``ViewerConfig.moving_frame_ms``
  (``ResolutionPolicy``): interaction stays smooth whatever a full frame costs;
* once the camera has rested for ``rest_ms``, the view is rendered once more at full resolution
  (``full_width`` wide, the viewer's aspect); a full frame is given up between blocks as soon as
  the camera moves again, so a move never waits for a frame that is already stale;
* while every camera rests, the store's manifest is re-read every ``refresh_s``; when it changed
  (a concurrent ``update`` published blocks) every view is rendered again, so new blocks appear
  without a restart.

Views are built by ``CameraPath.view`` from a pose and a vertical field of view in degrees, the
same function ``blocknerf render --path`` uses, so a keyframe saved from the viewer renders to the
same pixels as the viewer showed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from streaming.camera_path import CameraPath
from streaming.compositor import CompositeFrame, Compositor, FrameCancelled
from streaming.config import ViewerConfig
from streaming.prefetch import Prefetcher
from streaming.protocol import CameraView


@dataclass(frozen=True, eq=False)
class LiveCamera:
    """A viewer's camera: pose, vertical field of view and the aspect of its window."""

    c2w: np.ndarray
    """(4, 4) float64 camera-to-world, OpenGL convention (x right, y up, looking down -z)."""
    fov_y_deg: float
    """Vertical field of view in degrees."""
    aspect: float
    """Width over height of the viewer's canvas."""

    def __post_init__(self) -> None:
        c2w = np.array(self.c2w, dtype=np.float64).reshape(4, 4)
        c2w.setflags(write=False)
        object.__setattr__(self, "c2w", c2w)
        object.__setattr__(self, "fov_y_deg", float(self.fov_y_deg))
        if not (0.0 < self.fov_y_deg < 180.0 and self.aspect > 0):
            raise ValueError(f"a live camera needs a fov in (0, 180) degrees and a positive aspect, got {self.fov_y_deg}, {self.aspect}")

    @property
    def position(self) -> np.ndarray:
        """(3,) float64 camera centre."""
        return self.c2w[:3, 3]

    def size(self, width: int) -> tuple[int, int]:
        """(width, height) of an image ``width`` pixels wide at this camera's aspect."""
        return int(width), max(2, round(width / self.aspect))

    def view(self, width: int) -> CameraView:
        """The camera as a view ``width`` pixels wide (``CameraPath.view``: the render command's own)."""
        return CameraPath(self.c2w[None], np.array([self.fov_y_deg])).view(0, self.size(width))


@dataclass(frozen=True, eq=False)
class LiveFrame:
    """A rendered view for one viewer."""

    client: Hashable
    camera: LiveCamera
    seq: int
    """The submission this frame shows (submissions are numbered per viewer from 1)."""
    full: bool
    """True at full resolution (the camera rests), False at the moving resolution."""
    pixels: np.ndarray
    """(H, W, 3) uint8."""
    composite: CompositeFrame
    """The compositor's frame: blocks used with their weights, cache counters, timings."""
    rendered_at: float
    """Clock time when the frame was finished."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


def to_pixels(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float colour in [0, 1] -> uint8, rounded as the render command's PNG frames are."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class ResolutionPolicy:
    """Chooses the moving width from the cost of recent frames.

    Frame time is modelled as ``ms = a + b * pixels`` (a: per-frame overhead such as selecting and
    leasing blocks; b: cost per pixel), fitted by least squares to the last ``window`` frames; with
    a single frame size seen so far, ``a`` is taken as 0. Before any frame, a quarter of the full
    width is used.
    """

    def __init__(self, full_width: int, cfg: ViewerConfig, *, window: int = 16) -> None:
        self.full_width = int(full_width)
        self.cfg = cfg
        self._samples: list[tuple[float, float]] = []
        self._window = window

    def record(self, pixels: int, frame_ms: float) -> None:
        """Account one rendered frame of ``pixels`` pixels that took ``frame_ms``."""
        self._samples = [*self._samples[-(self._window - 1) :], (float(pixels), float(frame_ms))]

    def cost_model(self) -> tuple[float, float] | None:
        """(a ms, b ms per pixel) of the fitted model, or None before any frame."""
        if not self._samples:
            return None
        px = np.array([s[0] for s in self._samples])
        ms = np.array([s[1] for s in self._samples])
        if np.ptp(px) > 0:
            b, a = np.polyfit(px, ms, 1)
            if b > 0 and a >= 0:
                return float(a), float(b)
        return 0.0, float(max(ms.mean() / px.mean(), 1e-9))

    def moving_width(self, aspect: float) -> int:
        """Width of the next frame while the camera moves: the largest that fits the frame time,
        between ``min_width`` and the full width."""
        model = self.cost_model()
        if model is None:
            width = self.full_width // 4
        else:
            a, b = model
            pixels = max(self.cfg.moving_frame_ms - a, 0.0) / b
            width = int(np.sqrt(pixels * aspect))
        return int(min(self.full_width, max(self.cfg.min_width, width)))


@dataclass(eq=False)
class _Slot:
    """What the thread knows about one viewer (guarded by the renderer's lock)."""

    camera: LiveCamera
    seq: int
    changed_at: float
    rendered_seq: int = 0
    rendered_full: bool = False
    served_at: float = field(default=0.0)


class LiveRenderer:
    """Renders the latest camera of each viewer in one thread (see the module docstring).

    ``deliver(frame)`` is called from the thread with every finished ``LiveFrame``; an exception
    it or the compositor raises is recorded in ``errors`` and the thread goes on.
    """

    def __init__(
        self,
        compositor: Compositor,
        deliver: Callable[[LiveFrame], None],
        *,
        full_width: int,
        cfg: ViewerConfig,
        prefetcher: Prefetcher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg.validate()
        self.compositor = compositor
        self.deliver = deliver
        self.cfg = cfg
        self.policy = ResolutionPolicy(full_width, cfg)
        self.prefetcher = prefetcher
        self.clock = clock
        self.errors: list[str] = []
        self.frames = 0
        self.cancelled = 0
        """Full frames given up because the camera moved on while they were drawn."""
        self._cond = threading.Condition()
        self._slots: dict[Hashable, _Slot] = {}
        self._stop = False
        self._busy = False
        """A frame is being rendered (guarded by the lock)."""
        self._thread: threading.Thread | None = None
        self._refreshed_at = clock()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> LiveRenderer:
        if self._thread is None:
            self._stop = False
            if self.prefetcher is not None:
                self.prefetcher.start()
            self._thread = threading.Thread(target=self._run, name="blocknerf-live-render", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the frame in progress (if any) and wait for the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.prefetcher is not None:
            self.prefetcher.stop()

    def __enter__(self) -> LiveRenderer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- viewers --------------------------------------------------------------------------------
    def submit(self, client: Hashable, camera: LiveCamera) -> int:
        """Make ``camera`` the one to render next for ``client`` (replacing any not yet rendered);
        returns the submission's number."""
        with self._cond:
            slot = self._slots.get(client)
            if slot is None:
                slot = self._slots[client] = _Slot(camera, 1, self.clock())
            else:
                slot.camera, slot.seq, slot.changed_at = camera, slot.seq + 1, self.clock()
            self._cond.notify_all()
            return slot.seq

    def forget(self, client: Hashable) -> None:
        """Stop rendering for ``client`` (it disconnected)."""
        with self._cond:
            self._slots.pop(client, None)

    def redraw(self, client: Hashable | None = None) -> None:
        """Render the current view of ``client`` (None: of every viewer) again at full resolution."""
        with self._cond:
            for key, slot in self._slots.items():
                if client is None or key == client:
                    slot.rendered_seq, slot.rendered_full = slot.seq, False
                    slot.changed_at = self.clock() - self.cfg.rest_ms / 1e3
            self._cond.notify_all()

    def camera(self, client: Hashable) -> LiveCamera | None:
        """The latest camera ``client`` submitted."""
        with self._cond:
            slot = self._slots.get(client)
            return None if slot is None else slot.camera

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every viewer's latest camera is shown at full resolution (its frame
        delivered, not only begun); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or not all(s.rendered_seq == s.seq and s.rendered_full for s in self._slots.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    # -- the thread -----------------------------------------------------------------------------
    def _next_job(self, now: float) -> tuple[tuple[Hashable, _Slot, bool] | None, float]:
        """The job to do now, if any: (client, slot, full); else the seconds until one may be due."""
        rest_s = self.cfg.rest_ms / 1e3
        wait = self.cfg.refresh_s
        for client, slot in sorted(self._slots.items(), key=lambda kv: kv[1].served_at):
            if slot.rendered_seq != slot.seq:
                # A camera not shown yet is shown at the moving resolution first, even if it came
                # in long ago: it came while a frame was being rendered, so the user is moving.
                return (client, slot, False), 0.0
            if not slot.rendered_full:
                due = slot.changed_at + rest_s - now
                if due <= 0:
                    return (client, slot, True), 0.0
                wait = min(wait, due)
        return None, wait

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                now = self.clock()
                job, wait = self._next_job(now)
                if job is None:
                    if now - self._refreshed_at >= self.cfg.refresh_s and self._slots:
                        self._refreshed_at = now
                    else:
                        self._cond.wait(max(min(wait, self._refreshed_at + self.cfg.refresh_s - now), 0.001))
                        continue
                else:
                    client, slot, full = job
                    camera, seq = slot.camera, slot.seq
                    # Marked now, so a camera submitted during the render is seen as new.
                    slot.rendered_seq, slot.rendered_full, slot.served_at = seq, full, now
                    self._busy = True
            if job is None:
                self._refresh()
                continue
            self._render(client, camera, seq, full)

    def _refresh(self) -> None:
        """Re-read the manifest; on a change, render every view again."""
        try:
            changed = self.compositor.streamer.refresh()
        except Exception as exc:  # noqa: BLE001 - a store briefly unreadable must not stop the viewer
            self.errors.append(f"refresh: {type(exc).__name__}: {exc}")
            return
        if changed:
            self.redraw()

    def _render(self, client: Hashable, camera: LiveCamera, seq: int, full: bool) -> None:
        width = self.policy.full_width if full else self.policy.moving_width(camera.aspect)
        try:
            if self.prefetcher is not None:
                self.prefetcher.observe(camera.position)
            t0 = time.perf_counter()
            composite = self.compositor.render(camera.view(width), cancelled=(lambda: self._moved(client, seq)) if full else None)
            pixels = to_pixels(composite.rgb)
            self.policy.record(pixels.shape[0] * pixels.shape[1], 1e3 * (time.perf_counter() - t0))
            self.frames += 1
            self.deliver(LiveFrame(client, camera, seq, full, pixels, composite, self.clock()))
        except FrameCancelled:
            self.cancelled += 1  # the new camera is rendered next; it will rest and get its own full frame
        except Exception as exc:  # noqa: BLE001 - reported to the viewer; the next camera may work
            self.errors[:] = [*self.errors[-99:], f"{type(exc).__name__}: {exc}"]
        with self._cond:
            self._refreshed_at = self.clock()
            self._busy = False
            self._cond.notify_all()

    def _moved(self, client: Hashable, seq: int) -> bool:
        """Whether ``client`` submitted a camera after submission ``seq`` (or left)."""
        with self._cond:
            slot = self._slots.get(client)
            return slot is None or slot.seq != seq


__all__ = ["LiveCamera", "LiveFrame", "LiveRenderer", "ResolutionPolicy", "to_pixels"]
