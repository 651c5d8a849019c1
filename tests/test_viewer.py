"""The live viewer without a browser: camera conventions, the adaptive resolution, the render
thread (latest camera only, full resolution at rest, new blocks without a restart), the keyframe
round trip through ``blocknerf render --path``, and the command's one-line errors."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from blocknerf.capture.images import load_image
from blocknerf.cli.main import main
from streaming.compositor import Compositor, FrameCancelled
from streaming.config import StreamConfig, ViewerConfig
from streaming.live_renderer import LiveCamera, LiveFrame, LiveRenderer, ResolutionPolicy
from streaming.streamer import BlockStreamer
from streaming.viewer import c2w_from_viser, viser_pose, write_keyframes


def test_viser_cameras_become_opengl_poses() -> None:
    # viser's identity rotation is an OpenCV camera looking along +z (y down): in OpenGL terms the
    # camera's -z axis (its viewing direction) is world +z and its +y axis is world -y.
    c2w = c2w_from_viser(np.array([1.0, 0.0, 0.0, 0.0]), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(-c2w[:3, 2], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(c2w[:3, 1], [0.0, -1.0, 0.0])
    np.testing.assert_allclose(c2w[:3, 3], [1.0, 2.0, 3.0])
    q = np.array([0.9, 0.1, -0.3, 0.2]) / np.linalg.norm([0.9, 0.1, -0.3, 0.2])
    wxyz, position = viser_pose(c2w_from_viser(q, np.array([4.0, 5.0, 6.0])))
    np.testing.assert_allclose(wxyz * np.sign(wxyz[0]), q, atol=1e-12)
    np.testing.assert_allclose(position, [4.0, 5.0, 6.0])


def test_resolution_policy_fits_the_moving_frame_time() -> None:
    policy = ResolutionPolicy(320, ViewerConfig(moving_frame_ms=60.0, min_width=16))
    assert policy.moving_width(4 / 3) == 80  # no measurement yet: a quarter of the full width
    for px in (1000, 4000, 16000):
        policy.record(px, 10.0 + 0.01 * px)  # 10 ms per frame + 0.01 ms per pixel
    a, b = policy.cost_model()  # type: ignore[misc]
    assert a == pytest.approx(10.0) and b == pytest.approx(0.01)
    # (60 - 10) / 0.01 = 5000 pixels at 4:3: width sqrt(5000 * 4 / 3) = 81.6
    assert policy.moving_width(4 / 3) == 81
    policy.record(100, 500.0)  # a very slow frame: the narrowest width, never below it
    assert policy.moving_width(4 / 3) >= 16
    fast = ResolutionPolicy(320, ViewerConfig(moving_frame_ms=60.0))
    fast.record(76800, 1.0)
    assert fast.moving_width(4 / 3) == 320  # never wider than full


def _camera(x: float) -> LiveCamera:
    c2w = np.eye(4)
    c2w[:3, 3] = (x, 0.0, 0.0)
    return LiveCamera(c2w, 60.0, 4 / 3)


def test_the_render_thread_skips_stale_cameras_and_rests_at_full_resolution(fakes) -> None:  # noqa: ANN001
    gate, entered = threading.Event(), threading.Event()

    def first_load_waits(key) -> None:  # noqa: ANN001
        entered.set()
        assert gate.wait(30)

    source = fakes.Source(fakes.grid(1), block_loads=first_load_waits)
    streamer = BlockStreamer(source, StreamConfig(prefetch=False))
    now = [0.0]
    frames: list[LiveFrame] = []
    renderer = LiveRenderer(
        Compositor(streamer), frames.append, full_width=32, cfg=ViewerConfig(rest_ms=100.0, refresh_s=60.0), clock=lambda: now[0]
    )
    with renderer:
        renderer.submit("tab", _camera(0.0))
        assert entered.wait(30)  # the thread is rendering camera 1, held in its block load
        for x in (1.0, 2.0, 3.0, 4.0):
            renderer.submit("tab", _camera(x))
        gate.set()
        now[0] = 0.05
        deadline = threading.Event()
        while len(frames) < 2 and not deadline.wait(0.01):
            pass
        now[0] = 1.0  # the camera has rested
        assert renderer.wait_idle(30), renderer.errors
    assert not renderer.errors
    assert [(f.seq, f.full) for f in frames] == [(1, False), (5, False), (5, True)]
    assert frames[-1].camera.position[0] == 4.0
    assert frames[-1].size == (32, 24) and frames[0].size[0] < 32


def test_a_frame_is_given_up_between_blocks_when_asked(fakes) -> None:  # noqa: ANN001
    blocks = fakes.grid(2)
    compositor = Compositor(BlockStreamer(fakes.Source(blocks), StreamConfig(prefetch=False, max_blocks=None, visibility_threshold=0.0)))
    view = fakes.view((5.0, 5.0, 0.0))
    asked = []
    with pytest.raises(FrameCancelled):
        compositor.render(view, cancelled=lambda: asked.append(1) or len(asked) > 1)
    assert sum(b.renders for b in blocks) <= 1 and len(asked) == 2  # gave up before the second block
    frame = compositor.render(view)  # nothing stayed leased: the same view renders in full
    assert len(frame.used) == 4


def test_a_full_frame_is_given_up_when_the_camera_moves(fakes) -> None:  # noqa: ANN001
    real = Compositor(BlockStreamer(fakes.Source(fakes.grid(1)), StreamConfig(prefetch=False)))
    in_full, held = threading.Event(), []

    class HoldsTheFirstFullFrame:  # draws like the real compositor, but its first full frame lasts until given up
        streamer = real.streamer

        def render(self, view, *, settled=False, cancelled=None):  # noqa: ANN001, ANN202
            if cancelled is not None and not held:
                held.append(view)
                in_full.set()
                wait = threading.Event()
                for _ in range(3000):
                    if cancelled():
                        raise FrameCancelled("camera moved")
                    wait.wait(0.01)
            return real.render(view, settled=settled)

    now = [0.0]
    frames: list[LiveFrame] = []
    renderer = LiveRenderer(HoldsTheFirstFullFrame(), frames.append, full_width=32,  # type: ignore[arg-type]
                            cfg=ViewerConfig(rest_ms=100.0, refresh_s=60.0), clock=lambda: now[0])
    with renderer:
        renderer.submit("tab", _camera(0.0))
        now[0] = 1.0  # camera 1 rests: its full frame starts and is held
        assert in_full.wait(30)
        renderer.submit("tab", _camera(1.0))
        now[0] = 2.0
        assert renderer.wait_idle(30), renderer.errors
    assert not renderer.errors and renderer.cancelled == 1
    assert [(f.seq, f.full) for f in frames] == [(1, False), (2, False), (2, True)]


def test_a_published_block_appears_without_a_restart(fakes) -> None:  # noqa: ANN001
    blocks = fakes.grid(1)
    source = fakes.Source(blocks)
    streamer = BlockStreamer(source, StreamConfig(prefetch=False))
    frames: list[LiveFrame] = []
    renderer = LiveRenderer(Compositor(streamer), frames.append, full_width=16, cfg=ViewerConfig(rest_ms=0.0, refresh_s=0.05))
    with renderer:
        renderer.submit("tab", _camera(0.0))
        assert renderer.wait_idle(30)
        shown = len(frames)
        source.publish(fakes.Block(blocks[0].block_id, version=2, color=(0.9, 0.1, 0.1)))
        event = threading.Event()
        for _ in range(600):
            if any(u.version == 2 for f in frames[shown:] for u in f.composite.used):
                break
            event.wait(0.05)
    assert [u.version for u in frames[-1].composite.used] == [2]
    assert frames[-1].full and not np.array_equal(frames[-1].pixels, frames[shown - 1].pixels)


@pytest.mark.usefixtures("single_torch_thread")
def test_keyframes_saved_by_the_viewer_render_to_the_viewers_frames(tiny_store: Path, tmp_path: Path) -> None:
    from blocknerf.cli.settings import stored_settings
    from blocknerf.store import BlockStore

    store = BlockStore.open(tiny_store)
    cfg = stored_settings(store.config).stream
    shown: dict[int, np.ndarray] = {}
    renderer = LiveRenderer(
        Compositor(BlockStreamer.open(store, cfg)), lambda f: shown.__setitem__(f.seq, f.pixels) if f.full else None,
        full_width=32, cfg=ViewerConfig(rest_ms=0.0),
    )
    keyframes = []
    with renderer:
        for f in store.capture.test_frames[:2]:
            # As a browser tab reports its camera: an OpenCV rotation and a position.
            wxyz, position = viser_pose(f.c2w)
            camera = LiveCamera(c2w_from_viser(wxyz, position), 55.0, 4 / 3)
            seq = renderer.submit("tab", camera)
            assert renderer.wait_idle(120), renderer.errors
            keyframes.append((seq, camera))
    path = write_keyframes([c for _, c in keyframes], tmp_path / "camera_path.json", full_width=32, fps=4.0, transition_s=0.5)
    out = tmp_path / "frames"
    assert main(["render", str(tiny_store), "--path", str(path), "--frames-dir", str(out), "--quiet"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3  # 2 keyframes 0.5 s apart at 4 frames/s: frames 0, 1, 2; keyframes at 0 and 2
    for k, (seq, _) in enumerate(keyframes):
        np.testing.assert_array_equal(load_image(pngs[2 * k]), shown[seq], err_msg=f"keyframe {k}")


def test_view_errors_are_one_line(tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["view", str(tmp_path / "missing.zarr")]) == 2
    assert "store not found" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["view", str(tiny_store), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and len(err.strip().splitlines()) == 1
    assert main(["view", str(tiny_store), "--memory-budget", "lots"]) == 2
    assert "--memory-budget" in capsys.readouterr().err
