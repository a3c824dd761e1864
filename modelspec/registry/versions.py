"""What a version is: the draft a build hands in, the immutable record it becomes, and the
one declaration of which `versions` columns a record holds.

`ModelVersion`'s fields *are* that declaration: the select that reads a version, the
insert that writes one and the digest its build event keeps are all derived from them,
so a new column is added in `tables.versions` and here, nowhere else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import sqlalchemy as sa

from ..digest import digest_json
from ..errors import UsageError
from ..spec.refs import parse_version, short_content_id
from . import tables as t
from .audit import Write

# Field metadata: the column a field is stored in, when not its own name, and whether the
# version's build event digests it (what is recorded for ever; not the id the database
# assigns, nor the retention status that changes later).
_NOT_RECORDED = {"recorded": False}
_SAYS_DIRTY = re.compile(r'"dirty"\s*:\s*true')


@dataclass(frozen=True)
class ModelVersion:
    id: int = field(metadata=_NOT_RECORDED)
    name: str
    version: str
    content_id: str
    lock: str
    commit: str
    environment: str | None
    hermetic: bool
    author: str
    host: str
    tool_version: str
    created: float
    status: str = field(metadata=_NOT_RECORDED)
    status_time: float | None = field(metadata=_NOT_RECORDED)
    status_reason: str | None = field(metadata=_NOT_RECORDED)
    # JSON: params, data, stages, environment, ...
    record_text: str = field(repr=False, metadata={"column": "record"})

    @cached_property
    def record(self) -> dict[str, Any]:
        """The record, decoded on first use: listing thousands of versions never needs it."""
        value: dict[str, Any] = json.loads(self.record_text)
        return value

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @cached_property
    def dirty(self) -> bool:
        """Built from working files that differed from its commit (`--allow-dirty`)."""
        # Every record says "dirty": false or true; only one that says true somewhere (in any
        # JSON spelling) is decoded to see where: listing thousands of clean versions decodes none.
        if _SAYS_DIRTY.search(self.record_text) is None:
            return False
        return bool(self.record.get("dirty"))

    @property
    def marks(self) -> list[str]:
        """What sets it apart from a clean, sandboxed build (see MARKS): a registered input
        takes a marked version only where its spec allows the mark."""
        return [mark for mark, on in (("dirty", self.dirty), ("unsandboxed", not self.hermetic)) if on]

    @property
    def short_id(self) -> str:
        return short_content_id(self.name, self.content_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "content_id": self.content_id,
            "short_id": self.short_id,
            "lock": self.lock,
            "commit": self.commit,
            "environment": self.environment,
            "hermetic": self.hermetic,
            "author": self.author,
            "host": self.host,
            "modelspec_version": self.tool_version,
            "created": self.created,
            "status": self.status,
            "status_time": self.status_time,
            "status_reason": self.status_reason,
            "marks": self.marks,
            **{k: v for k, v in self.record.items() if k not in ("metrics",)},
        }


MARKS = {"dirty": "built from uncommitted files", "unsandboxed": "ran without a sandbox"}

# (field, column) in field order: a row selected with COLUMNS is a ModelVersion's arguments.
_FIELDS = tuple((f.name, f.metadata.get("column", f.name)) for f in fields(ModelVersion))
COLUMNS = tuple(t.versions.c[column] for _, column in _FIELDS)
# The columns a build event's digest covers, in the order the digests of every release hold.
RECORDED = tuple(f.metadata.get("column", f.name) for f in fields(ModelVersion) if f.metadata.get("recorded", True))


def select(*extra: Any) -> sa.Select[Any]:
    """The versions (and `extra` columns after them) as `version_of` reads them."""
    return sa.select(*COLUMNS, *extra)


def version_of(row: Any) -> ModelVersion:
    """A row of `select()`: its first columns, positionally (the cheapest mapping there is:
    listing 60,000 versions builds 60,000 of these)."""
    return ModelVersion(*row[: len(COLUMNS)])


def by_id(conn: sa.Connection, version_id: int) -> ModelVersion:
    return version_of(conn.execute(select().where(t.versions.c.id == version_id)).one())


def by_content(conn: sa.Connection, name: str, content_id: str) -> ModelVersion | None:
    v = t.versions.c
    row = conn.execute(select().where(v.name == name, v.content_id == content_id)).first()
    return None if row is None else version_of(row)


@dataclass(frozen=True)
class VersionDraft:
    """What a successful build asks the registry to record."""

    name: str
    spec_version: str  # "1.3" allocates a patch, "1.3.0" pins it
    content_id: str
    lock: str
    commit: str
    environment: str | None
    hermetic: bool
    author: str
    host: str
    tool_version: str
    record: Mapping[str, Any]  # params, data, stages (durations, logs), metrics
    artifacts: Mapping[str, Mapping[str, Any]]  # ref → {type, digest, size}
    metrics: Mapping[str, float]
    lineage: list[dict[str, Any]] = field(default_factory=list)  # {kind, name, ref, digest, upstream_content}


class VersionConflictError(UsageError):
    """A pinned version that already names other content."""


def allocate(conn: sa.Connection, name: str, spec_version: str) -> tuple[int, int, int]:
    """The version a draft gets: "1.3" takes the next free patch, "1.3.0" must be free."""
    major, minor, patch = parse_version(spec_version)
    # One indexed lookup, not every version of the model: registering stays O(log n).
    v = t.versions.c
    highest = conn.execute(
        sa.select(sa.func.max(v.patch)).where(v.name == name, v.major == major, v.minor == minor)
    ).scalar()
    free = 0 if highest is None else highest + 1
    if patch is None:
        return major, minor, free
    if conn.execute(sa.select(v.id).where(v.name == name, v.version == f"{major}.{minor}.{patch}")).first():
        raise VersionConflictError(
            f"{name}@{spec_version} is already registered with other content",
            hint=f'set version: "{major}.{minor}.{free}" for a patch, '
            f'"{major}.{minor + 1}.0" for a minor release, or "{major}.{minor}" to allocate one',
        )
    return major, minor, patch


def insert(w: Write, draft: VersionDraft) -> ModelVersion:
    """A new version with its artifacts and metrics (its lineage and build event are the
    caller's); raises VersionConflictError for a pinned version that is taken."""
    major, minor, patch = allocate(w.conn, draft.name, draft.spec_version)
    version = ModelVersion(
        id=0,  # the database assigns it
        name=draft.name,
        version=f"{major}.{minor}.{patch}",
        content_id=draft.content_id,
        lock=draft.lock,
        commit=draft.commit,
        environment=draft.environment,
        hermetic=draft.hermetic,
        author=draft.author,
        host=draft.host,
        tool_version=draft.tool_version,
        created=w.clock(),
        status="active",
        status_time=None,
        status_reason=None,
        record_text=json.dumps(draft.record, sort_keys=True),
    )
    values = {column: getattr(version, name) for name, column in _FIELDS if name != "id"}
    inserted = w.conn.execute(sa.insert(t.versions).values(**values, major=major, minor=minor, patch=patch))
    version_id = inserted.inserted_primary_key[0]  # type: ignore[index]
    if draft.artifacts:
        w.conn.execute(
            sa.insert(t.artifacts),
            [{"version_id": version_id, "name": ref, **dict(e)} for ref, e in sorted(draft.artifacts.items())],
        )
    if draft.metrics:
        w.conn.execute(sa.insert(t.metrics), [metric_row(version_id, k, v) for k, v in sorted(draft.metrics.items())])
    return by_id(w.conn, version_id)  # as stored: a clock's integer time reads back as a float


def metric_row(version_id: int, key: str, value: float) -> dict[str, Any]:
    """An integer keeps its kind (flat.flatten_metrics left only those a float holds exactly)."""
    is_integer = isinstance(value, int) and not isinstance(value, bool)
    return {"version_id": version_id, "key": key, "value": float(value), "is_integer": is_integer}


def row_digest(conn: sa.Connection, version_id: int) -> str:
    """The digest of what a version recorded for ever (not its retention status)."""
    v = t.versions.c
    row = conn.execute(sa.select(*(v[c] for c in RECORDED)).where(v.id == version_id)).one()
    artifacts = conn.execute(
        sa.select(t.artifacts.c.name, t.artifacts.c.digest, t.artifacts.c.size)
        .where(t.artifacts.c.version_id == version_id)
        .order_by(t.artifacts.c.name)
    ).all()
    metrics = conn.execute(
        sa.select(t.metrics.c.key, t.metrics.c.value, t.metrics.c.is_integer)
        .where(t.metrics.c.version_id == version_id)
        .order_by(t.metrics.c.key)
    ).all()
    return digest_json(
        {
            "row": [bool(x) if c == "hermetic" else x for c, x in zip(RECORDED, row, strict=True)],
            "artifacts": [list(a) for a in artifacts],
            # An integer digests as 12, a float as 12.0: a flipped flag is an edit, and the
            # digests that versions before schema 5 recorded (all floats) still hold.
            "metrics": [[key, int(value) if is_integer else value] for key, value, is_integer in metrics],
        }
    )


def tag(w: Write, version: ModelVersion, key: str, value: str, actor: str) -> None:
    w.conn.execute(sa.delete(t.tags).where(t.tags.c.version_id == version.id, t.tags.c.key == key))
    w.conn.execute(sa.insert(t.tags).values(version_id=version.id, key=key, value=value))
    w.event("tag", version.ref, actor, {"key": key, "value": value})
