"""A whole registry copied into another database (SQLite to PostgreSQL or back), and what a
registry holds (`registry info`).

Every row keeps its id, so foreign keys, the audit chain (whose digests cover sequence
numbers and payloads naming versions) and `audit --verify` hold on the copy unchanged. The
copy keeps the registry's identity too: it *is* the same registry moved, so a store that
recorded it recognises the copy. The source is read in one read transaction (one instant
of a registry others may be writing to); the target is written in one write transaction
that first checks it is empty, so a failure leaves it as it was.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..errors import UsageError
from . import tables as t
from .audit import Write

CHUNK = 1000  # rows per INSERT: under every backend's parameter limit
# What `registry info` and `registry copy` count, in the order they are shown.
COUNTED = ("versions", "aliases", "alias_history", "tags", "reproductions", "pins", "gate_results", "events")


def counts(conn: sa.Connection) -> dict[str, int]:
    """Rows of each table `COUNTED`, and the number of models."""
    found = {name: int(conn.execute(sa.select(sa.func.count()).select_from(t.metadata.tables[name])).scalar() or 0)
             for name in COUNTED}
    found["models"] = int(conn.execute(sa.select(sa.func.count(sa.distinct(t.versions.c.name)))).scalar() or 0)
    return found


def holds_anything(conn: sa.Connection) -> bool:
    """Any version or event: an identity and a schema alone are an empty registry."""
    return any(conn.execute(sa.select(table).limit(1)).first() for table in (t.versions, t.events, t.alias_history))


def copy(source: sa.Connection, target: Write, shown_target: str) -> dict[str, int]:
    """Every row of every table from `source` into the empty registry of `target`; the counts."""
    if holds_anything(target.conn):
        found = counts(target.conn)
        raise UsageError(
            f"the registry {shown_target} is not empty ({found['versions']} versions, {found['events']} audit events)",
            hint="copy into a new, empty database (or an empty SQLite file): a copy never merges two registries",
        )
    for table in t.metadata.sorted_tables:  # parents before the rows that name them
        if table is t.meta:
            continue
        primary = list(table.primary_key.columns) or list(table.columns)
        # Streamed (a server-side cursor on PostgreSQL): a registry is not held in memory whole.
        rows = source.execution_options(stream_results=True).execute(sa.select(table).order_by(*primary))
        while batch := rows.fetchmany(CHUNK):
            target.conn.execute(sa.insert(table), [dict(row._mapping) for row in batch])
    # The identity and the audit head move with the rows; the schema version is the target's own.
    moved = [r for r in source.execute(sa.select(t.meta)) if r.key != "schema_version"]
    target.conn.execute(sa.delete(t.meta).where(t.meta.c.key.in_([r.key for r in moved])))
    if moved:
        target.conn.execute(sa.insert(t.meta), [{"key": r.key, "value": r.value} for r in moved])
    if target.conn.dialect.name == "postgresql":
        advance_sequences(target.conn)
    return counts(target.conn)


def advance_sequences(conn: sa.Connection) -> None:
    """Rows inserted with their ids leave a table's sequence behind (the next version would
    get id 1): each is moved past the highest id copied."""
    for table in t.metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None:
            continue
        conn.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                f"COALESCE((SELECT max({column.name}) FROM {table.name}), 0) + 1, false)"
            )
        )


def info(conn: sa.Connection) -> dict[str, Any]:
    """Schema version, identity, audit head and counts of a registry."""
    head = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "audit_head")).scalar()
    return {
        "schema_version": t.schema_version(conn),
        "registry_id": t.identity(conn),
        "audit_head": int(str(head).split()[0]) if head else 0,
        "counts": counts(conn),
    }
