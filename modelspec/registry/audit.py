"""The tamper-evident audit log: each event carries the digest of the one before it.

An edited event no longer matches its digest; an inserted or deleted one breaks the chain
of `prev` links. `verify_chain` is pure: it is given the rows in sequence order. Events
are appended through a `Write`, the one transaction every registry change runs in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..digest import digest_json
from . import tables as t

GENESIS = "blake3:" + "0" * 64


def event_digest(seq: int, time: float, kind: str, actor: str, subject: str, payload: str, prev: str) -> str:
    return digest_json(
        {"seq": seq, "time": time, "kind": kind, "actor": actor, "subject": subject, "payload": payload, "prev": prev}
    )


def verify_chain(rows: Iterable[Mapping[str, Any]]) -> str:
    """'' when the chain is intact, else a sentence naming the first bad event."""
    prev = GENESIS
    expected_seq = 1
    for row in rows:
        seq = int(row["seq"])
        if seq != expected_seq:
            return f"event {expected_seq} is missing (the log jumps to {seq})"
        if row["prev"] != prev:
            return f"event {seq} does not follow event {seq - 1}: an event was deleted or inserted"
        digest = event_digest(seq, row["time"], row["kind"], row["actor"], row["subject"], row["payload"], row["prev"])
        if digest != row["digest"]:
            return f"event {seq} ({row['kind']} {row['subject']}) was edited"
        prev = row["digest"]
        expected_seq += 1
    return ""


@dataclass
class Write:
    """One write transaction: its connection, the registry's clock, and the newest audit
    event it appended (which the store records as the registry's head once it commits)."""

    conn: sa.Connection
    clock: Callable[[], float]
    head: tuple[int, str] | None = None

    def event(self, kind: str, subject: str, actor: str, payload: Mapping[str, Any]) -> None:
        self.head = append(self.conn, self.clock(), kind, subject, actor, payload)


def append(
    conn: sa.Connection, now: float, kind: str, subject: str, actor: str, payload: Mapping[str, Any]
) -> tuple[int, str]:
    """Chain one event onto the log and move `meta.audit_head` to it; returns (seq, digest)."""
    last = conn.execute(sa.select(t.events.c.seq, t.events.c.digest).order_by(t.events.c.seq.desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.digest) if last else (1, GENESIS)
    text = json.dumps(payload, sort_keys=True)
    digest = event_digest(seq, now, kind, actor, subject, text, prev)
    conn.execute(
        sa.insert(t.events).values(
            seq=seq, time=now, kind=kind, actor=actor, subject=subject, payload=text, prev=prev, digest=digest
        )
    )
    conn.execute(sa.delete(t.meta).where(t.meta.c.key == "audit_head"))
    conn.execute(sa.insert(t.meta).values(key="audit_head", value=f"{seq} {digest}"))
    return seq, digest


def events(conn: sa.Connection, limit: int | None = None) -> list[dict[str, Any]]:
    """The log in order; with `limit`, only the newest events (read from the end, not all)."""
    if not sa.inspect(conn).has_table("events"):
        return []  # an emptied registry, opened unguarded for verify_audit to describe
    query = sa.select(t.events).order_by(t.events.c.seq.desc())
    if limit:
        query = query.limit(limit)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    rows.reverse()
    for row in rows:
        row["payload"] = json.loads(row["payload"])
    return rows


def head(conn: sa.Connection) -> tuple[str, int, str]:
    """The registry's identity, its last event's number and digest (0 and GENESIS when empty,
    or emptied: `audit --verify` examines a registry whose tables are gone)."""
    if not sa.inspect(conn).has_table("events"):
        return str(t.identity(conn) or ""), 0, GENESIS
    last = conn.execute(sa.select(t.events.c.seq, t.events.c.digest).order_by(t.events.c.seq.desc()).limit(1)).first()
    seq, digest = (int(last.seq), str(last.digest)) if last else (0, GENESIS)
    return str(t.identity(conn) or ""), seq, digest


def digests(conn: sa.Connection, seqs: Iterable[int]) -> dict[int, str]:
    """The digests of the events numbered `seqs` (those that exist)."""
    if not sa.inspect(conn).has_table("events"):
        return {}
    query = sa.select(t.events.c.seq, t.events.c.digest).where(t.events.c.seq.in_(list(seqs)))
    return {int(seq): str(digest) for seq, digest in conn.execute(query)}
