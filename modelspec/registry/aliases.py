"""Aliases: movable names for versions (`fraud@production`), split by weight for a canary,
with every move kept in their history so that a rollback restores the one before."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from ..errors import UsageError
from ..spec.refs import check_alias_name, parse_ref
from . import tables as t
from .audit import Write
from .facts import revival_hint
from .queries import targets
from .versions import ModelVersion, select, version_of


def primary_target(named: list[tuple[ModelVersion, float]]) -> ModelVersion:
    """The version an alias names when one is needed: the largest weight, the older on a tie
    (`named` come oldest first)."""
    return max(named, key=lambda target: target[1])[0]


def check_promotion(ref: str, alias: str, weight: float | None) -> None:
    """What `promote` refuses before looking anything up."""
    check_alias_name(parse_ref(ref).name, alias)
    if weight is not None and not 0 < weight < 1:  # checked even when the alias is new
        raise UsageError("--weight must be between 0 and 1 (exclusive)")


def check_promotable(version: ModelVersion) -> None:
    if version.status != "active":
        raise UsageError(f"{version.ref} is {version.status}: its artifacts are gone, it cannot be promoted")


def promote(w: Write, version: ModelVersion, alias: str, actor: str, weight: float | None) -> list[list[Any]]:
    """Point `alias` at a version; with `weight`, add it beside the current targets (a
    canary) and scale the others so that the weights sum to 1."""
    current = [(v.id, share) for v, share in targets(w.conn, version.name, alias) if v.id != version.id]
    if weight is None or not current:
        after = [(version.id, 1.0)]
    else:
        total = sum(share for _, share in current)
        after = [(i, round(share / total * (1 - weight), 6)) for i, share in current] + [(version.id, weight)]
    return _move(w, version.name, alias, after, "promote", actor)


def rollback(w: Write, name: str, alias: str, actor: str) -> list[list[Any]]:
    """Point `alias` back at what it pointed to before its last move."""
    h = t.alias_history.c
    last = w.conn.execute(
        sa.select(t.alias_history).where(h.name == name, h.alias == alias).order_by(h.id.desc()).limit(1)
    ).first()
    if last is None:
        raise UsageError(f"{name}@{alias} has never been moved: there is nothing to roll back to")
    previous = json.loads(last.before)
    if not previous:
        raise UsageError(f"{name}@{alias} pointed at nothing before its last promotion")
    after = []
    for number, weight in previous:
        v = t.versions.c
        version = version_of(w.conn.execute(select().where(v.name == name, v.version == number)).one())
        if version.status != "active":
            raise UsageError(
                f"cannot roll back {name}@{alias} to {version.ref}: its artifacts were retired "
                f"({version.status_reason or version.status})",
                hint=revival_hint(version.ref, version.commit, version.record.get("spec", "")),
            )
        after.append((version.id, weight))
    return _move(w, name, alias, after, "rollback", actor)


def remove(w: Write, name: str, alias: str, actor: str) -> list[list[Any]]:
    """Remove NAME@ALIAS; returns the [version, weight] pairs it pointed to. Its history
    stays, with this removal as the newest move, so a rollback restores it."""
    before = _shown(w.conn, name, alias)
    if not before:
        query = sa.select(t.aliases.c.alias).where(t.aliases.c.name == name).distinct()
        known = sorted(w.conn.execute(query).scalars())
        raise UsageError(f"no alias {name}@{alias}", hint=f"aliases of {name}: {', '.join(known) or 'none'}")
    w.conn.execute(sa.delete(t.aliases).where(t.aliases.c.name == name, t.aliases.c.alias == alias))
    now = w.clock()
    _remember(w.conn, name, alias, now, actor, "alias.rm", before, [])
    w.event("alias.rm", f"{name}@{alias}", actor, {"from": before, "at": now})
    return before


def history(conn: sa.Connection, name: str, alias: str, newest: int | None = None) -> list[dict[str, Any]]:
    """Every move of NAME@ALIAS in order; with `newest`, only the last ones (read from the end)."""
    h = t.alias_history.c
    query = sa.select(t.alias_history).where(h.name == name, h.alias == alias)
    query = query.order_by(h.id) if newest is None else query.order_by(h.id.desc()).limit(newest)
    rows = list(conn.execute(query))
    if newest is not None:
        rows.reverse()
    return [
        {"time": r.time, "actor": r.actor, "action": r.action, "from": json.loads(r.before), "to": json.loads(r.after)}
        for r in rows
    ]


def _move(w: Write, name: str, alias: str, after: list[tuple[int, float]], action: str, actor: str) -> list[list[Any]]:
    before = _shown(w.conn, name, alias)
    w.conn.execute(sa.delete(t.aliases).where(t.aliases.c.name == name, t.aliases.c.alias == alias))
    for version_id, weight in after:
        w.conn.execute(sa.insert(t.aliases).values(name=name, alias=alias, version_id=version_id, weight=weight))
    after_shown = _shown(w.conn, name, alias)
    now = w.clock()
    _remember(w.conn, name, alias, now, actor, action, before, after_shown)
    w.event(action, f"{name}@{alias}", actor, {"from": before, "to": after_shown, "at": now})
    return after_shown


def _shown(conn: sa.Connection, name: str, alias: str) -> list[list[Any]]:
    """What NAME@ALIAS points to as its history and events record it: [[version, weight], ...]."""
    return [[version.version, weight] for version, weight in targets(conn, name, alias)]


def _remember(
    conn: sa.Connection,
    name: str,
    alias: str,
    now: float,
    actor: str,
    action: str,
    before: list[list[Any]],
    after: list[list[Any]],
) -> None:
    conn.execute(
        sa.insert(t.alias_history).values(
            name=name,
            alias=alias,
            time=now,
            actor=actor,
            action=action,
            before=json.dumps(before),
            after=json.dumps(after),
        )
    )
