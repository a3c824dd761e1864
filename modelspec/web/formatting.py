"""How the web view's pages write values: a metric, a size, a link with its query, a model's
path, and a version's retention lines (the Jinja2 filters and globals, and what the version
page says about gc).

Apart from the routes (`app.py`) because these are pure functions of what `api` returns:
they need neither FastAPI nor a request, and a template reads them by name.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from . import draw


def metric_text(value: Any, form: str = ".4g") -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:+d}" if form.startswith("+") else str(value)
    return format(value, form)


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{count} B"


def link(path: str, **params: Any) -> str:
    """`path?params`, leaving out empty ones; a list is a repeated parameter."""
    pairs = [
        (k, x) for k, v in params.items() for x in (v if isinstance(v, list) else [v]) if x not in (None, "", False)
    ]
    return path + ("?" + urlencode(pairs) if pairs else "")


def model_path(name: str, *rest: str) -> str:
    return "/".join(["/models", quote(name, safe=""), *(quote(r, safe="") for r in rest)])


def retention_of(info: dict[str, Any]) -> list[str]:
    """Why gc keeps this version or what it did with it, from what `show` reports."""
    said = []
    if info["status"] == "retired":
        said.append(f"retired {draw.when(info.get('status_time'))} UTC: {info.get('status_reason') or ''}".strip())
    if info.get("pinned"):
        pinned = info["pinned"]
        said.append(
            f"pinned {draw.when(pinned['time'])} UTC by {pinned['actor']}: gc keeps it whatever the policy says"
        )
    if info.get("aliases"):
        said.append(f"served by {', '.join(info['aliases'])}: gc keeps it while an alias points to it")
    if not said:
        said.append(f"{info['status']}: kept or retired by the spec's retention policy at the next gc")
    policy = info.get("retention") or {}
    if policy:
        said.append("policy: " + ", ".join(f"{k}: {v}" for k, v in sorted(policy.items())))
    return said
