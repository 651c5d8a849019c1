"""``blocknerf view S.zarr [--port 7007] [--host 127.0.0.1]``: explore a city live in the browser."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from blocknerf.cli.settings import add_config_argument

HELP = "explore a city live in the browser (a local web page; the store is only read)"
RENDERERS = ("baked", "neural")
"""As ``blocknerf.model.loading.RENDERERS`` (kept here so building the parser imports no torch)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="block store (path or fsspec URL)")
    add_config_argument(p)
    p.add_argument("--port", type=int, default=7007, help="port to serve on (default 7007)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--memory-budget", metavar="SIZE", help="most memory for loaded blocks, e.g. 512MB or 2GB")
    p.add_argument("--renderer", choices=RENDERERS, help="how blocks are rendered (default: stream.renderer)")
    p.add_argument("--width", type=int, metavar="PX", help="width of a full-resolution frame (default: stream.width)")
    p.add_argument("--path-out", metavar="JSON", default="camera_path.json", help="where 'save camera path' writes (default ./camera_path.json)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to render (default: stream.device)")


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from blocknerf.cli.settings import resolve
    from blocknerf.errors import ConfigError, StoreError
    from blocknerf.store import BlockStore
    from streaming.config import parse_bytes
    from streaming.viewer import Viewer

    if not 0 < args.port < 65536:
        raise ConfigError(None, f"--port must be in 1..65535, got {args.port}")
    flags: dict[str, Any] = {"stream.device": args.device}
    if args.width is not None:
        if args.width < 16:
            raise ConfigError(None, f"--width must be at least 16, got {args.width}")
        flags["stream.width"] = args.width
    if args.memory_budget is not None:
        try:
            flags["stream.memory_budget_mb"] = parse_bytes(args.memory_budget) / 1e6
        except ValueError as exc:
            raise ConfigError(None, f"--memory-budget: {exc}") from None
    flags["stream.renderer"] = args.renderer
    port_problem = busy(args.host, args.port)
    if port_problem:
        raise ConfigError(None, port_problem)

    store = BlockStore.open(args.store)
    if not store.manifest().blocks:
        raise StoreError(args.store, "no published blocks to view (train the store first)")
    settings = resolve(args, flags, stored=store.config, where_stored=f"{args.store} (stored config)")
    viewer = Viewer(store, settings.stream, host=args.host, port=args.port, path_out=args.path_out)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        url = viewer.start()
    except OSError as exc:
        raise ConfigError(None, f"cannot serve on {args.host}:{args.port}: {exc}") from None
    print(f"blocknerf view: serving {store.url} at {url}", flush=True)
    print("open it in a browser; on a remote machine forward the port first: "
          f"ssh -L {args.port}:localhost:{args.port} HOST (Ctrl-C stops)", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
    if viewer.renderer.errors:
        print(f"blocknerf view: warning: {len(viewer.renderer.errors)} frames failed; last: {viewer.renderer.errors[-1]}", file=sys.stderr)
    return 0


def busy(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served on (in use, or not an address of this machine), or None."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"--host {host}: unknown address ({exc.strerror})"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As the server's own socket does, so that a port in TIME_WAIT is not reported busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use (choose another with --port)"
            return f"cannot serve on {host}:{port} ({exc.strerror})"
    return None
