"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Rows as aligned columns; each column is (header, row -> value); None shows as '-'."""
    cells = [[("-" if (v := get(r)) is None else str(v)) for _, get in columns] for r in rows]
    headers = [h for h, _ in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(c) for c in cells])


BLOCK_COLUMNS: list[Column] = [
    ("block", lambda r: r["id"]),
    ("centre x,y,z", lambda r: ", ".join(f"{v:.1f}" for v in r["center"])),
    ("lat, lon", lambda r: None if r.get("lat") is None else f"{r['lat']:.6f}, {r['lon']:.6f}"),
    ("radius", lambda r: f"{r['radius_m']:.1f}"),
    ("frames", lambda r: r["frames"]),
    ("overlap", lambda r: None if r["overlap"] is None else f"{100 * r['overlap']:.0f}%"),
]
