"""Drives ``blocknerf view`` in headless Chromium, as a user would: for the browser test and the
latency benchmark (``bench/viewer.py``).

The browser is Debian's ``chromium`` package driven by Playwright through ``executable_path`` (no
browser download). ``ViewerProcess`` starts ``blocknerf view`` in a subprocess on a free local
port and stops it; ``ViewerPage`` opens the page and reads the statistics panel, whose first line
("frame N · WxH full|moving · ...") says which frame is on screen. A probe in the page records,
with the page's own clock, when input events happen and when each new frame's statistics appear,
so latencies are measured in the browser itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser")
FRAME_LINE = re.compile(r"frame (\d+) · (\d+)×(\d+) (full|moving)")

# In-page probe: input event times and, per new "frame N" in the statistics, when it appeared.
PROBE_JS = r"""
() => {
  if (window.__bn) return;
  window.__bn = {inputs: [], frames: [], last: -1};
  for (const kind of ["pointerdown", "pointermove", "keydown"]) {
    window.addEventListener(kind, (e) => { if (kind !== "pointermove" || e.buttons) window.__bn.inputs.push([kind, performance.now()]); }, true);
  }
  const check = () => {
    const m = /frame (\d+) · (\d+)×(\d+) (full|moving)/.exec(document.body.innerText);
    if (m && Number(m[1]) !== window.__bn.last) {
      window.__bn.last = Number(m[1]);
      window.__bn.frames.push({n: Number(m[1]), w: Number(m[2]), h: Number(m[3]), full: m[4] === "full", t: performance.now()});
    }
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true});
  check();
}
"""


def find_chromium() -> str:
    """Path of the system Chromium; RuntimeError saying how to install it when there is none."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no Chromium on PATH: install Debian's package (apt-get install -y chromium); the viewer's browser test needs it")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ViewerProcess:
    """``blocknerf view STORE --port P ...`` in a subprocess; a context manager that waits for its
    URL (at most ``start_timeout_s``) and stops it (SIGTERM, then SIGKILL after 20 s)."""

    def __init__(self, store: Path | str, *, args: tuple[str, ...] = (), start_timeout_s: float = 180.0, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.cmd = [sys.executable, "-m", "blocknerf", "view", str(store), "--port", str(self.port), *args]
        self.start_timeout_s = start_timeout_s
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []
        self.returncode: int | None = None

    def __enter__(self) -> ViewerProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=self.cwd, bufsize=1
        )
        deadline = time.monotonic() + self.start_timeout_s
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line:
                self.output.append(line.rstrip())
                m = re.search(r"serving .* at (http://\S+)", line)
                if m:
                    self.url = m.group(1)
                    return self
            elif self.proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"blocknerf view did not start (exit {self.returncode}): " + " | ".join(self.output[-10:]))

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            try:
                rest = self.proc.stdout.read() or ""
            except (OSError, ValueError):
                rest = ""
            self.output.extend(rest.splitlines())
            self.proc.stdout.close()
        self.returncode = self.proc.returncode
        self.proc = None


@dataclass(frozen=True)
class FrameInfo:
    """What the statistics panel says about the frame on screen."""

    n: int
    width: int
    height: int
    full: bool
    text: str


class ViewerPage:
    """The viewer open in headless Chromium; a context manager (``with sync_playwright() as pw``
    around it)."""

    def __init__(self, playwright: Any, url: str, *, viewport: tuple[int, int] = (900, 600)) -> None:
        self.browser = playwright.chromium.launch(
            executable_path=find_chromium(),
            # Software WebGL (SwiftShader): headless Chromium on a machine without a GPU.
            args=["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"],
        )
        self.page = self.browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self.page.goto(url)
        self.page.evaluate(PROBE_JS)

    def __enter__(self) -> ViewerPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.browser.close()

    # -- reading the panel ----------------------------------------------------------------------
    def stats(self) -> str:
        return str(self.page.inner_text("body"))

    def frame(self) -> FrameInfo | None:
        text = self.stats()
        m = FRAME_LINE.search(text)
        if m is None:
            return None
        return FrameInfo(int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4) == "full", text)

    def wait_frame(self, *, after: int = 0, full: bool = True, timeout_s: float = 120.0) -> FrameInfo:
        """The first frame numbered above ``after`` (at full resolution when ``full``) to appear."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = self.frame()
            if info is not None and info.n > after and (info.full or not full):
                return info
            self.page.wait_for_timeout(50)
        raise TimeoutError(f"no {'full ' if full else ''}frame after frame {after} within {timeout_s:.0f} s; panel: {self.stats()[:400]!r}")

    def wait_settled(self, *, quiet_s: float = 0.5, timeout_s: float = 120.0) -> FrameInfo:
        """Wait for a full frame after which no new frame comes for ``quiet_s`` plus twice that
        frame's render time (the renderer may be busy with one more full frame)."""
        deadline = time.monotonic() + timeout_s
        info = self.wait_frame(full=True, timeout_s=timeout_s)
        while time.monotonic() < deadline:
            m = re.search(r"frames/s · (\d+) ms", info.text)
            self.page.wait_for_timeout(int(1e3 * quiet_s + (2 * int(m.group(1)) if m else 0)))
            now = self.frame()
            if now is not None and now.n == info.n and now.full:
                return now
            info = self.wait_frame(after=0, full=True, timeout_s=max(deadline - time.monotonic(), 0.1))
        raise TimeoutError(f"the view did not settle within {timeout_s:.0f} s")

    # -- acting as a user -----------------------------------------------------------------------
    def canvas_box(self) -> dict[str, float]:
        box = self.page.locator("canvas").first.bounding_box()
        assert box is not None, "the page has no canvas"
        return box

    def drag(self, dx: float, dy: float = 0.0, *, steps: int = 8) -> None:
        """Drag with the left mouse button across the left part of the canvas (orbit)."""
        box = self.canvas_box()
        x, y = box["x"] + 0.3 * box["width"], box["y"] + 0.5 * box["height"]
        mouse = self.page.mouse
        mouse.move(x, y)
        mouse.down()
        mouse.move(x + dx, y + dy, steps=steps)
        mouse.up()

    def hold_key(self, key: str, seconds: float) -> None:
        """Hold a key (e.g. ``w``: fly forward) with the focus on the canvas."""
        box = self.canvas_box()
        self.page.mouse.click(box["x"] + 0.3 * box["width"], box["y"] + 0.9 * box["height"])
        self.page.keyboard.down(key)
        self.page.wait_for_timeout(int(seconds * 1e3))
        self.page.keyboard.up(key)

    def canvas_pixels(self) -> Any:
        """(H, W, 3) uint8 screenshot of the 3D view (the side panel left out)."""
        import io

        import numpy as np
        from PIL import Image

        box = self.canvas_box()
        clip = {"x": box["x"], "y": box["y"], "width": 0.5 * box["width"], "height": box["height"]}
        return np.asarray(Image.open(io.BytesIO(self.page.screenshot(clip=clip))).convert("RGB"))

    def probe(self) -> dict[str, Any]:
        """The in-page record: {"inputs": [[kind, ms]], "frames": [{n, w, h, full, t}]}."""
        return dict(self.page.evaluate("window.__bn"))

    def latency_ms(self, since_ms: float) -> tuple[float, dict[str, Any]] | None:
        """Milliseconds from the first input that moves the camera (a drag's first move, a key
        press) after ``since_ms`` (page clock) to the first new frame after it, or None when
        either is missing; with the probe's record of that frame ({n, w, h, full, t})."""
        record = self.probe()
        inputs = [t for kind, t in record["inputs"] if t > since_ms and kind != "pointerdown"]
        if not inputs:
            return None
        frames = [f for f in record["frames"] if f["t"] > inputs[0]]
        return (frames[0]["t"] - inputs[0], frames[0]) if frames else None

    def now_ms(self) -> float:
        return float(self.page.evaluate("performance.now()"))


__all__ = ["FrameInfo", "ViewerPage", "ViewerProcess", "find_chromium", "free_port"]
