"""`audit --verify`: the chain and its recorded head, each version's immutable row against
the digest its build event holds, and the tables against the state the log replays to."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from . import replay
from . import tables as t
from .audit import verify_chain
from .versions import row_digest


def audit_problems(conn: sa.Connection, unrecognised: str = "") -> list[str]:
    """What was tampered with: the first break in the chain or its head, or else every way
    the tables differ from the state the log replays to (then `unrecognised`, why the store
    does not recognise the registry, if it does not). [] when intact. `conn` is one read
    transaction: the log and the tables of one instant."""
    if unrecognised and not sa.inspect(conn).has_table("events"):
        return [unrecognised]
    rows = [dict(r._mapping) for r in conn.execute(sa.select(t.events).order_by(t.events.c.seq))]
    head = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "audit_head")).scalar()
    problem = verify_chain(rows)
    decoded = [{**row, "payload": json.loads(row["payload"])} for row in rows] if not problem else []
    problem = problem or _verify_rows(conn, decoded) or _head_mismatch(rows, head)
    if problem:
        return [problem]
    found = []
    if t.schema_version(conn) == t.SCHEMA_VERSION:  # else a foreign registry never migrated: no tables
        found = replay.differences(replay.replay(decoded), table_state(conn))
    return [*found, unrecognised] if unrecognised else found


def _head_mismatch(rows: list[dict[str, Any]], head: Any) -> str:
    """'' when `meta.audit_head` names the log's last event, else how the log's end was changed."""
    last = int(rows[-1]["seq"]) if rows else 0
    expected = f"{last} {rows[-1]['digest']}" if rows else None
    if head == expected:
        return ""
    if head is None:
        return "the recorded head of the audit log is missing"
    recorded = int(str(head).split()[0])
    if recorded > last:
        return f"event {last + 1} is missing: the log ends at event {last}, before its recorded head ({recorded})"
    if recorded < last:
        return f"event {recorded + 1} was added after the recorded head (event {recorded})"
    return f"event {last} is not the event recorded as the head: it was replaced"


def _verify_rows(conn: sa.Connection, events: list[dict[str, Any]]) -> str:
    """Each version's immutable record must still match the digest its build event holds
    (`events` with their payloads decoded)."""
    recorded = {}
    for event in events:
        if event["kind"] == "build":
            row = event["payload"].get("row")
            if row:
                recorded[event["subject"]] = (event["seq"], row)
    v = t.versions.c
    for version_id, name, version in conn.execute(sa.select(v.id, v.name, v.version).order_by(v.id)):
        ref = f"{name}@{version}"
        if ref in recorded and row_digest(conn, version_id) != recorded[ref][1]:
            seq = recorded[ref][0]
            return f"{ref} was edited after it was registered (it no longer matches build event {seq})"
    return ""


def table_state(conn: sa.Connection) -> replay.RegistryState:
    """The mutable state as the tables hold it, in the shape `replay` folds the log into."""
    v = t.versions.c
    refs: dict[int, str] = {}
    versions: dict[str, replay.Status] = {}
    for version_id, name, version, status, reason, when in conn.execute(
        sa.select(v.id, v.name, v.version, v.status, v.status_reason, v.status_time)
    ):
        refs[version_id] = ref = f"{name}@{version}"
        versions[ref] = replay.Status(status, reason, when)
    aliases: dict[str, replay.Targets] = {}
    query = (
        sa.select(t.aliases.c.name, t.aliases.c.alias, v.version, t.aliases.c.weight)
        .join(t.versions, t.aliases.c.version_id == v.id)
        .order_by(t.aliases.c.name, t.aliases.c.alias, v.major, v.minor, v.patch)
    )
    for r in conn.execute(query):
        key = f"{r.name}@{r.alias}"
        aliases[key] = (*aliases.get(key, ()), (r.version, r.weight))
    history: dict[str, list[replay.Move]] = {}
    for r in conn.execute(sa.select(t.alias_history).order_by(t.alias_history.c.id)):
        before, after = replay.targets_of(json.loads(r.before)), replay.targets_of(json.loads(r.after))
        history.setdefault(f"{r.name}@{r.alias}", []).append(replay.Move(r.action, r.actor, before, after, r.time))
    tags = {(refs[r.version_id], r.key): r.value for r in conn.execute(sa.select(t.tags))}
    pins = {refs[r.version_id]: replay.Pin(r.actor, r.time) for r in conn.execute(sa.select(t.pins))}
    lineage: dict[str, list[replay.Link]] = {}
    link = t.lineage.c
    for version_id, kind, name, ref, digest, upstream_id in conn.execute(
        sa.select(link.version_id, link.kind, link.name, link.ref, link.digest, link.upstream_id)
    ):
        upstream = refs.get(upstream_id, "")
        lineage.setdefault(refs[version_id], []).append(replay.Link(kind, name, ref, digest, upstream))
    reproductions: dict[str, list[replay.Reproduction]] = {}
    for r in conn.execute(sa.select(t.reproductions).order_by(t.reproductions.c.id)):
        details = replay.details_text(json.loads(r.details))
        found = reproductions.setdefault(refs[r.version_id], [])
        found.append(replay.Reproduction(r.actor, r.verdict, details, r.time))
    gates: dict[str, list[replay.Reproduction]] = {}
    for r in conn.execute(sa.select(t.gate_results).order_by(t.gate_results.c.id)):
        details = replay.details_text(json.loads(r.details))
        gates.setdefault(refs[r.version_id], []).append(replay.Reproduction(r.actor, r.verdict, details, r.time))
    return replay.RegistryState(
        versions=versions,
        aliases=aliases,
        history={k: tuple(m) for k, m in history.items()},
        tags=tags,
        pins=pins,
        lineage={k: tuple(sorted(links)) for k, links in lineage.items()},
        reproductions={k: tuple(found) for k, found in reproductions.items()},
        gates={k: tuple(found) for k, found in gates.items()},
    )
