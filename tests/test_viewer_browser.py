"""``blocknerf view`` in a real browser: headless Chromium (Debian's package, driven by Playwright)
opens the page, waits for the first frame, moves the camera as a user would and reads the panel.

A machine without Chromium or Playwright FAILS this test (``.ci/run`` installs both); it never
skips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from viewer_harness import ViewerPage, ViewerProcess, find_chromium

pytestmark = pytest.mark.timeout(300)


def test_view_in_headless_chromium(tiny_store: Path, tmp_path: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - fails loudly, by design
        pytest.fail(f"playwright is not installed ({exc}); `pip install -e .[test]` installs it")
    try:
        find_chromium()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    from blocknerf.store import BlockStore

    block_ids = set(BlockStore.open(tiny_store).manifest().blocks)
    path_file = tmp_path / "kf" / "camera_path.json"
    with ViewerProcess(tiny_store, args=("--width", "48", "--memory-budget", "64MB", "--path-out", str(path_file))) as server, sync_playwright() as pw:
        assert server.url.startswith("http://127.0.0.1:")
        with ViewerPage(pw, server.url) as view:
            first = view.wait_settled(timeout_s=150)
            assert first.width == 48
            before = view.canvas_pixels()
            view.page.get_by_role("button", name="add keyframe").click()

            # Orbit with the mouse, then fly forward with W.
            view.drag(160, 40)
            view.hold_key("w", 0.4)
            moved = view.wait_frame(after=first.n, full=True, timeout_s=150)
            after = view.wait_settled(timeout_s=150)
            assert after.n >= moved.n > first.n
            pixels = view.canvas_pixels()
            change = float(np.abs(pixels.astype(np.float64) - before.astype(np.float64)).mean())
            assert change > 1.0, f"the view did not change (mean abs difference {change:.3f} of 255)"
            camera_line = lambda text: next(line for line in text.splitlines() if line.startswith("camera"))  # noqa: E731
            assert camera_line(after.text) != camera_line(first.text)

            # The panel names the blocks blended into the frame, with their weights.
            blended = next(line for line in after.text.splitlines() if line.startswith("blended"))
            assert any(b in blended for b in block_ids), blended
            assert "cache" in after.text and "hits" in after.text and "misses" in after.text

            view.page.get_by_role("button", name="add keyframe").click()
            view.page.get_by_role("button", name="save camera path").click()
            view.page.wait_for_function("document.body.innerText.includes('saved to')", timeout=30_000)

            shot = tmp_path / "viewer.png"
            view.page.screenshot(path=str(shot))
            print(f"viewer screenshot: {shot}")
    assert server.returncode == 0, "\n".join(server.output[-20:])
    assert not [line for line in server.output if "frames failed" in line], "\n".join(server.output[-20:])  # every frame drew and showed
    from streaming.camera_path import read_camera_path

    path = read_camera_path(path_file)
    assert path.width == 48
    assert len(path) > 2 and not np.allclose(path.c2w[0], path.c2w[-1])
