"""The model registry: immutable versions, aliases with history, tags, lineage and the
audit log, through SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL for a team (a
`registry:` URL in modelspec.yaml, or MODELSPEC_REGISTRY_URL).

`Registry` is the façade: it owns the engine, opens the read and write transactions, checks
that the store recognises the registry, and turns the database's failures into a
`StoreError` in one place (`_translated`). What each call does lives in the module of its
concern: `versions` (the record and its columns), `queries`, `aliases`, `status` (retire,
revive, pin), `facts` (what retention sees), `lineage` (and reproductions), `audit` (the
log) and `verify` (`audit --verify`).

Every write is one transaction that first takes the registry's write lock (`BEGIN
IMMEDIATE` on SQLite, an advisory lock on PostgreSQL: see `backends`), so two concurrent
builds serialize their version allocation instead of failing or colliding.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from ..errors import StoreError
from ..spec.refs import Ref
from . import aliases, audit, backends, gates, lineage, queries, status, transfer, verify, versions
from . import tables as t
from .aliases import primary_target
from .facts import VersionFacts, retention_facts
from .head import RegistryHead, head_problem, mismatch, read_head, record_head
from .status import Revival, retired_error
from .versions import MARKS, ModelVersion, VersionConflictError, VersionDraft

# What other modules import from here; each is defined in the module of its concern.
__all__ = [
    "MARKS",
    "ModelVersion",
    "Registry",
    "Revival",
    "VersionConflictError",
    "VersionDraft",
    "primary_target",
    "retired_error",
]

_STORAGE_HINT = (
    "free space (`modelspec gc` frees what retention lets go, even on a full disk), or check that the store "
    "directory is writable (MODELSPEC_HOME moves it)"
)


class Registry:
    """Use as `with Registry.at(path) as registry:`; leaving the block closes the engine."""

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
        self.head_file = head_file  # the store's record of this registry (registry/head.py)
        self.engine = backends.create_engine(url)
        self._current = False  # the schema is known to be this modelspec's (opened or migrated)
        try:
            self._open(guard, migrate)
        except BaseException:
            self.engine.dispose()  # a refused registry leaves no connection to its server open
            raise

    def _open(self, guard: bool, migrate: bool) -> None:
        # Reading first: a full or read-only disk can still be read.
        recorded = self._recorded_head()
        with self._translated("opened"), self.engine.connect() as conn:
            # Before a migration could make an emptied registry look new. Unguarded, a
            # registry the store does not recognise is only read (verify_audit says why).
            foreign = self._head_problem(conn, recorded)
            current = t.schema_version(conn) == t.SCHEMA_VERSION
            if foreign and guard:
                raise mismatch(self.shown, self.head_file, *foreign)  # type: ignore[arg-type]
        self.outdated = not current and not foreign
        if self.outdated and migrate:
            with self._write() as w:
                t.migrate(w.conn)
            self.outdated = False
            current = True
        self._current = current

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

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @property
    def backend(self) -> str:
        """sqlite or postgresql."""
        return self.engine.dialect.name

    @property
    def shown(self) -> str:
        """The registry as a person names it: its file, or its URL without a password."""
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database:
            return database.removeprefix("file:").split("?")[0]
        return backends.shown(self.engine.url)

    @property
    def url_shown(self) -> str:
        """The registry's URL as `registry:` would name it, without a password."""
        return f"sqlite:///{self.shown}" if self.backend == "sqlite" else self.shown

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """The one place the database's failures (a full disk, a read-only or damaged file)
        become a StoreError naming the registry; nothing above sees SQLAlchemy's errors."""
        try:
            yield
        except sa.exc.DBAPIError as exc:
            if self.backend != "sqlite":
                raise backends.server_error(self.engine.url, doing, exc) from None
            raise StoreError(f"the registry ({self.url}) cannot be {doing}: {exc.orig}", hint=_STORAGE_HINT) from None

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """One read transaction: what it reads is of one instant."""
        with self._translated("read"), self.engine.connect() as conn:
            backends.begin_read(conn)
            yield conn

    @contextmanager
    def _write(self) -> Iterator[audit.Write]:
        """One write transaction; a full disk or a read-only file is a clear error. Once it
        commits, the store records the registry's new audit head."""
        with self._translated("written"), self.engine.connect() as conn:
            conn.execution_options(modelspec_write=True)
            with conn.begin():
                backends.begin_write(conn)
                if self._current:
                    identity: str | None = t.identity(conn, create=True, known=True)
                else:
                    identity = t.identity(conn, create=True) if t.schema_version(conn) else None
                write = audit.Write(conn, self.clock)
                yield write
                identity = identity or t.identity(conn, create=True)  # the migration made the registry
        if write.head is not None and self.head_file is not None and identity is not None:
            record_head(self.head_file, RegistryHead(identity, *write.head))

    def _recorded_head(self) -> RegistryHead | None:
        """The store's record of its registry. Read it BEFORE the database: the record only
        moves after a commit, so a snapshot taken later always reaches it, while a snapshot
        taken first can predate a commit whose record is then read (two processes at once)."""
        return read_head(self.head_file) if self.head_file is not None else None

    def _head_problem(self, conn: sa.Connection, recorded: RegistryHead | None) -> tuple[str, RegistryHead] | None:
        """Why `recorded` (see _recorded_head) does not match this registry, or None."""
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

    # -- the registry as a whole -----------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Backend, URL (without a password), schema version, identity, audit head, counts."""
        with self._read() as conn:
            return {"backend": self.backend, "url": self.url_shown, **transfer.info(conn)}

    def copy_to(self, url: str) -> tuple[dict[str, Any], list[str]]:
        """Copy every row into the empty registry at `url` (made there if need be): what the
        copy holds (`info`), and what `audit --verify` finds wrong with it ([] when intact)."""
        with Registry(url, clock=self.clock) as target:
            with self._read() as source, target._write() as w:
                transfer.copy(source, w, target.shown)
            return target.info(), target.audit_problems()

    # -- audit -----------------------------------------------------------------------------

    def record_event(self, kind: str, subject: str, actor: str, payload: Mapping[str, Any]) -> None:
        with self._write() as w:
            w.event(kind, subject, actor, payload)

    def events(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The log in order; with `limit`, only the newest events (read from the end, not all)."""
        with self._read() as conn:
            return audit.events(conn, limit)

    def verify_audit(self) -> str:
        """'' if the audit log is intact and the tables agree with it, else what was
        tampered with (each difference, separated by '; ')."""
        return "; ".join(self.audit_problems())

    def audit_problems(self) -> list[str]:
        """What was tampered with (see verify.audit_problems), and whether the store does not
        recognise this registry. [] when intact."""
        recorded = self._recorded_head()
        with self._read() as conn:
            foreign = self._head_problem(conn, recorded)
            unrecognised = foreign and f"the store does not recognise this registry: {foreign[0]} ({self.head_file})"
            return verify.audit_problems(conn, unrecognised or "")

    # -- versions --------------------------------------------------------------------------

    def register(self, draft: VersionDraft) -> tuple[ModelVersion, bool, Revival | None]:
        """Record a new version, or find the one that already has this content (False); a
        retired one is revived, and the third item says what it was."""
        with self._write() as w:
            existing = versions.by_content(w.conn, draft.name, draft.content_id)
            if existing is not None and existing.status == "active":
                return existing, False, None
            if existing is not None:
                revived, was = status.revive(w, existing, draft.author)
                return revived, False, was
            version = versions.insert(w, draft)
            links = lineage.record(w.conn, version.id, draft.lineage)
            payload = {
                "content_id": draft.content_id,
                "commit": draft.commit,
                "metrics": dict(draft.metrics),
                "row": versions.row_digest(w.conn, version.id),
                "lineage": links,
            }
            w.event("build", version.ref, draft.author, payload)
            return version, True, None

    def resolve(self, ref: str | Ref) -> ModelVersion:
        """The version a reference names; an ambiguous content prefix lists the candidates."""
        with self._read() as conn:
            return queries.resolve(conn, ref)

    def names(self) -> list[str]:
        with self._read() as conn:
            return queries.names(conn)

    def has_model(self, name: str) -> bool:
        """Whether a version of model NAME is registered: one index probe, not `names()`."""
        with self._read() as conn:
            return queries.has_model(conn, name)

    def list_versions(
        self,
        name: str,
        where: list[tuple[str, str, float]] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[ModelVersion]:
        with self._read() as conn:
            return queries.list_versions(conn, name, where, tags)

    def versions_page(
        self,
        name: str,
        where: list[tuple[str, str, float]] | None,
        tags: Mapping[str, str] | None,
        page: queries.Page,
        metric: str | None = None,
        descending: bool = True,
    ) -> tuple[list[ModelVersion], bool, bool]:
        """A page of `list_versions` by keyset (see queries.versions_page)."""
        with self._read() as conn:
            return queries.versions_page(conn, name, where, tags, page, metric, descending)

    def count_versions(
        self, name: str, where: list[tuple[str, str, float]] | None = None, tags: Mapping[str, str] | None = None
    ) -> int:
        with self._read() as conn:
            return queries.count_versions(conn, name, where, tags)

    def versions_by_status(self, status: str) -> list[ModelVersion]:
        with self._read() as conn:
            return queries.by_status(conn, status)

    def metrics_of(self, version_ids: list[int]) -> dict[int, dict[str, float]]:
        with self._read() as conn:
            return queries.metrics_of(conn, version_ids)

    def metric_names(self, name: str) -> list[str]:
        """Every metric any version of model NAME recorded, sorted."""
        with self._read() as conn:
            return queries.metric_names(conn, name)

    def unknown_metrics(self, name: str, metrics: list[str]) -> list[str]:
        """Those of `metrics` that no version of model NAME recorded."""
        with self._read() as conn:
            return queries.unknown_metrics(conn, name, metrics)

    def artifacts_of(self, version: ModelVersion) -> dict[str, dict[str, Any]]:
        with self._read() as conn:
            return queries.artifacts_of(conn, version.id)

    def tags_of(self, version: ModelVersion) -> dict[str, str]:
        with self._read() as conn:
            return queries.tags_of(conn, version.id)

    def tag(self, ref: str, key: str, value: str, actor: str) -> ModelVersion:
        version = self.resolve(ref)
        with self._write() as w:
            versions.tag(w, version, key, value, actor)
        return version

    # -- aliases ---------------------------------------------------------------------------

    def aliases_of(self, name: str) -> dict[int, list[str]]:
        """version id → the aliases pointing at it."""
        with self._read() as conn:
            return queries.aliases_of(conn, name)

    def alias_targets(self, name: str, alias: str) -> list[tuple[ModelVersion, float]]:
        with self._read() as conn:
            return queries.targets(conn, name, alias)

    def alias_names(self, name: str) -> list[str]:
        with self._read() as conn:
            return queries.alias_names(conn, name)

    def promote(
        self, ref: str, alias: str, actor: str, weight: float | None = None, force_reason: str | None = None
    ) -> list[list[Any]]:
        """Point `alias` at a version; with `weight`, add it beside the current targets (a
        canary) and scale the others so that the weights sum to 1."""
        aliases.check_promotion(ref, alias, weight)
        version = self.resolve(ref)
        aliases.check_promotable(version)
        with self._write() as w:
            gates.accept(w, version, alias, actor, force_reason)
            return aliases.promote(w, version, alias, actor, weight)

    def rollback(self, name: str, alias: str, actor: str) -> list[list[Any]]:
        """Point `alias` back at what it pointed to before its last move."""
        with self._write() as w:
            return aliases.rollback(w, name, alias, actor)

    def remove_alias(self, name: str, alias: str, actor: str) -> list[list[Any]]:
        """Remove NAME@ALIAS; returns the [version, weight] pairs it pointed to. Its history
        stays, with this removal as the newest move, so a rollback restores it."""
        with self._write() as w:
            return aliases.remove(w, name, alias, actor)

    def alias_history(self, name: str, alias: str, newest: int | None = None) -> list[dict[str, Any]]:
        with self._read() as conn:
            return aliases.history(conn, name, alias, newest)

    # -- retention -------------------------------------------------------------------------

    def pin(self, ref: str, actor: str, pinned: bool = True) -> tuple[ModelVersion, bool]:
        """Pin (or unpin) a version; False when it already was (or was not) pinned, which
        changes nothing and writes no audit event."""
        version = self.resolve(ref)
        if pinned:
            status.check_pinnable(version)
        with self._write() as w:
            return version, status.pin(w, version, actor, pinned)

    def pins_of(self, version_ids: list[int]) -> dict[int, dict[str, Any]]:
        """version id → when and by whom it was pinned, for the pinned ones among them."""
        with self._read() as conn:
            return status.pins_of(conn, version_ids)

    def retention_facts(self) -> dict[str, list[VersionFacts]]:
        """Every version of every model with what retention looks at, in a few queries."""
        with self._read() as conn:
            return retention_facts(conn)

    def retire(self, reasons: Mapping[int, str], actor: str) -> list[int]:
        """Mark versions retired; the ids an alias points to now are skipped and returned."""
        with self._write() as w:
            return status.retire(w, reasons, actor)

    # -- lineage and reproductions ---------------------------------------------------------

    def lineage(self, version: ModelVersion) -> dict[str, Any]:
        with self._read() as conn:
            return lineage.lineage(conn, version.id)

    def record_reproduction(self, version: ModelVersion, verdict: str, details: Mapping[str, Any], actor: str) -> None:
        with self._write() as w:
            lineage.record_reproduction(w, version.id, version.ref, verdict, details, actor)

    def reproductions_of(self, version: ModelVersion) -> list[dict[str, Any]]:
        with self._read() as conn:
            return lineage.reproductions(conn, version.id)

    def judge_gates(self, version: ModelVersion, of: Iterable[gates.Check], by: str, always: bool) -> gates.GateVerdict:
        with self._write() as w:
            return gates.judge(w, version, of, by, always)

    def read(self, query: Callable[..., Any], *args: Any) -> Any:  # gates.latest, series.metric_series...
        with self._read() as conn:
            return query(conn, *args)

