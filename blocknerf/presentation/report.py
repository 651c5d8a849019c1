"""The demo's one-page HTML report: block map, quality, held-out renders, flythrough, baked
against neural rendering, the update, an object composed into the city.

The page is static and self-contained apart from the images and video beside it in the demo's
output directory (linked relatively, so the directory can be moved or served as it is). Its layout
is the jinja2 template ``templates/report.html.j2``, rendered with autoescaping, so no value from
the facts (a command line, a block id, a path) can inject markup; this module only picks and
formats the figures the template shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
"""The report's jinja2 templates (shipped as package data)."""


def write_report(out: str | Path, facts: Mapping[str, Any]) -> Path:
    """Write ``report.html`` into the demo directory ``out`` from the demo's ``facts``; its path."""
    out = Path(out)
    page = render_report(out, facts)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def render_report(out: Path, f: Mapping[str, Any]) -> str:
    """The report page (HTML text) for the demo directory ``out`` and the demo's facts ``f``."""
    ev = f.get("eval", {})
    comp = ev.get("composite") or {}
    blocks = f.get("blocks", [])
    update = f.get("update", {})
    before, after = update.get("before") or {}, update.get("after") or {}
    before_published, published = before.get("published") or {}, after.get("published") or {}
    frames = sum(b["frames"] for b in blocks)
    kpis = [
        (_db(comp.get("psnr")), "composite PSNR on held-out views"),
        (_num(comp.get("ssim"), 3), "composite SSIM"),
        (f"{len(blocks)}", f"blocks ({frames:,} frame assignments)"),
        (format_duration(f.get("seconds", 0.0)), "whole demo, this machine"),
    ]
    return _environment().get_template("report.html.j2").render(
        preset=f.get("preset", ""),
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        kpis=kpis,
        blocks=blocks,
        per_block=ev.get("blocks", {}),
        composite=comp,
        heldout=[v for v in comp.get("per_view", []) if v.get("image")],
        flythrough_summary=_flythrough_summary(f.get("flythrough")),
        strip=_strip(out),
        before=before,
        after=after,
        published=sorted(published.items()),
        changed={b for b, v in published.items() if before_published.get(b) != v},
        update_pairs=[
            (b, a) for b, a in zip(before.get("per_view", []), after.get("per_view", [])) if b.get("image") and a.get("image")
        ],
        stages=f.get("stages", []),
        files=f.get("files", []),
        renderers=f.get("renderers") or {},
        composition=f.get("composition") or {},
        composition_box=_box_style(f.get("composition") or {}),
    )


def _box_style(composition: Mapping[str, Any]) -> str:
    """CSS placing the box the object projects to over the shown frame (percentages of the image),
    or "" when no frame shows it."""
    frame = next((fr for fr in composition.get("frames", []) if fr.get("image") == composition.get("shown")), None)
    if frame is None or not frame.get("box"):
        return ""
    (c0, r0, c1, r1), (w, h) = frame["box"], composition["size"]
    return f"left:{100 * c0 / w:.2f}%;top:{100 * r0 / h:.2f}%;width:{100 * (c1 - c0) / w:.2f}%;height:{100 * (r1 - r0) / h:.2f}%"


def _environment() -> jinja2.Environment:
    # Autoescape on for every template (the .j2 suffix would turn jinja's suffix-based default
    # off); StrictUndefined so that a misspelt name in the template is an error, not a blank.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(db=_db, num=_num, thousands=lambda n: f"{n:,}", duration=format_duration)
    return env


def _strip(out: Path) -> list[str]:
    """Names of six evenly spaced flythrough frames, first and last included (all when fewer)."""
    frames = out / "flythrough_frames"
    names = sorted(p.name for p in frames.glob("*.png")) if frames.is_dir() else []
    return [names[int(i * (len(names) - 1) / 5)] for i in range(6)] if len(names) >= 6 else names


def _flythrough_summary(stats: Mapping[str, Any] | None) -> str:
    """The flythrough's figures as one line: frames, speed, blocks per frame, cache, memory, pops."""
    if not stats:
        return ""
    s = stats.get("summary", stats)
    bits = []
    for key, label in (("frames", "frames"), ("frames_per_s", "frames/s"), ("blocks_per_frame_mean", "blocks per frame"),
                       ("hit_rate", "cache hit rate"), ("peak_cache_bytes", "peak block memory"), ("budget_bytes", "budget")):
        if key in s:
            value = s[key]
            bits.append(f"{label} {_bytes(value) if 'bytes' in key else _num(value, 0 if key == 'frames' else 2)}")
    pop = s.get("pop") or {}
    if pop.get("switches"):
        bits.append(
            f"frame-to-frame change at the {pop['switches']} block switches at most {_num(pop.get('max_change_at_switch'), 3)}, "
            f"elsewhere up to {_num(pop.get('max_change_elsewhere'), 3)}"
        )
    return " · ".join(bits)


def _db(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f} dB"


def _num(value: Any, digits: int) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _bytes(value: Any) -> str:
    v = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if v < 1024 or unit == "GiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} GiB"


def format_duration(seconds: float) -> str:
    """``12.3 s`` or ``4 min 05 s``."""
    seconds = float(seconds)
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def screenshot(report: str | Path, png: str | Path, *, width: int = 1280, max_height: int = 12000, timeout_s: float = 90.0) -> Path | None:
    """Save a full-page PNG of ``report`` with headless Chromium; None when no Chromium is installed.

    Chromium's command line cannot size the window to the page, so it shoots a window taller than
    any report and the empty background below the page is cropped off."""
    import shutil
    import subprocess
    import tempfile

    import numpy as np
    from PIL import Image

    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if browser is None:
        return None
    report, png = Path(report).resolve(), Path(png).resolve()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={width},{max_height}", f"--screenshot={png}", "--virtual-time-budget=5000", report.as_uri()],
            capture_output=True, timeout=timeout_s, check=False,
        )
    if not png.exists():
        return None
    image = np.asarray(Image.open(png).convert("RGB"))
    rows = np.flatnonzero((image != image[-1:, :, :]).any(axis=(1, 2)))
    if rows.size:
        Image.fromarray(image[: min(len(image), int(rows[-1]) + 40)]).save(png)
    return png
