"""Drawings of the web view, as SVG text made on the server (no script in the browser): a
version's lineage and an alias's history. Every string from the registry is escaped."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

WIDTH = 900
ROW = 46  # vertical room of one node
NODE_W, NODE_H = 250, 34
MOST = 24  # nodes drawn per column; the rest are counted in one "+N more" node
COLOURS = {"data": "#2b7a78", "spec": "#6b4fa0", "version": "#1f5fa8", "code": "#8a5a00", "config": "#7a7a7a",
           "environment": "#a03060", "this version": "#111", "consumer": "#1f5fa8", "more": "#999"}  # fmt: skip


def short(digest: str | None, keep: int = 12) -> str:
    """`blake3:3f2a9c01be77` from a full digest: enough to tell two apart by eye."""
    if not digest:
        return "-"
    kind, _, hexdigits = str(digest).rpartition(":")
    return f"{kind}:{hexdigits[:keep]}" if kind else hexdigits[:keep]


def version_link(ref: str) -> str:
    """The page of a version `name@1.2.3`."""
    name, _, version = ref.partition("@")
    return f"/models/{quote(name, safe='')}/{quote(version, safe='')}"


def _text(x: float, y: float, text: str, **attributes: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(_clip(text))}</text>'


def _clip(text: str, most: int = 40) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _node(x: float, y: float, kind: str, title: str, detail: str, link: str | None = None) -> str:
    colour = COLOURS.get(kind, "#555")
    box = (
        f'<g class="node {escape(kind)}"><title>{escape(f"{kind}: {title} {detail}")}</title>'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="white" '
        f'stroke="{colour}" stroke-width="1.5"/>'
        + _text(x + 8, y + 14, f"{kind} · {title}", fill=colour, font_weight="bold")
        + _text(x + 8, y + 28, detail, fill="#444")
        + "</g>"
    )
    return f"<a href={quoteattr(link)}>{box}</a>" if link else box


def _column(items: Sequence[tuple[str, str, str, str | None]]) -> list[tuple[str, str, str, str | None]]:
    if len(items) <= MOST:
        return list(items)
    return [*items[: MOST - 1], ("more", f"{len(items) - MOST + 1} more", "", None)]


def lineage_svg(info: Mapping[str, Any]) -> str:
    """Where a version came from (left: data, specs and versions it read, its code commit,
    config and environment) and which versions were built from it (right)."""
    upstream: list[tuple[str, str, str, str | None]] = []
    for item in info["lineage"]["upstream"]:
        if item.get("version"):
            upstream.append(("version", item["version"], short(item["digest"]), version_link(item["version"])))
        else:
            upstream.append((item["kind"], item["name"], f"{item['ref']} {short(item['digest'], 8)}", None))
    upstream.append(("code", "commit", str(info.get("commit", ""))[:12] + (" (dirty)" if info.get("dirty") else ""),
                     None))  # fmt: skip
    params = info.get("params") or {}
    if params:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items())[:3])
        upstream.append(("config", f"{len(params)} params", shown, None))
    environment = info.get("environment") or {}
    if environment:
        upstream.append(("environment", str(environment.get("kind", "env")), short(environment.get("digest")), None))
    downstream = [("consumer", ref, "built from this version", version_link(ref)) for ref in
                  info["lineage"]["downstream"]]  # fmt: skip
    left, right = _column(upstream), _column(downstream)
    rows = max(len(left), len(right), 1)
    height = 40 + rows * ROW
    middle_y = 20 + (rows * ROW - NODE_H) / 2
    lx, cx, rx = 10.0, (WIDTH - NODE_W) / 2, WIDTH - NODE_W - 10.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11" role="img">',
        f"<title>{escape('lineage of ' + info['ref'])}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#9aa"/></marker></defs>',
    ]
    for i, (kind, title, detail, link) in enumerate(left):
        y = 20 + i * ROW + (rows - len(left)) * ROW / 2
        parts.append(_edge(lx + NODE_W, y + NODE_H / 2, cx, middle_y + NODE_H / 2))
        parts.append(_node(lx, y, kind, title, detail, link))
    for i, (kind, title, detail, link) in enumerate(right):
        y = 20 + i * ROW + (rows - len(right)) * ROW / 2
        parts.append(_edge(cx + NODE_W, middle_y + NODE_H / 2, rx, y + NODE_H / 2))
        parts.append(_node(rx, y, kind, title, detail, link))
    status = info.get("status", "")
    parts.append(_node(cx, middle_y, "this version", info["ref"], f"{info.get('short_id', '')} · {status}"))
    if not right:
        parts.append(_text(rx + 8, middle_y + NODE_H / 2 + 4, "no version was built from it", fill="#888"))
    parts.append("</svg>")
    return "\n".join(parts)


def _edge(x1: float, y1: float, x2: float, y2: float) -> str:
    bend = (x2 - x1) / 2
    return (
        f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} '
        f'{x2:.1f},{y2:.1f}" fill="none" stroke="#9aa" stroke-width="1.2" marker-end="url(#arrow)"/>'
    )


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def targets_text(targets: Sequence[Sequence[Any]]) -> str:
    """`1.0.0`, `1.0.0 (0.75), 1.0.1 (0.25)` for a split, `none` for no target."""
    return ", ".join(f"{v} ({w:g})" if len(targets) > 1 else str(v) for v, w in targets) or "none"


def timeline_svg(history: Sequence[Mapping[str, Any]], now: float, at: float | None = None) -> str:
    """An alias's moves on a time axis: one band per period, labelled with what the alias
    pointed to then; `at` marked with a line."""
    start = history[0]["time"] if history else now
    end = max(now, at or now, start + 1)
    span = end - start
    left, right, top, band = 20.0, WIDTH - 20.0, 30.0, 36.0

    def x(t: float) -> float:
        return left + (t - start) / span * (right - left)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH}" height="110" '
        f'viewBox="0 0 {WIDTH} 110" font-family="sans-serif" font-size="11" role="img">',
        "<title>alias history</title>",
        f'<line x1="{left}" y1="{top + band + 6}" x2="{right}" y2="{top + band + 6}" stroke="#888"/>',
    ]
    palette = ("#dbe9f6", "#fde8cf", "#dff2df", "#f6dada", "#e8e0f3")
    for i, move in enumerate(history):
        begin = move["time"]
        finish = history[i + 1]["time"] if i + 1 < len(history) else end
        width = max(x(finish) - x(begin), 3.0)  # a period of seconds still shows
        label = targets_text(move["to"])
        said = f"{when(begin)} {move['action']} by {move['actor']}: {label}"
        parts.append(
            f'<g class="period"><title>{escape(said)}</title>'
            f'<rect x="{x(begin):.1f}" y="{top}" width="{width:.1f}" height="{band}" '
            f'fill="{palette[i % len(palette)] if move["to"] else "#f2f2f2"}" stroke="white"/>'
        )
        if width > 40:
            parts.append(_text(x(begin) + 4, top + band / 2 + 4, label if width > 7 * len(label) else label[:6]))
        parts.append("</g>")
    for t in sorted({start, end}):
        parts.append(_text(x(t), top + band + 22, when(t), text_anchor="middle" if left < x(t) < right else
                           ("start" if x(t) <= left else "end"), fill="#555"))  # fmt: skip
    if at is not None and start <= at <= end:
        parts.append(f'<line class="at" x1="{x(at):.1f}" y1="{top - 8}" x2="{x(at):.1f}" y2="{top + band + 8}" '
                     'stroke="#d62728" stroke-width="2"/>')  # fmt: skip
        parts.append(_text(x(at), top - 12, f"at {when(at)}", text_anchor="middle", fill="#d62728"))
    parts.append("</svg>")
    return "\n".join(parts)
