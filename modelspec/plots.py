"""Charts as files: metrics over versions (lines, aliases marked) and drifted columns
(histograms side by side). A figure is plain data; `save` writes it as SVG directly (no
dependency) or as PNG through matplotlib, when installed (the `plot` extra)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from .errors import UsageError

WIDTH, PANEL_HEIGHT, MARGIN = 760, 230, 56
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
MAX_LABELS = 16  # x labels shown under a line chart; the others are ticks only


@dataclass(frozen=True)
class Lines:
    """One metric over the versions; `marks` labels some points (index → `production`)."""

    title: str
    labels: Sequence[str]
    values: Sequence[float | None]
    marks: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Bars:
    """Histograms over the same bins: (name, counts) per series, `bins` naming each bin."""

    title: str
    bins: Sequence[str]
    series: Sequence[tuple[str, Sequence[float]]]


@dataclass(frozen=True)
class Figure:
    title: str
    panels: Sequence[Lines | Bars]


def line_charts(title: str, labels: Sequence[str], charts: Sequence[tuple[str, Sequence[float | None]]],
                marks: Mapping[int, str]) -> Figure:  # fmt: skip
    return Figure(title, [Lines(name, labels, values, marks) for name, values in charts])


def save(figure: Figure, target: Path) -> Path:
    """Write `figure` to `target` (.svg or .png) whole or not at all."""
    suffix = target.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise UsageError(f"{target}: a plot is written as .svg or .png", hint="name a file ending in .svg or .png")
    if not figure.panels:
        raise UsageError("there is nothing to plot")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name beside the target (the file gets the umask's mode, as any file the user writes).
    temp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        if suffix == ".svg":
            Path(temp).write_text(svg(figure), encoding="utf-8")
        else:
            _png(figure, Path(temp))
        os.replace(temp, target)
    finally:
        Path(temp).unlink(missing_ok=True)
    return target


# -- SVG ---------------------------------------------------------------------------------------


def svg(figure: Figure) -> str:
    height = 40 + PANEL_HEIGHT * len(figure.panels)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(figure.title)}</text>',
    ]
    for i, panel in enumerate(figure.panels):
        top = 40 + i * PANEL_HEIGHT
        parts += _svg_lines(panel, top) if isinstance(panel, Lines) else _svg_bars(panel, top)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _frame(title: str, top: float, low: float, high: float) -> list[str]:
    left, right, bottom = MARGIN, WIDTH - 20, top + PANEL_HEIGHT - 50
    return [
        f'<text x="{left}" y="{top + 12}" font-size="13">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + 20}" x2="{left}" y2="{bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>',
        f'<text x="{left - 4}" y="{top + 24}" text-anchor="end">{high:.4g}</text>',
        f'<text x="{left - 4}" y="{bottom}" text-anchor="end">{low:.4g}</text>',
    ]


def _scale(low: float, high: float, top: float) -> tuple[float, float]:
    """(y of `low`, pixels per unit) in a panel whose plot area starts at `top`."""
    bottom, ceiling = top + PANEL_HEIGHT - 50, top + 20
    span = (high - low) or 1.0
    return bottom, (bottom - ceiling) / span


def _svg_lines(panel: Lines, top: float) -> list[str]:
    present = [v for v in panel.values if v is not None]
    low, high = (min(present), max(present)) if present else (0.0, 1.0)
    if low == high:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    parts = _frame(panel.title, top, low, high)
    bottom, unit = _scale(low, high, top)
    count = len(panel.values)
    step = (WIDTH - 20 - MARGIN - 20) / max(count - 1, 1)

    def x(i: int) -> float:
        return MARGIN + 10 + i * step

    runs: list[list[str]] = [[]]
    for i, value in enumerate(panel.values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append(f"{x(i):.1f},{bottom - (value - low) * unit:.1f}")
    for run in runs:
        if run:
            parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{COLOURS[0]}" stroke-width="1.5"/>')
    if count <= 200:
        for i, value in enumerate(panel.values):
            if value is not None:
                y = bottom - (value - low) * unit
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y:.1f}" r="2.5" fill="{COLOURS[0]}"/>')
    every = max(1, -(-count // MAX_LABELS))
    for i, label in enumerate(panel.labels):
        if i % every == 0 or i == count - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{bottom + 14}" text-anchor="end" '
                f'transform="rotate(-30 {x(i):.1f} {bottom + 14})">{escape(label)}</text>'
            )
    for i, text in sorted(panel.marks.items()):
        parts.append(
            f'<line x1="{x(i):.1f}" y1="{top + 20}" x2="{x(i):.1f}" y2="{bottom}" stroke="{COLOURS[3]}" '
            'stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{x(i) + 3:.1f}" y="{top + 30}" fill="{COLOURS[3]}">{escape(text)}</text>')
    return parts


def _svg_bars(panel: Bars, top: float) -> list[str]:
    high = max((c for _, counts in panel.series for c in counts), default=1.0) or 1.0
    parts = _frame(panel.title, top, 0.0, high)
    bottom, unit = _scale(0.0, high, top)
    slots = max(len(panel.bins), 1)
    slot = (WIDTH - 20 - MARGIN - 10) / slots
    width = slot * 0.8 / max(len(panel.series), 1)
    for s, (name, counts) in enumerate(panel.series):
        colour = COLOURS[s % len(COLOURS)]
        for b, count in enumerate(counts):
            x = MARGIN + 5 + b * slot + s * width
            parts.append(
                f'<rect x="{x:.1f}" y="{bottom - count * unit:.1f}" width="{width:.1f}" '
                f'height="{count * unit:.1f}" fill="{colour}" fill-opacity="0.75"/>'
            )
        parts.append(f'<text x="{WIDTH - 24}" y="{top + 12 + 14 * s}" text-anchor="end" fill="{colour}">'
                     f"{escape(name)}</text>")  # fmt: skip
    every = max(1, -(-slots // MAX_LABELS))
    for b, label in enumerate(panel.bins):
        if b % every == 0:
            x = MARGIN + 5 + (b + 0.5) * slot
            parts.append(
                f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="end" '
                f'transform="rotate(-30 {x:.1f} {bottom + 14})">{escape(label)}</text>'
            )
    return parts


# -- PNG ---------------------------------------------------------------------------------------


def _png(figure: Figure, target: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            "writing a PNG needs matplotlib, which is not installed",
            hint="pip install 'modelspec[plot]', or write an .svg (no dependency)",
        ) from None
    fig, axes = plt.subplots(len(figure.panels), 1, figsize=(9, 2.8 * len(figure.panels)), squeeze=False)
    fig.suptitle(_plain(figure.title))
    for ax, panel in zip(axes[:, 0], figure.panels, strict=True):
        ax.set_title(_plain(panel.title), loc="left", fontsize=10)
        if isinstance(panel, Lines):
            xs = range(len(panel.values))
            ax.plot(xs, [float("nan") if v is None else v for v in panel.values], marker=".")
            for i, text in panel.marks.items():
                ax.axvline(i, color=COLOURS[3], linestyle="--")
                ax.annotate(_plain(text), (i, 1), xycoords=("data", "axes fraction"), color=COLOURS[3], va="top")
            every = max(1, -(-len(panel.labels) // MAX_LABELS))
            labels = [_plain(label) for label in panel.labels]
            ax.set_xticks(list(xs)[::every], labels[::every], rotation=30, ha="right", fontsize=8)
        else:
            width = 0.8 / max(len(panel.series), 1)
            for s, (name, counts) in enumerate(panel.series):
                ax.bar([b + s * width for b in range(len(counts))], counts, width, label=_plain(name), alpha=0.75)
            ax.set_xticks(range(len(panel.bins)), [_plain(b) for b in panel.bins], rotation=30, ha="right", fontsize=8)
            ax.legend()
    fig.tight_layout()
    fig.savefig(target, format="png")
    plt.close(fig)


def _plain(text: str) -> str:
    """A user string (a column, a category) as matplotlib's literal text: `$` would start math."""
    return text.replace("$", r"\$")
