"""What only PostgreSQL needs. Writes run at READ COMMITTED and first take a
transaction-scoped advisory lock, the one lock of this registry's database: two builds then
allocate version numbers and append audit events one after the other (each statement after
the lock sees the other's commit), as `BEGIN IMMEDIATE` makes them on SQLite. Reads run at
REPEATABLE READ, so that what one read transaction sees is of one instant, as on SQLite.

psycopg is imported by SQLAlchemy only when a postgresql URL is opened."""

from __future__ import annotations

import sqlalchemy as sa

# The advisory lock's key: any constant bigint, the same in every modelspec (it is per
# database, so registries on one server do not share it). "modelspec" in ASCII.
WRITE_LOCK = 0x6D6F64656C73706563 & 0x7FFFFFFFFFFFFFFF

CONNECT_TIMEOUT_S = 10  # an unreachable host is an error in seconds, not minutes


def create_engine(url: sa.URL) -> sa.Engine:
    # pre_ping: a pooled connection that a server restart closed is replaced, not reused.
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})


def begin_write(conn: sa.Connection) -> None:
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})


def begin_read(conn: sa.Connection) -> None:
    conn.execution_options(isolation_level="REPEATABLE READ")
