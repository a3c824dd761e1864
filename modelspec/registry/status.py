"""A version's life after registration: retention retires it (its artifacts go, its
metadata stays for ever), a build of the same content revives it, a pin keeps it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..errors import UsageError
from . import tables as t
from .audit import Write
from .facts import revival_hint
from .queries import among
from .versions import ModelVersion, by_id


@dataclass(frozen=True)
class Revival:
    """What a version was before a build of its content brought its artifacts back."""

    status: str  # "retired"
    reason: str | None
    time: float | None

    def describe(self) -> str:
        day = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.time or 0))
        return f"it was {self.status} on {day} by retention ({self.reason or 'no reason recorded'})"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "time": self.time}


def retired_error(version: ModelVersion) -> UsageError:
    """`export` and `reproduce` of a retired version: a bad reference (exit 2), not a failed
    command, with when and why retention took its artifacts and how to get them back."""
    day = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(version.status_time or 0))
    return UsageError(
        f"{version.ref} is {version.status} by retention since {day} ({version.status_reason}): "
        "its artifacts are gone",
        hint=revival_hint(version.ref, version.commit, version.record.get("spec", "")),
    )


def revive(w: Write, version: ModelVersion, actor: str) -> tuple[ModelVersion, Revival]:
    """The build just produced every artifact again: the version is whole once more."""
    was = Revival(version.status, version.status_reason, version.status_time)
    now = w.clock()
    w.conn.execute(
        sa.update(t.versions)
        .where(t.versions.c.id == version.id)
        .values(status="active", status_time=now, status_reason="rebuilt")
    )
    w.event("revive", version.ref, actor, {"at": now})
    return by_id(w.conn, version.id), was


def retire(w: Write, reasons: Mapping[int, str], actor: str) -> list[int]:
    """Mark versions retired (their artifacts are about to go); metadata stays forever.
    A version an alias points to now (promoted since the plan was made) is never
    retired: the ids skipped for that reason are returned."""
    now = w.clock()
    served: list[int] = []
    for version_id, reason in sorted(reasons.items()):
        version = by_id(w.conn, version_id)
        if version.status != "active":
            continue
        if w.conn.execute(sa.select(t.aliases.c.alias).where(t.aliases.c.version_id == version_id)).first():
            served.append(version_id)
            continue
        w.conn.execute(
            sa.update(t.versions)
            .where(t.versions.c.id == version_id)
            .values(status="retired", status_time=now, status_reason=reason)
        )
        w.event("retire", version.ref, actor, {"reason": reason, "at": now})
    return served


def check_pinnable(version: ModelVersion) -> None:
    if version.status != "active":
        raise UsageError(
            f"{version.ref} cannot be pinned: it was {version.status} ({version.status_reason}) and its "
            "artifacts are gone",
            hint=revival_hint(version.ref, version.commit, version.record.get("spec", "")),
        )


def pin(w: Write, version: ModelVersion, actor: str, pinned: bool) -> bool:
    """Pin (or unpin) a version; False when it already was (or was not) pinned, which
    changes nothing and writes no audit event."""
    was = w.conn.execute(sa.select(t.pins.c.version_id).where(t.pins.c.version_id == version.id)).first()
    if (was is not None) == pinned:
        return False
    w.conn.execute(sa.delete(t.pins).where(t.pins.c.version_id == version.id))
    now = w.clock()
    if pinned:
        w.conn.execute(sa.insert(t.pins).values(version_id=version.id, time=now, actor=actor))
    w.event("pin" if pinned else "unpin", version.ref, actor, {"at": now} if pinned else {})
    return True


def pins_of(conn: sa.Connection, version_ids: list[int]) -> dict[int, dict[str, Any]]:
    """version id → when and by whom it was pinned, for the pinned ones among them."""
    found: dict[int, dict[str, Any]] = {}
    for ids in among(conn, t.pins.c.version_id, version_ids):
        for r in conn.execute(sa.select(t.pins).where(ids)):
            found[r.version_id] = {"time": r.time, "actor": r.actor}
    return found
