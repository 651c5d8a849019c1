"""The demo's one-page HTML report: block map, quality, held-out renders, flythrough, the update.

The page is static and self-contained apart from the images and video beside it in the demo's
output directory (linked relatively, so the directory can be moved or served as it is).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_CSS = """
:root { --ink:#1d2430; --muted:#5b6576; --line:#e3e6eb; --card:#ffffff; --bg:#f4f5f7; --accent:#1f5fa8; --good:#1b7f4b; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color:var(--ink); background:var(--bg); }
header { background:#16263d; color:#fff; padding:28px 40px 24px; }
header h1 { margin:0 0 6px; font-size:26px; font-weight:650; letter-spacing:.2px; }
header p { margin:0; color:#c6d2e3; }
main { max-width:1180px; margin:0 auto; padding:24px 40px 60px; }
.kpis { display:grid; grid-template-columns:repeat(4, 1fr); gap:14px; margin:-46px 0 22px; }
.kpi { background:var(--card); border-radius:10px; padding:14px 18px; box-shadow:0 1px 3px rgba(0,0,0,.08); }
.kpi b { display:block; font-size:26px; font-weight:650; }
.kpi span { color:var(--muted); font-size:13px; }
section { background:var(--card); border-radius:10px; padding:20px 24px; margin:0 0 20px; box-shadow:0 1px 3px rgba(0,0,0,.08); }
h2 { font-size:18px; margin:0 0 4px; }
section > p.sub { margin:0 0 14px; color:var(--muted); }
.two { display:grid; grid-template-columns: 1.1fr 1fr; gap:22px; align-items:start; }
img { max-width:100%; border-radius:6px; display:block; image-rendering:auto; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); }
th { color:var(--muted); font-weight:600; font-size:13px; }
td.n, th.n { text-align:right; white-space:nowrap; }
tr.total td { font-weight:650; border-top:2px solid var(--ink); }
.grid { display:grid; grid-template-columns:repeat(2, 1fr); gap:14px; }
figure { margin:0; }
figure img, .strip img { width:100%; image-rendering:pixelated; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
.strip { display:grid; grid-template-columns:repeat(6, 1fr); gap:6px; }
.ba { display:grid; grid-template-columns:1fr 1fr; gap:14px; }
code { font:13px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; background:#eef1f5; padding:1px 5px; border-radius:4px; }
.tag { display:inline-block; font-size:12px; padding:1px 8px; border-radius:10px; background:#e7eef8; color:var(--accent); margin-right:4px; }
.tag.new { background:#e3f4ea; color:var(--good); }
footer { color:var(--muted); font-size:13px; text-align:center; margin-top:10px; }
"""


def write_report(out: str | Path, facts: Mapping[str, Any]) -> Path:
    """Write ``report.html`` into the demo directory ``out`` from the demo's ``facts``; its path."""
    out = Path(out)
    page = _page(out, facts)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _page(out: Path, f: Mapping[str, Any]) -> str:
    ev = f.get("eval", {})
    comp = ev.get("composite") or {}
    blocks = f.get("blocks", [])
    update = f.get("update", {})
    before, after = update.get("before") or {}, update.get("after") or {}
    changed = sorted(b for b, v in (after.get("published") or {}).items() if (before.get("published") or {}).get(b) != v)
    frames = sum(b["frames"] for b in blocks)
    kpis = [
        (_db(comp.get("psnr")), "composite PSNR on held-out views"),
        (f"{comp.get('ssim', float('nan')):.3f}" if comp.get("ssim") is not None else "–", "composite SSIM"),
        (f"{len(blocks)}", f"blocks ({frames:,} frame assignments)"),
        (format_duration(f.get("seconds", 0.0)), "whole demo, this machine"),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>blocknerf demo report</title><style>", _CSS, "</style></head><body>",
        "<header><h1>blocknerf demo: a synthetic city as overlapping NeRF blocks</h1>",
        f"<p>preset <b>{_e(f.get('preset', ''))}</b> · generated {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} · "
        "every number below was measured by this run</p></header><main>",
        "<div class='kpis'>" + "".join(f"<div class='kpi'><b>{_e(v)}</b><span>{_e(t)}</span></div>" for v, t in kpis) + "</div>",
        _blocks_section(blocks, ev),
        _heldout_section(out, comp),
        _flythrough_section(out, f.get("flythrough")),
        _update_section(out, before, after, changed),
        _stages_section(f.get("stages", [])),
        "<footer>Files: " + " · ".join(f"<code>{_e(n)}</code>" for n in f.get("files", [])) + "</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _blocks_section(blocks: list[Mapping[str, Any]], ev: Mapping[str, Any]) -> str:
    per_block = ev.get("blocks", {})
    comp = ev.get("composite") or {}
    rows = []
    for b in blocks:
        r = per_block.get(b["id"], {})
        rows.append(
            f"<tr><td><code>{_e(b['id'])}</code></td><td class='n'>{b['radius_m']:.0f} m</td><td class='n'>{b['frames']:,}</td>"
            f"<td class='n'>v{b.get('published') or '–'}</td><td class='n'>{r.get('views', 0)}</td>"
            f"<td class='n'>{_db(r.get('psnr'))}</td><td class='n'>{_num(r.get('ssim'), 3)}</td></tr>"
        )
    if comp.get("views"):
        rows.append(
            f"<tr class='total'><td>streamed composite</td><td></td><td></td><td></td><td class='n'>{comp['views']}</td>"
            f"<td class='n'>{_db(comp.get('psnr'))}</td><td class='n'>{_num(comp.get('ssim'), 3)}</td></tr>"
        )
    extra = ""
    if comp.get("best_block_psnr") is not None:
        extra = (
            f"<p class='sub'>On the same views the best single block reaches {_db(comp['best_block_psnr'])} "
            f"(<code>{_e(comp.get('best_block', ''))}</code>), and the best block chosen per view {_db(comp.get('oracle_block_psnr'))}.</p>"
        )
    return (
        "<section><h2>Blocks</h2><p class='sub'>The capture split into overlapping blocks, each a hash-grid NeRF "
        "trained on its own; held-out views are never trained on.</p><div class='two'>"
        "<figure><img src='map.png' alt='block map'><figcaption>Block map: camera positions and block regions "
        "(<code>map.png</code>, footprints in <code>blocks.geojson</code>).</figcaption></figure>"
        "<div><table><tr><th>block</th><th class='n'>radius</th><th class='n'>frames</th><th class='n'>version</th>"
        "<th class='n'>views</th><th class='n'>PSNR</th><th class='n'>SSIM</th></tr>"
        + "".join(rows) + "</table>" + extra + "</div></div></section>"
    )


def _heldout_section(out: Path, comp: Mapping[str, Any]) -> str:
    views = [v for v in comp.get("per_view", []) if v.get("image")]
    if not views:
        return ""
    figs = "".join(
        f"<figure><img src='heldout/{_e(v['image'])}' alt='held-out view'><figcaption>{_e(v['frame'])}: "
        f"{_db(v['psnr'])}, SSIM {_num(v.get('ssim'), 3)}, blended from {', '.join(_e(b['id']) for b in v.get('blocks', [])) or '–'}"
        "</figcaption></figure>"
        for v in views
    )
    return (
        "<section><h2>Held-out views</h2><p class='sub'>Left: the streamed composite (blocks chosen by distance and "
        "predicted visibility, blended by inverse distance). Right: the captured image.</p>"
        f"<div class='grid'>{figs}</div></section>"
    )


def _flythrough_section(out: Path, stats: Mapping[str, Any] | None) -> str:
    strip = sorted((out / "flythrough_frames").glob("*.png")) if (out / "flythrough_frames").is_dir() else []
    picks = [strip[int(i * (len(strip) - 1) / 5)] for i in range(6)] if len(strip) >= 6 else strip
    poster = f" poster='flythrough_frames/{_e(picks[0].name)}'" if picks else ""
    thumbs = "".join(f"<img src='flythrough_frames/{_e(p.name)}' alt='flythrough frame'>" for p in picks)
    summary = ""
    if stats:
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
        summary = " · ".join(bits)
    return (
        "<section><h2>Flythrough</h2><p class='sub'>An automatic path along the drive, rendered while blocks stream "
        f"in and out of memory by camera proximity. {_e(summary)}</p>"
        f"<video src='flythrough.mp4'{poster} controls loop muted playsinline style='width:100%;max-width:720px;border-radius:6px'></video>"
        f"<div class='strip' style='margin-top:10px'>{thumbs}</div></section>"
    )


def _update_section(out: Path, before: Mapping[str, Any], after: Mapping[str, Any], changed: list[str]) -> str:
    if not after:
        return ""
    pairs = []
    for b, a in zip(before.get("per_view", []), after.get("per_view", [])):
        if b.get("image") and a.get("image"):
            pairs.append(
                f"<figure><img src='update/before/{_e(b['image'])}' alt='before'><figcaption>before: {_db(b['psnr'])}</figcaption></figure>"
                f"<figure><img src='update/after/{_e(a['image'])}' alt='after'><figcaption>after: {_db(a['psnr'])}</figcaption></figure>"
            )
    published = after.get("published") or {}
    tags = " ".join(
        f"<span class='tag{' new' if bid in changed else ''}'>{_e(bid)} v{v}</span>" for bid, v in sorted(published.items())
    )
    return (
        "<section><h2>Incremental update</h2><p class='sub'>The city changed (a new building, road works) and the "
        "changed area was captured again. <code>blocknerf update</code> retrained only the blocks that see it, warm "
        f"started from their published versions, and swapped them in atomically. Composite on the new capture's "
        f"held-out views: {_db(before.get('psnr'))} before, {_db(after.get('psnr'))} after. "
        "Each pair: render (left) beside the new ground truth (right).</p>"
        f"<p>{tags} <span style='color:var(--muted);font-size:13px'>(green: new version from this update)</span></p>"
        f"<div class='ba'>{''.join(pairs)}</div></section>"
    )


def _stages_section(stages: Iterable[Mapping[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{_e(s['title'])}</td><td>{'<code>' + _e(s['command']) + '</code>' if s.get('command') else ''}</td>"
        f"<td class='n'>{format_duration(s['seconds'])}</td></tr>"
        for s in stages
    )
    return (
        "<section><h2>What ran, and how long it took</h2><p class='sub'>Every stage is a <code>blocknerf</code> command "
        "you can run yourself.</p><table><tr><th>stage</th><th>command</th><th class='n'>time</th></tr>"
        f"{rows}</table></section>"
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


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
