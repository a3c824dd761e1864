"""The model registry: immutable versions, aliases with history, tags, lineage and the
audit log, in SQLite (WAL) through SQLAlchemy Core, so that a server database is a URL away.

Every write is one transaction; on SQLite it starts with `BEGIN IMMEDIATE`, so two
concurrent builds serialize their version allocation instead of failing or colliding.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..digest import digest_json
from ..errors import StoreError, UsageError
from ..spec.refs import (
    MIN_PREFIX,
    Ref,
    check_alias_name,
    parse_ref,
    parse_short_form,
    parse_version,
    short_content_id,
    too_short_prefix,
)
from . import replay
from . import tables as t
from .audit import GENESIS, event_digest, verify_chain
from .facts import VersionFacts, revival_hint
from .head import RegistryHead, head_problem, mismatch, read_head, record_head


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


@dataclass(frozen=True)
class ModelVersion:
    id: int
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
    status: str
    status_time: float | None
    status_reason: str | None
    record_text: str = field(repr=False)  # JSON: params, data, stages, environment, ...

    @cached_property
    def record(self) -> dict[str, Any]:
        """The record, decoded on first use: listing thousands of versions never needs it."""
        value: dict[str, Any] = json.loads(self.record_text)
        return value

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def dirty(self) -> bool:
        """Built from working files that differed from its commit (`--allow-dirty`)."""
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


MARKS = {"dirty": "built from uncommitted files", "unsandboxed": "ran without a sandbox"}


def primary_target(targets: list[tuple[ModelVersion, float]]) -> ModelVersion:
    """The version an alias names when one is needed: the largest weight, the older on a tie
    (`targets` come oldest first)."""
    return max(targets, key=lambda target: target[1])[0]


def _version_of(row: Any) -> ModelVersion:
    r = row._mapping  # keyed access through the mapping is ~4x cheaper than attributes on a Row
    return ModelVersion(
        id=r["id"],
        name=r["name"],
        version=r["version"],
        content_id=r["content_id"],
        lock=r["lock"],
        commit=r["commit"],
        environment=r["environment"],
        hermetic=bool(r["hermetic"]),
        author=r["author"],
        host=r["host"],
        tool_version=r["tool_version"],
        created=r["created"],
        status=r["status"],
        status_time=r["status_time"],
        status_reason=r["status_reason"],
        record_text=r["record"],
    )


class VersionConflictError(UsageError):
    """A pinned version that already names other content."""


class Registry:
    def __init__(
        self,
        url: str,
        *,
        clock: Any = time.time,
        head_file: Path | None = None,
        guard: bool = True,
        migrate: bool = True,
    ) -> None:
        """`guard=False` opens a registry the store does not recognise, for `audit --verify` to
        say what is wrong with it (its verify_audit reports the mismatch). `migrate=False`
        (a read-only open) leaves an older schema alone and says so in `outdated`."""
        self.url = url
        self.clock = clock
        self.head_file = head_file  # the store's record of this registry (registry_head)
        self._written: tuple[int, str] | None = None  # the newest event of the open write
        self.engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            _configure_sqlite(self.engine)
        try:
            with self.engine.connect() as conn:  # reading first: a full or read-only disk can still be read
                current = t.schema_version(conn) == t.SCHEMA_VERSION
                # Before a migration could make an emptied registry look new. Unguarded, a
                # registry the store does not recognise is only read (verify_audit says why).
                foreign = self._head_problem(conn)
                if foreign and guard:
                    raise mismatch(self.shown, self.head_file, *foreign)  # type: ignore[arg-type]
        except sa.exc.OperationalError as exc:
            raise StoreError(f"the registry ({url}) cannot be opened: {exc.orig}", hint=_STORAGE_HINT) from None
        self.outdated = not current and not foreign
        if self.outdated and migrate:
            with self._write() as conn:
                t.migrate(conn)
            self.outdated = False

    @classmethod
    def at(cls, path: Path, head_file: Path | None = None, guard: bool = True, read_only: bool = False) -> Registry:
        """The registry in file `path`; `read_only` for commands that only read it, so that
        they work on a full disk."""
        recorded = read_head(head_file) if head_file is not None else None
        if recorded is not None and not path.exists():
            problem = f"it is missing, but the store belongs to registry {recorded.registry[:12]}"
            raise mismatch(str(path), head_file, problem, recorded)  # type: ignore[arg-type]
        if path.exists() and not os.access(path.parent, os.W_OK):
            # A read-only store: SQLite must not try to create its WAL files beside the database.
            return cls(f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true", head_file=head_file, guard=guard)
        if path.exists() and read_only:
            registry = cls._read_only(path, head_file, guard)
            if not registry.outdated:
                return registry
            registry.close()  # an older schema: only a writer can migrate it
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}", head_file=head_file, guard=guard)

    @classmethod
    def _read_only(cls, path: Path, head_file: Path | None, guard: bool) -> Registry:
        """`mode=ro`: sees every committed write, never writes. On a full disk SQLite cannot
        even size the WAL's shared-memory index to read; then, when the WAL holds nothing
        (no writer has uncommitted or uncheckpointed pages), the database file alone is the
        whole registry and is read as immutable."""
        try:
            return cls(f"sqlite:///file:{path}?mode=ro&uri=true", head_file=head_file, guard=guard, migrate=False)
        except StoreError:
            wal = path.with_name(f"{path.name}-wal")
            if wal.exists() and wal.stat().st_size:
                raise
        url = f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true"
        return cls(url, head_file=head_file, guard=guard, migrate=False)

    @property
    def shown(self) -> str:
        """The registry as a person names it: its file, or its URL without a password."""
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database:
            return database.removeprefix("file:").split("?")[0]
        return self.engine.url.render_as_string(hide_password=True)

    def _head_problem(self, conn: sa.Connection) -> tuple[str, RegistryHead] | None:
        """Why the store's record of its registry does not match this one, or None."""
        if self.head_file is None:
            return None
        recorded = read_head(self.head_file)
        if recorded is None:
            return None
        last_seq = 0
        if sa.inspect(conn).has_table("events"):
            last_seq = conn.execute(sa.select(sa.func.max(t.events.c.seq))).scalar() or 0

        def digest_at(seq: int) -> str | None:
            found = conn.execute(sa.select(t.events.c.digest).where(t.events.c.seq == seq)).scalar()
            return None if found is None else str(found)

        problem = head_problem(recorded, t.identity(conn), last_seq, digest_at)
        return (problem, recorded) if problem else None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One write transaction; a full disk or a read-only file is a clear error. Once it
        commits, the store records the registry's new audit head."""
        self._written = None
        try:
            with self.engine.connect() as conn:
                conn.execution_options(modelspec_write=True)
                with conn.begin():
                    identity = t.identity(conn, create=True) if t.schema_version(conn) else None
                    yield conn
                    identity = identity or t.identity(conn, create=True)  # the migration made the registry
        except sa.exc.OperationalError as exc:
            raise StoreError(f"the registry ({self.url}) cannot be written: {exc.orig}", hint=_STORAGE_HINT) from None
        if self._written is not None and self.head_file is not None and identity is not None:
            record_head(self.head_file, RegistryHead(identity, *self._written))

    # -- audit ---------------------------------------------------------------------------

    def _event(self, conn: sa.Connection, kind: str, subject: str, actor: str, payload: Mapping[str, Any]) -> None:
        last = conn.execute(
            sa.select(t.events.c.seq, t.events.c.digest).order_by(t.events.c.seq.desc()).limit(1)
        ).first()
        seq, prev = (last.seq + 1, last.digest) if last else (1, GENESIS)
        now = self.clock()
        text = json.dumps(payload, sort_keys=True)
        digest = event_digest(seq, now, kind, actor, subject, text, prev)
        conn.execute(
            sa.insert(t.events).values(
                seq=seq, time=now, kind=kind, actor=actor, subject=subject, payload=text, prev=prev, digest=digest
            )
        )
        conn.execute(sa.delete(t.meta).where(t.meta.c.key == "audit_head"))
        conn.execute(sa.insert(t.meta).values(key="audit_head", value=f"{seq} {digest}"))
        self._written = (seq, digest)

    def record_event(self, kind: str, subject: str, actor: str, payload: Mapping[str, Any]) -> None:
        with self._write() as conn:
            self._event(conn, kind, subject, actor, payload)

    def events(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The log in order; with `limit`, only the newest events (read from the end, not all)."""
        query = sa.select(t.events).order_by(t.events.c.seq.desc())
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("events"):
                return []  # an emptied registry, opened unguarded for verify_audit to describe
            rows = [dict(r._mapping) for r in conn.execute(query)]
        rows.reverse()
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def verify_audit(self) -> str:
        """'' if the audit log is intact and the tables agree with it, else what was
        tampered with (each difference, separated by '; ')."""
        return "; ".join(self.audit_problems())

    def audit_problems(self) -> list[str]:
        """What was tampered with: the first break in the chain or its head, or else every
        way the tables differ from the state the log replays to. [] when intact."""
        with self.engine.connect() as conn:  # one read transaction: the log and the tables of one instant
            foreign = self._head_problem(conn)
            unrecognised = foreign and f"the store does not recognise this registry: {foreign[0]} ({self.head_file})"
            if unrecognised and not sa.inspect(conn).has_table("events"):
                return [unrecognised]
            rows = [dict(r._mapping) for r in conn.execute(sa.select(t.events).order_by(t.events.c.seq))]
            head = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "audit_head")).scalar()
            problem = verify_chain(rows)
            decoded = [{**row, "payload": json.loads(row["payload"])} for row in rows] if not problem else []
            problem = problem or self._verify_rows(conn, decoded) or _head_mismatch(rows, head)
            if problem:
                return [problem]
            found = []
            if t.schema_version(conn) == t.SCHEMA_VERSION:  # else a foreign registry never migrated: no tables
                found = replay.differences(replay.replay(decoded), self._table_state(conn))
        return [*found, unrecognised] if unrecognised else found

    def _verify_rows(self, conn: sa.Connection, events: list[dict[str, Any]]) -> str:
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
            if ref in recorded and _row_digest(conn, version_id) != recorded[ref][1]:
                seq = recorded[ref][0]
                return f"{ref} was edited after it was registered (it no longer matches build event {seq})"
        return ""

    def _table_state(self, conn: sa.Connection) -> replay.RegistryState:
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
        return replay.RegistryState(
            versions=versions,
            aliases=aliases,
            history={k: tuple(m) for k, m in history.items()},
            tags=tags,
            pins=pins,
            lineage={k: tuple(sorted(links)) for k, links in lineage.items()},
            reproductions={k: tuple(found) for k, found in reproductions.items()},
        )

    # -- versions ------------------------------------------------------------------------

    def register(self, draft: VersionDraft) -> tuple[ModelVersion, bool, Revival | None]:
        """Record a new version, or find the one that already has this content (False); a
        retired one is revived, and the third item says what it was."""
        with self._write() as conn:
            existing = conn.execute(
                sa.select(t.versions).where(
                    t.versions.c.name == draft.name, t.versions.c.content_id == draft.content_id
                )
            ).first()
            if existing is not None:
                revived = None
                if existing.status != "active":
                    revived = Revival(existing.status, existing.status_reason, existing.status_time)
                    # The build just produced every artifact again: the version is whole once more.
                    now = self.clock()
                    conn.execute(
                        sa.update(t.versions)
                        .where(t.versions.c.id == existing.id)
                        .values(status="active", status_time=now, status_reason="rebuilt")
                    )
                    self._event(conn, "revive", f"{draft.name}@{existing.version}", draft.author, {"at": now})
                    existing = conn.execute(sa.select(t.versions).where(t.versions.c.id == existing.id)).one()
                return _version_of(existing), False, revived
            major, minor, patch = parse_version(draft.spec_version)
            # One indexed lookup, not every version of the model: registering stays O(log n).
            v = t.versions.c
            highest = conn.execute(
                sa.select(sa.func.max(v.patch)).where(v.name == draft.name, v.major == major, v.minor == minor)
            ).scalar()
            free = 0 if highest is None else highest + 1
            if patch is None:
                patch = free
            elif conn.execute(
                sa.select(v.id).where(v.name == draft.name, v.version == f"{major}.{minor}.{patch}")
            ).first():
                raise VersionConflictError(
                    f"{draft.name}@{draft.spec_version} is already registered with other content",
                    hint=f'set version: "{major}.{minor}.{free}" for a patch, '
                    f'"{major}.{minor + 1}.0" for a minor release, or "{major}.{minor}" to allocate one',
                )
            now = self.clock()
            version = f"{major}.{minor}.{patch}"
            version_id = conn.execute(
                sa.insert(t.versions).values(
                    name=draft.name,
                    version=version,
                    major=major,
                    minor=minor,
                    patch=patch,
                    content_id=draft.content_id,
                    lock=draft.lock,
                    commit=draft.commit,
                    environment=draft.environment,
                    hermetic=draft.hermetic,
                    author=draft.author,
                    host=draft.host,
                    tool_version=draft.tool_version,
                    created=now,
                    status="active",
                    record=json.dumps(draft.record, sort_keys=True),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            if draft.artifacts:
                conn.execute(
                    sa.insert(t.artifacts),
                    [{"version_id": version_id, "name": ref, **dict(e)} for ref, e in sorted(draft.artifacts.items())],
                )
            if draft.metrics:
                conn.execute(
                    sa.insert(t.metrics),
                    [_metric_row(version_id, k, v) for k, v in sorted(draft.metrics.items())],
                )
            links = []  # the lineage rows, for the build event: replaying the log rebuilds them
            for item in draft.lineage:
                upstream = None
                if item.get("upstream_content"):
                    upstream = conn.execute(
                        sa.select(t.versions.c.id, t.versions.c.name, t.versions.c.version).where(
                            t.versions.c.content_id == item["upstream_content"]
                        )
                    ).first()
                link = {k: item[k] for k in ("kind", "name", "ref", "digest")}
                conn.execute(
                    sa.insert(t.lineage).values(version_id=version_id, upstream_id=upstream and upstream.id, **link)
                )
                links.append({**link, "upstream": upstream and f"{upstream.name}@{upstream.version}"})
            self._event(
                conn,
                "build",
                f"{draft.name}@{version}",
                draft.author,
                {
                    "content_id": draft.content_id,
                    "commit": draft.commit,
                    "metrics": dict(draft.metrics),
                    "row": _row_digest(conn, version_id),
                    "lineage": links,
                },
            )
            row = conn.execute(sa.select(t.versions).where(t.versions.c.id == version_id)).one()
            return _version_of(row), True, None

    def resolve(self, ref: str | Ref) -> ModelVersion:
        """The version a reference names; an ambiguous content prefix lists the candidates."""
        text = ref if isinstance(ref, str) else None
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        v = t.versions.c
        order = (v.major.desc(), v.minor.desc(), v.patch.desc())
        with self.engine.connect() as conn:
            short = parse_short_form(text) if text is not None and "@" not in text else None
            if short is not None and conn.execute(sa.select(v.id).where(v.name == ref.name).limit(1)).first() is None:
                ref = short  # `fraud-3f2a9c01be`, unless a model is really named so
            base = sa.select(t.versions).where(v.name == ref.name)
            if ref.kind == "latest":
                row = conn.execute(base.order_by(*order).limit(1)).first()
            elif ref.kind == "version":
                row = conn.execute(base.where(v.version == ref.value)).first()
            elif ref.kind == "minor":
                major, minor, _ = parse_version(ref.value)
                row = conn.execute(base.where(v.major == major, v.minor == minor).order_by(*order).limit(1)).first()
            else:
                row = None
                if ref.kind == "alias" or ref.kind == "content":
                    targets = self._alias_rows(conn, ref.name, ref.value)
                    if len(targets) == 1:
                        row = targets[0][0]
                    elif len(targets) > 1:
                        split = ", ".join(f"{r.version} ({w:g})" for r, w in targets)
                        raise UsageError(f"{ref} splits traffic across {split}", hint="name one version")
                if row is None and ref.kind == "content":
                    # A range, not LIKE, so that the (name, content_id) index serves it: every
                    # hex digit sorts before "~".
                    low = f"blake3:{ref.value}"
                    prefixed = base.where(v.content_id >= low, v.content_id < low + "~")
                    rows = conn.execute(prefixed.order_by(v.major, v.minor, v.patch)).all()
                    if len(rows) > 1:
                        shown = ", ".join(f"{r.version} ({short_content_id(r.name, r.content_id)})" for r in rows)
                        raise UsageError(f"{ref} is ambiguous: {shown}", hint="give more digits of the content id")
                    row = rows[0] if rows else None
        if row is None:
            known = self.names()
            hint = (
                f"`modelspec versions {ref.name}` lists its versions"
                if ref.name in known
                else (f"registered models: {', '.join(known) or 'none yet'}")
            )
            digits = too_short_prefix(ref)  # `fraud@abc`: no alias, and too short for a content-id prefix
            why = f" (a content-id prefix has at least {MIN_PREFIX} hex digits, {digits!r} has {len(digits)})"
            raise UsageError(f"no version {ref}" + (why if digits else ""), hint=hint)
        return _version_of(row)

    def names(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(t.versions.c.name).distinct().order_by(t.versions.c.name)).scalars())

    def list_versions(
        self,
        name: str,
        where: list[tuple[str, str, float]] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[ModelVersion]:
        # Joins, not correlated EXISTS: (version_id, key) is each table's primary key, so a join
        # adds no duplicates, and SQLite can start from the (key, value) index instead of
        # probing every version of the model (see benchmarks/registry_bench.py).
        v = t.versions.c
        query = sa.select(t.versions).where(v.name == name)
        for i, (metric, op, value) in enumerate(where or []):
            m = t.metrics.alias(f"m{i}")
            query = query.join(m, sa.and_(m.c.version_id == v.id, m.c.key == metric, _compare(m.c.value, op, value)))
        for i, (key, text) in enumerate((tags or {}).items()):
            tag = t.tags.alias(f"t{i}")
            query = query.join(tag, sa.and_(tag.c.version_id == v.id, tag.c.key == key, tag.c.value == text))
        query = query.order_by(v.major, v.minor, v.patch)
        with self.engine.connect() as conn:
            return [_version_of(r) for r in conn.execute(query)]

    def metrics_of(self, version_ids: list[int]) -> dict[int, dict[str, float]]:
        found: dict[int, dict[str, float]] = {i: {} for i in version_ids}
        with self.engine.connect() as conn:
            m = t.metrics.c
            for chunk in _chunks(version_ids):
                for version_id, key, value, is_integer in conn.execute(
                    sa.select(m.version_id, m.key, m.value, m.is_integer).where(m.version_id.in_(chunk))
                ):
                    found[version_id][key] = int(value) if is_integer else value
        return found

    def metric_names(self, name: str) -> list[str]:
        """Every metric any version of model NAME recorded, sorted."""
        m, v = t.metrics.c, t.versions.c
        query = sa.select(m.key).distinct().join_from(t.metrics, t.versions, m.version_id == v.id).where(v.name == name)
        with self.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def artifacts_of(self, version: ModelVersion) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.artifacts).where(t.artifacts.c.version_id == version.id))
            return {r.name: {"type": r.type, "digest": r.digest, "size": r.size} for r in rows}

    def tags_of(self, version: ModelVersion) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.tags).where(t.tags.c.version_id == version.id))
            return {r.key: r.value for r in rows}

    def aliases_of(self, name: str) -> dict[int, list[str]]:
        """version id → the aliases pointing at it."""
        found: dict[int, list[str]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(sa.select(t.aliases).where(t.aliases.c.name == name).order_by(t.aliases.c.alias)):
                found.setdefault(r.version_id, []).append(r.alias)
        return found

    def tag(self, ref: str, key: str, value: str, actor: str) -> ModelVersion:
        version = self.resolve(ref)
        with self._write() as conn:
            conn.execute(sa.delete(t.tags).where(t.tags.c.version_id == version.id, t.tags.c.key == key))
            conn.execute(sa.insert(t.tags).values(version_id=version.id, key=key, value=value))
            self._event(conn, "tag", version.ref, actor, {"key": key, "value": value})
        return version

    # -- aliases -------------------------------------------------------------------------

    def _alias_rows(self, conn: sa.Connection, name: str, alias: str) -> list[tuple[Any, float]]:
        query = (
            sa.select(t.versions, t.aliases.c.weight)
            .join(t.aliases, t.aliases.c.version_id == t.versions.c.id)
            .where(t.aliases.c.name == name, t.aliases.c.alias == alias)
            .order_by(t.versions.c.major, t.versions.c.minor, t.versions.c.patch)
        )
        return [(r, r.weight) for r in conn.execute(query)]

    def alias_targets(self, name: str, alias: str) -> list[tuple[ModelVersion, float]]:
        with self.engine.connect() as conn:
            return [(_version_of(r), w) for r, w in self._alias_rows(conn, name, alias)]

    def alias_names(self, name: str) -> list[str]:
        with self.engine.connect() as conn:
            query = sa.select(t.aliases.c.alias).where(t.aliases.c.name == name).distinct().order_by(t.aliases.c.alias)
            return list(conn.execute(query).scalars())

    def _move_alias(
        self, conn: sa.Connection, name: str, alias: str, after: list[tuple[int, float]], action: str, actor: str
    ) -> list[list[Any]]:
        before = [[r.version, w] for r, w in self._alias_rows(conn, name, alias)]
        conn.execute(sa.delete(t.aliases).where(t.aliases.c.name == name, t.aliases.c.alias == alias))
        for version_id, weight in after:
            conn.execute(sa.insert(t.aliases).values(name=name, alias=alias, version_id=version_id, weight=weight))
        after_shown = [[r.version, w] for r, w in self._alias_rows(conn, name, alias)]
        now = self.clock()
        conn.execute(
            sa.insert(t.alias_history).values(
                name=name,
                alias=alias,
                time=now,
                actor=actor,
                action=action,
                before=json.dumps(before),
                after=json.dumps(after_shown),
            )
        )
        self._event(conn, action, f"{name}@{alias}", actor, {"from": before, "to": after_shown, "at": now})
        return after_shown

    def promote(self, ref: str, alias: str, actor: str, weight: float | None = None) -> list[list[Any]]:
        """Point `alias` at a version; with `weight`, add it beside the current targets (a
        canary) and scale the others so that the weights sum to 1."""
        check_alias_name(parse_ref(ref).name, alias)
        if weight is not None and not 0 < weight < 1:  # checked even when the alias is new
            raise UsageError("--weight must be between 0 and 1 (exclusive)")
        version = self.resolve(ref)
        if version.status != "active":
            raise UsageError(f"{version.ref} is {version.status}: its artifacts are gone, it cannot be promoted")
        with self._write() as conn:
            current = [(r.id, w) for r, w in self._alias_rows(conn, version.name, alias) if r.id != version.id]
            if weight is None or not current:
                after = [(version.id, 1.0)]
            else:
                total = sum(w for _, w in current)
                after = [(i, round(w / total * (1 - weight), 6)) for i, w in current] + [(version.id, weight)]
            return self._move_alias(conn, version.name, alias, after, "promote", actor)

    def rollback(self, name: str, alias: str, actor: str) -> list[list[Any]]:
        """Point `alias` back at what it pointed to before its last move."""
        with self._write() as conn:
            last = conn.execute(
                sa.select(t.alias_history)
                .where(t.alias_history.c.name == name, t.alias_history.c.alias == alias)
                .order_by(t.alias_history.c.id.desc())
                .limit(1)
            ).first()
            if last is None:
                raise UsageError(f"{name}@{alias} has never been moved: there is nothing to roll back to")
            previous = json.loads(last.before)
            if not previous:
                raise UsageError(f"{name}@{alias} pointed at nothing before its last promotion")
            after = []
            for version, weight in previous:
                row = conn.execute(
                    sa.select(t.versions).where(t.versions.c.name == name, t.versions.c.version == version)
                ).one()
                if row.status != "active":
                    raise UsageError(
                        f"cannot roll back {name}@{alias} to {name}@{version}: its artifacts were retired "
                        f"({row.status_reason or row.status})",
                        hint=revival_hint(f"{name}@{version}", row.commit, json.loads(row.record).get("spec", "")),
                    )
                after.append((row.id, weight))
            return self._move_alias(conn, name, alias, after, "rollback", actor)

    def remove_alias(self, name: str, alias: str, actor: str) -> list[list[Any]]:
        """Remove NAME@ALIAS; returns the [version, weight] pairs it pointed to. Its history
        stays, with this removal as the newest move, so a rollback restores it."""
        with self._write() as conn:
            before = [[r.version, w] for r, w in self._alias_rows(conn, name, alias)]
            if not before:
                query = sa.select(t.aliases.c.alias).where(t.aliases.c.name == name).distinct()
                known = sorted(conn.execute(query).scalars())
                raise UsageError(f"no alias {name}@{alias}", hint=f"aliases of {name}: {', '.join(known) or 'none'}")
            conn.execute(sa.delete(t.aliases).where(t.aliases.c.name == name, t.aliases.c.alias == alias))
            now = self.clock()
            conn.execute(
                sa.insert(t.alias_history).values(
                    name=name,
                    alias=alias,
                    time=now,
                    actor=actor,
                    action="alias.rm",
                    before=json.dumps(before),
                    after="[]",
                )
            )
            self._event(conn, "alias.rm", f"{name}@{alias}", actor, {"from": before, "at": now})
        return before

    def alias_history(self, name: str, alias: str) -> list[dict[str, Any]]:
        query = (
            sa.select(t.alias_history)
            .where(t.alias_history.c.name == name, t.alias_history.c.alias == alias)
            .order_by(t.alias_history.c.id)
        )
        with self.engine.connect() as conn:
            return [
                {
                    "time": r.time,
                    "actor": r.actor,
                    "action": r.action,
                    "from": json.loads(r.before),
                    "to": json.loads(r.after),
                }
                for r in conn.execute(query)
            ]

    # -- retention -----------------------------------------------------------------------

    def pin(self, ref: str, actor: str, pinned: bool = True) -> tuple[ModelVersion, bool]:
        """Pin (or unpin) a version; False when it already was (or was not) pinned, which
        changes nothing and writes no audit event."""
        version = self.resolve(ref)
        if pinned and version.status != "active":
            raise UsageError(
                f"{version.ref} cannot be pinned: it was {version.status} ({version.status_reason}) and its "
                "artifacts are gone",
                hint=revival_hint(version.ref, version.commit, version.record.get("spec", "")),
            )
        with self._write() as conn:
            was = conn.execute(sa.select(t.pins.c.version_id).where(t.pins.c.version_id == version.id)).first()
            if (was is not None) == pinned:
                return version, False
            conn.execute(sa.delete(t.pins).where(t.pins.c.version_id == version.id))
            now = self.clock()
            if pinned:
                conn.execute(sa.insert(t.pins).values(version_id=version.id, time=now, actor=actor))
            self._event(conn, "pin" if pinned else "unpin", version.ref, actor, {"at": now} if pinned else {})
        return version, True

    def pins_of(self, version_ids: list[int]) -> dict[int, dict[str, Any]]:
        """version id → when and by whom it was pinned, for the pinned ones among them."""
        found: dict[int, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(version_ids):
                for r in conn.execute(sa.select(t.pins).where(t.pins.c.version_id.in_(chunk))):
                    found[r.version_id] = {"time": r.time, "actor": r.actor}
        return found

    def retention_facts(self) -> dict[str, list[VersionFacts]]:
        """Every version of every model with what retention looks at, in a few queries."""
        v = t.versions.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(v.id, v.name, v.version, v.created, v.status)).all()
            metrics: dict[int, dict[str, float]] = {}
            for r in conn.execute(sa.select(t.metrics)):
                metrics.setdefault(r.version_id, {})[r.key] = int(r.value) if r.is_integer else r.value
            aliases: dict[int, list[str]] = {}
            for r in conn.execute(sa.select(t.aliases)):
                aliases.setdefault(r.version_id, []).append(r.alias)
            previous: dict[tuple[str, str], list[str]] = {}
            newest_move = (
                sa.select(
                    t.alias_history.c.name, t.alias_history.c.alias, sa.func.max(t.alias_history.c.id).label("id")
                )
                .group_by(t.alias_history.c.name, t.alias_history.c.alias)
                .subquery()
            )
            for r in conn.execute(
                sa.select(t.alias_history).join(newest_move, newest_move.c.id == t.alias_history.c.id)
            ):
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

    def retire(self, reasons: Mapping[int, str], actor: str) -> list[int]:
        """Mark versions retired (their artifacts are about to go); metadata stays forever.
        A version an alias points to now (promoted since the plan was made) is never
        retired: the ids skipped for that reason are returned."""
        now = self.clock()
        served: list[int] = []
        with self._write() as conn:
            for version_id, reason in sorted(reasons.items()):
                row = conn.execute(sa.select(t.versions).where(t.versions.c.id == version_id)).one()
                if row.status != "active":
                    continue
                if conn.execute(sa.select(t.aliases.c.alias).where(t.aliases.c.version_id == version_id)).first():
                    served.append(version_id)
                    continue
                conn.execute(
                    sa.update(t.versions)
                    .where(t.versions.c.id == version_id)
                    .values(status="retired", status_time=now, status_reason=reason)
                )
                self._event(conn, "retire", f"{row.name}@{row.version}", actor, {"reason": reason, "at": now})
        return served

    def versions_by_status(self, status: str) -> list[ModelVersion]:
        with self.engine.connect() as conn:
            return [_version_of(r) for r in conn.execute(sa.select(t.versions).where(t.versions.c.status == status))]

    # -- reproductions --------------------------------------------------------------------

    def record_reproduction(self, version: ModelVersion, verdict: str, details: Mapping[str, Any], actor: str) -> None:
        with self._write() as conn:
            now = self.clock()
            conn.execute(
                sa.insert(t.reproductions).values(
                    version_id=version.id,
                    time=now,
                    actor=actor,
                    verdict=verdict,
                    details=json.dumps(details, sort_keys=True),
                )
            )
            self._event(conn, "reproduce", version.ref, actor, {"verdict": verdict, **details, "at": now})

    def reproductions_of(self, version: ModelVersion) -> list[dict[str, Any]]:
        query = (
            sa.select(t.reproductions).where(t.reproductions.c.version_id == version.id).order_by(t.reproductions.c.id)
        )
        with self.engine.connect() as conn:
            return [
                {"time": r.time, "actor": r.actor, "verdict": r.verdict, "details": json.loads(r.details)}
                for r in conn.execute(query)
            ]

    # -- lineage -------------------------------------------------------------------------

    def lineage(self, version: ModelVersion) -> dict[str, Any]:
        v = t.versions
        with self.engine.connect() as conn:
            upstream = []
            for r in conn.execute(sa.select(t.lineage).where(t.lineage.c.version_id == version.id)):
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
                    .where(t.lineage.c.upstream_id == version.id)
                    .order_by(v.c.name, v.c.major, v.c.minor, v.c.patch)
                )
            ]
        return {"upstream": upstream, "downstream": downstream}


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


_IMMUTABLE = (
    "name",
    "version",
    "content_id",
    "lock",
    "commit",
    "environment",
    "hermetic",
    "author",
    "host",
    "tool_version",
    "created",
    "record",
)


def _row_digest(conn: sa.Connection, version_id: int) -> str:
    """The digest of what a version recorded for ever (not its retention status)."""
    v = t.versions.c
    row = conn.execute(sa.select(*(getattr(v, c) for c in _IMMUTABLE)).where(v.id == version_id)).one()
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
            "row": [bool(x) if c == "hermetic" else x for c, x in zip(_IMMUTABLE, row, strict=True)],
            "artifacts": [list(a) for a in artifacts],
            # An integer digests as 12, a float as 12.0: a flipped flag is an edit, and the
            # digests that versions before schema 5 recorded (all floats) still hold.
            "metrics": [[key, int(value) if is_integer else value] for key, value, is_integer in metrics],
        }
    )


def _metric_row(version_id: int, key: str, value: float) -> dict[str, Any]:
    """An integer keeps its kind (flat.flatten_metrics left only those a float holds exactly)."""
    is_integer = isinstance(value, int) and not isinstance(value, bool)
    return {"version_id": version_id, "key": key, "value": float(value), "is_integer": is_integer}


_STORAGE_HINT = (
    "free space (`modelspec gc` frees what retention lets go, even on a full disk), or check that the store "
    "directory is writable (MODELSPEC_HOME moves it)"
)


def _compare(column: Any, op: str, value: float) -> Any:
    return {
        ">": column > value,
        ">=": column >= value,
        "<": column < value,
        "<=": column <= value,
        "==": column == value,
        "!=": column != value,
    }[op]


def _chunks(items: list[int], size: int = 500) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL, a generous busy timeout, and `BEGIN IMMEDIATE` so writers queue instead of failing."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")  # first: switching to WAL takes a lock too
        with contextlib.suppress(sqlite3.OperationalError):  # a read-only store can still be read
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        writing = conn.get_execution_options().get("modelspec_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
