"""What only SQLite needs: WAL, a busy timeout, foreign keys, full sync, and `BEGIN
IMMEDIATE` for writes, so that two concurrent builds queue for the write lock and serialize
their version allocation instead of failing or colliding; and a look into a registry file
that opens nothing for writing. The one module that uses `sqlite3` directly."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa


def configure(engine: sa.Engine) -> None:
    import sqlalchemy as sa  # here: `has_versions_table` is used where SQLAlchemy is not loaded yet

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


def has_versions_table(path: Path) -> bool:
    """Does the registry file hold a `versions` table? Read-only; a file SQLite cannot read
    counts as yes, so that opening the registry says what is wrong with it."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return bool(db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'versions'").fetchone()[0])
    except sqlite3.Error:
        return True
