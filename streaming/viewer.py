"""The live viewer: a city streamed into the browser through viser (``blocknerf view``).

The page is viser's web client. Each browser tab is a ``ViewerSession``: its camera (viser's orbit
and fly controls: mouse, W/A/S/D/Q/E and the arrow keys) goes to the ``LiveRenderer``, whose
frames come back as the scene's background image. Its side panel shows live statistics (frames
per second, the blended blocks with their weights, cache bytes against the budget, hits, misses
and load times, the camera's latitude and longitude when the store is geo-registered), a top-down
block map with the camera on it, toggles for the capture's camera frustums and for block spheres
in the scene, and keyframe recording saved as a nerfstudio ``camera_path.json``.

The viewer only reads the store: it renders through a ``BlockStreamer`` whose manifest the live
renderer re-reads, so blocks published by a concurrent ``update`` appear without a restart.

Cameras: viser reports a camera as the rotation (w, x, y, z) and position of an OpenCV camera
(x right, y down, looking along +z) in the world frame; blocknerf poses are OpenGL
(x right, y up, looking along -z), i.e. the same rotation with the y and z axes negated.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from streaming.compositor import Compositor
from streaming.config import StreamConfig
from streaming.live_renderer import LiveCamera, LiveFrame, LiveRenderer
from streaming.overview_map import BlockState, MapFrame, draw_overview
from streaming.prefetch import Prefetcher
from streaming.streamer import BlockStreamer

_GL_FROM_CV = np.diag([1.0, -1.0, -1.0])


def c2w_from_viser(wxyz: np.ndarray, position: np.ndarray) -> np.ndarray:
    """(4, 4) OpenGL camera-to-world from viser's OpenCV camera rotation (w, x, y, z) and position."""
    from viser.transforms import SO3

    c2w = np.eye(4)
    c2w[:3, :3] = SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix() @ _GL_FROM_CV
    c2w[:3, 3] = np.asarray(position, dtype=np.float64)
    return c2w


def viser_pose(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz (4,), position (3,)) of viser's OpenCV camera for an OpenGL camera-to-world (4, 4)."""
    from viser.transforms import SO3

    c2w = np.asarray(c2w, dtype=np.float64)
    return SO3.from_matrix(c2w[:3, :3] @ _GL_FROM_CV).wxyz, c2w[:3, 3].copy()


def write_keyframes(cameras: list[LiveCamera], path: str | Path, *, full_width: int, fps: float, transition_s: float) -> Path:
    """Write keyframes as a nerfstudio camera_path.json (``keyframe_document``) at the full
    resolution of the last keyframe's aspect; the path written. ``blocknerf render --path`` renders
    it unchanged, and its frame at keyframe k is the viewer's full-resolution view at keyframe k."""
    import json

    from streaming.camera_path import keyframe_document

    if not cameras:
        raise ValueError("no keyframes to save (add one first)")
    doc = keyframe_document(
        np.stack([k.c2w for k in cameras]), np.array([k.fov_y_deg for k in cameras]), cameras[-1].size(full_width),
        fps=fps, transition_s=transition_s,
    )
    out = Path(path).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    return out


class Viewer:
    """Serves a block store in the browser (see the module docstring); ``start`` returns the URL."""

    def __init__(self, store: Any, cfg: StreamConfig, *, host: str = "127.0.0.1", port: int = 7007, path_out: str | Path = "camera_path.json") -> None:
        cfg.validate()
        self.store = store
        self.cfg = cfg
        self.host = host
        self.port = port
        self.path_out = Path(path_out)
        self.streamer = BlockStreamer.open(store, cfg)
        self.full_width = cfg.width
        self.default_aspect = cfg.width / cfg.height
        prefetcher = Prefetcher(self.streamer) if cfg.prefetch and cfg.prefetch_lookahead > 0 else None
        self.renderer = LiveRenderer(
            Compositor(self.streamer), self._deliver, full_width=cfg.width, cfg=cfg.viewer, prefetcher=prefetcher
        )
        ids, centers, radii = self.streamer.source.regions()
        self.centers = {b: np.asarray(centers[i], dtype=np.float64) for i, b in enumerate(ids)}
        self.radii = {b: float(radii[i]) for i, b in enumerate(ids)}
        self.map_frame = MapFrame.around(centers, radii, cfg.viewer.map_px)
        capture = store.capture
        self.frames = capture.frames
        self.capture_xy = capture.positions()[:, :2] if len(capture.frames) else None
        self.geo = capture.geo
        """The capture's ENU frame (``GeoFrame``), None without a geo origin."""
        self.server: Any = None
        self._sessions: dict[int, ViewerSession] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> str:
        """Start the web server and the render thread; the page's URL."""
        import viser

        with contextlib.redirect_stdout(io.StringIO()):  # viser prints a banner of its own
            self.server = viser.ViserServer(host=self.host, port=self.port, label="blocknerf", verbose=False)
        if self.server.get_port() != self.port:
            # viser moves on to the next free port; the user asked for this one.
            self.server.stop()
            raise OSError(f"port {self.port} on {self.host} is in use")
        self.server.gui.configure_theme(control_width="large", show_share_button=False)
        self._set_initial_camera()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        self.renderer.start()
        return self.url

    def stop(self) -> None:
        """Stop rendering and serving."""
        self.renderer.stop()
        if self.server is not None:
            with contextlib.redirect_stdout(io.StringIO()):
                self.server.stop()
            self.server = None

    def sessions(self) -> list[ViewerSession]:
        with self._lock:
            return list(self._sessions.values())

    # -- clients --------------------------------------------------------------------------------
    def _set_initial_camera(self) -> None:
        """Start at the first training camera, looking where it looked, z up."""
        frames = [f for f in self.frames if f.is_train] or list(self.frames)
        if not frames:
            return
        f = frames[0]
        c2w = np.asarray(f.c2w, dtype=np.float64)
        reach = 0.25 * float(np.median(list(self.radii.values()))) if self.radii else 1.0
        cam = self.server.initial_camera
        cam.position = c2w[:3, 3]
        cam.look_at = c2w[:3, 3] - reach * c2w[:3, 2]
        cam.up = (0.0, 0.0, 1.0)
        cam.fov = 2.0 * math.atan(0.5 * f.intrinsics.height / f.intrinsics.fy)

    def _connect(self, client: Any) -> None:
        session = ViewerSession(self, client)
        with self._lock:
            self._sessions[client.client_id] = session

        async def on_camera(camera: Any) -> None:
            # Async: viser runs it on its event loop, in the order the messages came.
            self.renderer.submit(client.client_id, session.live_camera())

        client.camera.on_update(on_camera)
        self.renderer.submit(client.client_id, session.live_camera())

    def _disconnect(self, client: Any) -> None:
        self.renderer.forget(client.client_id)
        with self._lock:
            self._sessions.pop(client.client_id, None)

    def _deliver(self, frame: LiveFrame) -> None:
        with self._lock:
            session = self._sessions.get(frame.client)  # type: ignore[call-overload]
        if session is not None:
            session.show(frame)

    # -- what the panels show -------------------------------------------------------------------
    def block_states(self, used: dict[str, float]) -> dict[str, BlockState]:
        """State of every published block: blended (in ``used``), loaded (cached) or on disk."""
        snap = self.streamer.snapshot
        loaded = {b for b, v, _level in self.streamer.cache.keys() if snap.versions.get(b) == v}
        return {
            b: BlockState.BLENDED if b in used else BlockState.LOADED if b in loaded else BlockState.ON_DISK
            for b in snap.versions
        }

    def lat_lon(self, position: np.ndarray) -> tuple[float, float] | None:
        """(latitude, longitude) in degrees of a world position, when the store has a geo origin."""
        if self.geo is None:
            return None
        lla = self.geo.enu_to_lla(np.asarray(position, dtype=np.float64).reshape(1, 3))[0]
        return float(lla[0]), float(lla[1])


class ViewerSession:
    """One browser tab: its panel, scene extras, keyframes and frame statistics."""

    def __init__(self, viewer: Viewer, client: Any) -> None:
        self.viewer = viewer
        self.client = client
        self.keyframes: list[LiveCamera] = []
        self.shown = 0
        self._times: deque[float] = deque(maxlen=30)
        self._map_at = 0.0
        self._spheres: dict[str, Any] = {}
        self._sphere_states: dict[str, BlockState] = {}
        self._frustums: Any = None
        self._used: dict[str, float] = {}
        gui = client.gui
        with gui.add_folder("Live view"):
            self.stats = gui.add_markdown("waiting for the first frame ...")
            self.map = gui.add_image(np.full((viewer.cfg.viewer.map_px,) * 2 + (3,), 255, np.uint8), label="block map", format="png")
            self.map_legend = gui.add_markdown(
                "map: grey on disk, blue loaded, orange blended (stronger: larger weight); red: the camera"
            )
            self.frustum_toggle = gui.add_checkbox("capture frustums", initial_value=False)
            self.sphere_toggle = gui.add_checkbox("block spheres", initial_value=False)
        with gui.add_folder("Keyframes"):
            self.path_field = gui.add_text("camera path file", initial_value=str(viewer.path_out))
            self.transition = gui.add_number("seconds between", initial_value=2.0, min=0.1, max=60.0, step=0.1)
            self.add_button = gui.add_button("add keyframe")
            self.clear_button = gui.add_button("clear keyframes")
            self.save_button = gui.add_button("save camera path")
            self.keyframe_info = gui.add_markdown("0 keyframes")
        self.frustum_toggle.on_update(lambda _: self._show_frustums(self.frustum_toggle.value))
        self.sphere_toggle.on_update(lambda _: self._show_spheres(self.sphere_toggle.value))
        self.add_button.on_click(lambda _: self.add_keyframe())
        self.clear_button.on_click(lambda _: self.clear_keyframes())
        self.save_button.on_click(lambda _: self._save_clicked())

    # -- camera ---------------------------------------------------------------------------------
    def live_camera(self) -> LiveCamera:
        """The tab's camera now."""
        cam = self.client.camera
        aspect = cam.aspect if cam.image_height > 0 and cam.image_width > 0 else self.viewer.default_aspect
        return LiveCamera(c2w_from_viser(cam.wxyz, cam.position), math.degrees(cam.fov), aspect)

    # -- frames ---------------------------------------------------------------------------------
    def show(self, frame: LiveFrame) -> None:
        """Put a rendered frame on the page and update the statistics (render thread)."""
        v = self.viewer
        self.client.scene.set_background_image(frame.pixels, format="jpeg", jpeg_quality=v.cfg.viewer.jpeg_quality)
        self.shown += 1
        self._times.append(time.monotonic())
        self._used = {u.block_id: u.weight for u in frame.composite.used}
        self.stats.content = self.describe(frame)
        if frame.full or time.monotonic() - self._map_at > 0.25:
            self._map_at = time.monotonic()
            states = v.block_states(self._used)
            self.map.image = draw_overview(
                v.map_frame, v.centers, v.radii, states, self._used, camera_c2w=frame.camera.c2w, capture_xy=v.capture_xy
            )
            if self.sphere_toggle.value:
                self._color_spheres(states)

    def frames_per_s(self) -> float:
        """Frames shown per second over the recent ones."""
        t = self._times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def describe(self, frame: LiveFrame) -> str:
        """The statistics panel as markdown."""
        from dask.utils import format_bytes

        v = self.viewer
        c = v.streamer.cache.counters()
        comp = frame.composite
        w, h = frame.size
        blended = " · ".join(
            f"`{u.block_id}` v{u.version} {u.weight:.2f}" + (f" L{u.level}/{u.levels - 1}" if u.levels > 1 and u.level is not None else "")
            for u in comp.used
        )
        loads = v.streamer.cache.load_times_ms()
        pos = frame.camera.position
        where = f"x {pos[0]:.1f} y {pos[1]:.1f} z {pos[2]:.1f}"
        ll = v.lat_lon(pos)
        if ll is not None:
            where += f" · lat {ll[0]:.6f} lon {ll[1]:.6f}"
        lines = [
            f"**frame {self.shown}** · {w}×{h} {'full' if frame.full else 'moving'} · "
            f"{self.frames_per_s():.1f} frames/s · {comp.frame_ms:.0f} ms",
            f"**blended** ({len(comp.used)}): {blended}",
            f"**cache** {format_bytes(c.used_bytes)} of {format_bytes(v.streamer.cache.max_bytes)} · "
            f"{c.hits} hits · {c.misses} misses · load {loads[-1] if loads else 0:.0f} ms last, "
            f"{(np.median(loads) if loads else 0):.0f} ms median"
            + (f" · placed objects {format_bytes(v.streamer.object_bytes)}" if v.streamer.object_bytes else ""),
            f"**camera** {where}",
            f"**store** manifest {comp.manifest_serial} · {len(v.streamer.snapshot.versions)} blocks published",
        ]
        if v.renderer.errors:
            lines.append(f"**error** {v.renderer.errors[-1]}")
        return "  \n".join(lines)

    # -- keyframes ------------------------------------------------------------------------------
    def add_keyframe(self) -> LiveCamera:
        """Record the tab's current camera as a keyframe."""
        camera = self.live_camera()
        self.keyframes.append(camera)
        self.keyframe_info.content = f"{len(self.keyframes)} keyframes"
        return camera

    def clear_keyframes(self) -> None:
        self.keyframes.clear()
        self.keyframe_info.content = "0 keyframes"

    def _save_clicked(self) -> None:
        try:
            v = self.viewer
            path = write_keyframes(
                self.keyframes, self.path_field.value, full_width=v.full_width, fps=v.cfg.auto_path.fps,
                transition_s=float(self.transition.value),
            )
        except (OSError, ValueError) as exc:
            self.keyframe_info.content = f"not saved: {exc}"
            return
        self.keyframe_info.content = f"{len(self.keyframes)} keyframes saved to `{path}`  \nrender: `blocknerf render STORE --path {path} --out fly.mp4`"
        self.client.send_file_download(path.name, path.read_bytes())

    # -- scene extras ---------------------------------------------------------------------------
    def _show_frustums(self, visible: bool) -> None:
        if self._frustums is None and visible:
            self._frustums = self._add_frustums()
        if self._frustums is not None:
            self._frustums.visible = visible

    def _add_frustums(self) -> Any:
        v = self.viewer
        scene = self.client.scene
        parent = scene.add_frame("/capture", show_axes=False)
        frames = list(v.frames)
        if len(frames) > v.cfg.viewer.max_frustums:
            frames = [frames[i] for i in np.linspace(0, len(frames) - 1, v.cfg.viewer.max_frustums).astype(int)]
        scale = 0.05 * float(np.median(list(v.radii.values()))) if v.radii else 0.3
        for i, f in enumerate(frames):
            k = f.intrinsics
            wxyz, position = viser_pose(f.c2w)
            scene.add_camera_frustum(
                f"/capture/f{i:05d}", fov=2.0 * math.atan(0.5 * k.height / k.fy), aspect=k.width / k.height, scale=scale,
                thickness=0.05 * scale, color=(60, 60, 60) if f.is_train else (20, 150, 60), wxyz=wxyz, position=position,
            )
        return parent

    def _show_spheres(self, visible: bool) -> None:
        v = self.viewer
        if not self._spheres and visible:
            for b in v.streamer.snapshot.versions:
                self._spheres[b] = self.client.scene.add_icosphere(
                    f"/blocks/{b}", radius=v.radii[b], color=(150, 150, 150), wireframe=True, subdivisions=2,
                    position=v.centers[b],
                )
            self._sphere_states = {}
        for handle in self._spheres.values():
            handle.visible = visible
        if visible:
            self._color_spheres(v.block_states(self._used))

    def _color_spheres(self, states: dict[str, BlockState]) -> None:
        from streaming.overview_map import STATE_COLORS

        for b, state in states.items():
            handle = self._spheres.get(b)
            if handle is not None and self._sphere_states.get(b) is not state:
                handle.color = STATE_COLORS[state]
                self._sphere_states[b] = state


__all__ = ["Viewer", "ViewerSession", "c2w_from_viser", "viser_pose", "write_keyframes"]
