"""A registry's database: opening it (a file, read-only, immutable on a full disk, or a
server's URL), the check that the store recognises it, migrating an older schema, the read
and write transactions, and the one place the database's failures become a `StoreError`.

It is apart from the façade (`registry.Registry`, which is a `Database`) because it is how
every call reaches the database whatever the call does: each of the façade's methods is one
transaction of this class around a function of the module of its concern.

Every write is one transaction that first takes the registry's write lock (`BEGIN
IMMEDIATE` on SQLite, an advisory lock on PostgreSQL: see `backends`), so two concurrent
builds serialize their version allocation instead of failing or colliding.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa

from ..errors import StoreError
from . import audit, backends
from . import tables as t
from .head import RegistryHead, head_problem, mismatch, read_head, record_head

_STORAGE_HINT = (
    "free space (`modelspec gc` frees what retention lets go, even on a full disk), or check that the store "
    "directory is writable (MODELSPEC_HOME moves it)"
)


class Database:
    """A registry's engine and transactions; `registry.Registry` adds what each call does."""

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
    def at(cls, path: Path, head_file: Path | None = None, guard: bool = True, read_only: bool = False) -> Self:
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
    def _read_only(cls, path: Path, head_file: Path | None, guard: bool) -> Self:
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

    def __enter__(self) -> Self:
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
