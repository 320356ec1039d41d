"""Charts as inline SVG, drawn on the server: no script, no chart library, works offline.

Pure functions from numbers to markup. Each chart is ``role="img"`` with a ``<title>``
and a ``<desc>`` that say what it shows, every bar carries its number as visible text
(and a ``<title>`` tooltip with the full label), and bars of a different kind (expired,
never expires) differ by their label and a hatch, not by colour alone. The page shows
the same numbers in a table too.

Sizes: the drawing is 360 units wide and scales to its box (``width="100%"``, the
``chart`` class caps it), so its text is ~12 px on a 390 px phone and no larger than
~15 px on a desktop. Styling goes through presentation attributes, because the UI's
Content-Security-Policy refuses ``style`` attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["Bar", "bar_chart", "column_chart", "format_count"]

WIDTH = 360
_ROW = 22
_LABEL_W = 118
_VALUE_W = 74
_FONT = 12
_COLOURS = {"normal": "#2f4ab3", "warn": "#a3161b", "muted": "#6b7486"}


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its length, the text written next to it (default: the value)
    and its kind (``normal``, ``warn`` -- hatched red -- or ``muted`` -- grey)."""

    label: str
    value: float
    text: str | None = None
    kind: str = "normal"


def format_count(value: float) -> str:
    """``950``, ``12.3k``, ``4.5M``: short enough to sit next to a bar."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + unit
    return f"{value:g}"


def _shorten(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _defs(ident: str) -> str:
    # A diagonal hatch for "warn" bars: they differ by pattern and label, not colour alone.
    return (
        f'<defs><pattern id="{ident}-hatch" width="6" height="6" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{_COLOURS["warn"]}"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#ffffff" stroke-width="2"/>'
        "</pattern></defs>"
    )


def _open(ident: str, title: str, desc: str, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'aria-labelledby="{ident}-title {ident}-desc" font-family="system-ui, sans-serif" '
        f'font-size="{_FONT}"><title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(desc)}</desc>{_defs(ident)}'
    )


def _fill(ident: str, kind: str) -> str:
    if kind == "warn":
        return f"url(#{ident}-hatch)"
    return _COLOURS.get(kind, _COLOURS["normal"])


def _check(ident: str) -> None:
    # The id lands in attributes and url(#...): keep it to a safe alphabet.
    if not ident or not all(c.isascii() and (c.isalnum() or c in "-_") for c in ident):
        raise ValueError(f"a chart id is letters, digits, - and _, not {ident!r}")


def bar_chart(ident: str, title: str, desc: str, bars: Sequence[Bar]) -> Markup:
    """Horizontal bars, one row each: the label left, the bar, its number right.

    Reads at any width (nothing is rotated or crowded), so it serves for sizes per dag
    or asset and for the expiry histogram alike. An empty ``bars`` says "nothing yet".
    """
    _check(ident)
    rows = list(bars)
    height = max(1, len(rows)) * _ROW + 8
    top = max((bar.value for bar in rows), default=0) or 1
    room = WIDTH - _LABEL_W - _VALUE_W
    parts = [_open(ident, title, desc, height)]
    if not rows:
        parts.append(f'<text x="4" y="{_ROW - 6}" fill="#4f5868">No keys.</text>')
    for i, bar in enumerate(rows):
        y = 4 + i * _ROW
        length = 0.0 if bar.value <= 0 else max(2.0, room * bar.value / top)
        text = bar.text if bar.text is not None else format_count(bar.value)
        label = escape(_shorten(bar.label, 16))  # ~7 units a character at 12 px
        parts.append(
            f"<g><title>{escape(bar.label)}: {escape(text)}</title>"
            f'<text x="{_LABEL_W - 6}" y="{y + 15}" text-anchor="end" fill="#1d2330">'
            f"{label}</text>"
            f'<rect x="{_LABEL_W}" y="{y + 3}" width="{length:.1f}" height="{_ROW - 6}" '
            f'fill="{_fill(ident, bar.kind)}"/>'
            f'<text x="{_LABEL_W + length + 4:.1f}" y="{y + 15}" fill="#1d2330">'
            f"{escape(text)}</text></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()


def column_chart(
    ident: str, title: str, desc: str, bars: Sequence[Bar], *, every: int = 0
) -> Markup:
    """Vertical columns over time (writes per day): a 0 and a maximum gridline with
    their numbers, the label of every ``every``-th column below it, counted from the
    last (default: about four labels whatever the count, so they never overlap at
    360 units), and each column's number in its tooltip; the page's table has each one
    as text."""
    _check(ident)
    cols = list(bars)
    left, bottom, top_pad, height = 44, 34, 14, 170
    plot_h = height - bottom - top_pad
    width = WIDTH - left - 6
    peak = max((bar.value for bar in cols), default=0)
    scale = peak or 1
    step = width / max(1, len(cols))
    every = every or max(1, -(-len(cols) // 4))  # about four labels: "19 Nov" is wide
    base = top_pad + plot_h
    parts = [_open(ident, title, desc, height)]
    parts.append(
        f'<line x1="{left}" y1="{base}" x2="{WIDTH - 6}" y2="{base}" stroke="#8a93a3"/>'
        f'<text x="{left - 4}" y="{base + 4}" text-anchor="end" fill="#4f5868">0</text>'
    )
    if peak:
        parts.append(
            f'<line x1="{left}" y1="{top_pad}" x2="{WIDTH - 6}" y2="{top_pad}" '
            'stroke="#d5dae3" stroke-dasharray="3 3"/>'
            f'<text x="{left - 4}" y="{top_pad + 4}" text-anchor="end" fill="#4f5868">'
            f"{escape(format_count(peak))}</text>"
        )
    for i, bar in enumerate(cols):
        h = 0.0 if bar.value <= 0 else max(1.5, plot_h * bar.value / scale)
        x = left + i * step
        text = bar.text if bar.text is not None else format_count(bar.value)
        parts.append(
            f"<g><title>{escape(bar.label)}: {escape(text)}</title>"
            f'<rect x="{x + step * 0.12:.1f}" y="{base - h:.1f}" width="{step * 0.76:.1f}" '
            f'height="{h:.1f}" fill="{_fill(ident, bar.kind)}"/></g>'
        )
        if (len(cols) - 1 - i) % every == 0:  # counted from the end: the last is labelled
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{base + 16}" text-anchor="middle" '
                f'fill="#1d2330">{escape(_shorten(bar.label, 8))}</text>'
            )
    if not cols or not peak:
        parts.append(f'<text x="{left + 8}" y="{base - 8}" fill="#4f5868">No writes.</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()
