"""Where a version came from and what checked it since: its upstream inputs (data, specs,
registered versions), the versions built from it, and the results of reproducing it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from . import tables as t
from .audit import Write


def record(conn: sa.Connection, version_id: int, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Write a new version's lineage rows ({kind, name, ref, digest, upstream_content}, the
    upstream found by its content id); returns them as its build event records them, so
    that replaying the log rebuilds them."""
    v = t.versions.c
    links = []
    for item in items:
        upstream = None
        if item.get("upstream_content"):
            upstream = conn.execute(
                sa.select(v.id, v.name, v.version).where(v.content_id == item["upstream_content"])
            ).first()
        link = {k: item[k] for k in ("kind", "name", "ref", "digest")}
        conn.execute(sa.insert(t.lineage).values(version_id=version_id, upstream_id=upstream and upstream.id, **link))
        links.append({**link, "upstream": upstream and f"{upstream.name}@{upstream.version}"})
    return links


def lineage(conn: sa.Connection, version_id: int) -> dict[str, Any]:
    v = t.versions
    upstream = []
    for r in conn.execute(sa.select(t.lineage).where(t.lineage.c.version_id == version_id)):
        item = {"kind": r.kind, "name": r.name, "ref": r.ref, "digest": r.digest}
        if r.upstream_id is not None:
            up = conn.execute(sa.select(v.c.name, v.c.version).where(v.c.id == r.upstream_id)).one()
            item["version"] = f"{up.name}@{up.version}"
        upstream.append(item)
    downstream = [
        f"{r.name}@{r.version}"
        for r in conn.execute(
            sa.select(v.c.name, v.c.version)
            .join(t.lineage, t.lineage.c.version_id == v.c.id)
            .where(t.lineage.c.upstream_id == version_id)
            .order_by(v.c.name, v.c.major, v.c.minor, v.c.patch)
        )
    ]
    return {"upstream": upstream, "downstream": downstream}


def record_reproduction(
    w: Write, version_id: int, ref: str, verdict: str, details: Mapping[str, Any], actor: str
) -> None:
    now = w.clock()
    w.conn.execute(
        sa.insert(t.reproductions).values(
            version_id=version_id, time=now, actor=actor, verdict=verdict, details=json.dumps(details, sort_keys=True)
        )
    )
    w.event("reproduce", ref, actor, {"verdict": verdict, **details, "at": now})


def reproductions(conn: sa.Connection, version_id: int) -> list[dict[str, Any]]:
    c = t.reproductions.c
    query = sa.select(t.reproductions).where(c.version_id == version_id).order_by(c.id)
    return [
        {"time": r.time, "actor": r.actor, "verdict": r.verdict, "details": json.loads(r.details)}
        for r in conn.execute(query)
    ]
