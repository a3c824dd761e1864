"""What the registry tells retention about a version, and how a retired version comes back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from . import tables as t


@dataclass(frozen=True)
class VersionFacts:
    """What retention looks at for one version."""

    id: int
    ref: str
    created: float
    status: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # aliases pointing at it now
    previous_aliases: tuple[str, ...] = ()  # aliases that pointed at it before their last move
    pinned: bool = False


def revival_hint(ref: str, commit: str, spec: str) -> str:
    """What brings back the artifacts of a retired version: a build of the same inputs
    registers the same content id, which revives it (`reproduce` refuses retired versions)."""
    return (
        f"promote an active version instead (`modelspec versions {ref.split('@')[0]}` lists them), or rebuild "
        f"{ref}: check out its commit ({commit[:12]}) and run `modelspec build {spec or 'SPEC'}` with the params "
        f"`modelspec show {ref}` lists; a build of the same inputs revives the version"
    )


def retention_facts(conn: sa.Connection) -> dict[str, list[VersionFacts]]:
    """Every version of every model with what retention looks at, in a few queries."""
    v = t.versions.c
    rows = conn.execute(sa.select(v.id, v.name, v.version, v.created, v.status)).all()
    metrics: dict[int, dict[str, float]] = {}
    for r in conn.execute(sa.select(t.metrics)):
        metrics.setdefault(r.version_id, {})[r.key] = int(r.value) if r.is_integer else r.value
    aliases: dict[int, list[str]] = {}
    for r in conn.execute(sa.select(t.aliases)):
        aliases.setdefault(r.version_id, []).append(r.alias)
    previous: dict[tuple[str, str], list[str]] = {}
    h = t.alias_history.c
    newest_move = sa.select(h.name, h.alias, sa.func.max(h.id).label("id")).group_by(h.name, h.alias).subquery()
    for r in conn.execute(sa.select(t.alias_history).join(newest_move, newest_move.c.id == h.id)):
        for version, _weight in json.loads(r.before):
            previous.setdefault((r.name, version), []).append(r.alias)
    pinned = set(conn.execute(sa.select(t.pins.c.version_id)).scalars())
    facts: dict[str, list[VersionFacts]] = {}
    for r in rows:
        facts.setdefault(r.name, []).append(
            VersionFacts(
                id=r.id,
                ref=f"{r.name}@{r.version}",
                created=r.created,
                status=r.status,
                metrics=metrics.get(r.id, {}),
                aliases=tuple(sorted(aliases.get(r.id, []))),
                previous_aliases=tuple(sorted(previous.get((r.name, r.version), []))),
                pinned=r.id in pinned,
            )
        )
    return facts
