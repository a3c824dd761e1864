"""The registry's tables (SQLAlchemy Core) and the migrations between schema versions.

A registry records its schema version in `meta`; opening an older registry applies the
missing migrations in one transaction, so a newer modelspec reads what an older one made.
Version 1 was the first release; version 2 added tags and traffic weights on aliases;
version 3 added the results of reproductions; version 4 added pins; version 5 marks the
metrics that are integers (epochs 12, not 12.0); version 6 added the results of quality gates.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa

SCHEMA_VERSION = 6

# Strings compare byte by byte on every backend: PostgreSQL's default collation follows the
# server's locale, which would reorder names and break content-id prefix ranges ("~" sorts
# after every hex digit only in byte order).
String = sa.String().with_variant(sa.String(collation="C"), "postgresql")
# A byte count: PostgreSQL's INTEGER stops at 2 GiB (SQLite's holds 64 bits).
Size = sa.Integer().with_variant(sa.BigInteger(), "postgresql")

metadata = sa.MetaData()

meta = sa.Table("meta", metadata, sa.Column("key", String, primary_key=True), sa.Column("value", String))

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", String, nullable=False),
    sa.Column("version", String, nullable=False),
    sa.Column("major", sa.Integer, nullable=False),
    sa.Column("minor", sa.Integer, nullable=False),
    sa.Column("patch", sa.Integer, nullable=False),
    sa.Column("content_id", String, nullable=False),
    sa.Column("lock", String, nullable=False),  # digest of the lock object in the store
    sa.Column("commit", String, nullable=False),
    sa.Column("environment", String),
    sa.Column("hermetic", sa.Boolean, nullable=False),
    sa.Column("author", String, nullable=False),
    sa.Column("host", String, nullable=False),
    sa.Column("tool_version", String, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("status", String, nullable=False, server_default="active"),
    sa.Column("status_time", sa.Float),
    sa.Column("status_reason", String),
    sa.Column("record", sa.Text, nullable=False),  # JSON: params, data, stages, metrics
    sa.UniqueConstraint("name", "version"),
    sa.UniqueConstraint("name", "content_id"),
)
sa.Index("versions_name_order", versions.c.name, versions.c.major, versions.c.minor, versions.c.patch)
sa.Index("versions_content", versions.c.content_id)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("name", String, primary_key=True),
    sa.Column("type", String, nullable=False),
    sa.Column("digest", String, nullable=False),
    sa.Column("size", Size, nullable=False),
)

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("key", String, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),  # what --where compares, integers included
    # The metrics file held an integer: shown and returned as one. (Absent before version 5.)
    sa.Column("is_integer", sa.Boolean, nullable=False, server_default=sa.false()),
)
sa.Index("metrics_key_value", metrics.c.key, metrics.c.value)

lineage = sa.Table(
    "lineage",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False, index=True),
    sa.Column("kind", String, nullable=False),  # data | spec | version
    sa.Column("name", String, nullable=False),  # the input's name in the spec
    sa.Column("ref", String, nullable=False),  # path, spec name, or name@version
    sa.Column("digest", String, nullable=False),
    sa.Column("upstream_id", sa.Integer, sa.ForeignKey("versions.id"), index=True),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("name", String, primary_key=True),
    sa.Column("alias", String, primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("weight", sa.Float, nullable=False, server_default="1.0"),
)

alias_history = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", String, nullable=False),
    sa.Column("alias", String, nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("actor", String, nullable=False),
    sa.Column("action", String, nullable=False),  # promote | rollback | alias.rm
    sa.Column("before", sa.Text, nullable=False),  # JSON [[version, weight], ...]
    sa.Column("after", sa.Text, nullable=False),
)
sa.Index("alias_history_lookup", alias_history.c.name, alias_history.c.alias, alias_history.c.time)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("key", String, primary_key=True),
    sa.Column("value", String, nullable=False),
)
sa.Index("tags_key_value", tags.c.key, tags.c.value)

reproductions = sa.Table(
    "reproductions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False, index=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("actor", String, nullable=False),
    sa.Column("verdict", String, nullable=False),  # identical | within tolerance | different
    sa.Column("details", sa.Text, nullable=False),  # JSON: the outputs that differ, metric deltas
)

pins = sa.Table(
    "pins",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("actor", String, nullable=False),
)

# Each evaluation of a version's quality gates (at its build, by `modelspec gate`) and each
# forced promotion that overrides a failure; the newest row is the version's gate verdict.
gate_results = sa.Table(
    "gate_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False, index=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("actor", String, nullable=False),
    sa.Column("verdict", String, nullable=False),  # passed | failed | overridden
    sa.Column("details", sa.Text, nullable=False),  # JSON: each gate's value, baseline, passed; or the reason
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("kind", String, nullable=False),
    sa.Column("actor", String, nullable=False),
    sa.Column("subject", String, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev", String, nullable=False),
    sa.Column("digest", String, nullable=False),
)

# Version 1's aliases had no traffic weight, and its metrics no integer flag: those two
# tables as version 1 made them (in a MetaData of their own, the DDL of each backend).
_v1 = sa.MetaData()
sa.Table("versions", _v1, sa.Column("id", sa.Integer, primary_key=True))  # what the foreign keys name
_V1_ALIASES = sa.Table(
    "aliases",
    _v1,
    sa.Column("name", String, primary_key=True),
    sa.Column("alias", String, primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
)
_V1_METRICS = sa.Table(
    "metrics",
    _v1,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("key", String, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)
sa.Index("metrics_key_value", _V1_METRICS.c.key, _V1_METRICS.c.value)

_V1_TABLES = [meta, versions, artifacts, lineage, alias_history, events, _V1_ALIASES, _V1_METRICS]


def _create_v1(conn: sa.Connection) -> None:
    for table in _V1_TABLES:
        table.create(conn)


def _v1_to_v2(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE aliases ADD COLUMN weight FLOAT NOT NULL DEFAULT 1.0"))
    tags.create(conn)


def _v2_to_v3(conn: sa.Connection) -> None:
    reproductions.create(conn)


def _v3_to_v4(conn: sa.Connection) -> None:
    pins.create(conn)


def _v4_to_v5(conn: sa.Connection) -> None:
    # Older metrics stay floats: whether 12.0 was written as 12 is not known any more.
    conn.execute(sa.text("ALTER TABLE metrics ADD COLUMN is_integer BOOLEAN NOT NULL DEFAULT FALSE"))


def _v5_to_v6(conn: sa.Connection) -> None:
    gate_results.create(conn)


MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {
    1: _create_v1,
    2: _v1_to_v2,
    3: _v2_to_v3,
    4: _v3_to_v4,
    5: _v4_to_v5,
    6: _v5_to_v6,
}


def schema_version(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table("meta"):
        return 0
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    return int(value or 0)


def identity(conn: sa.Connection, *, create: bool = False, known: bool = False) -> str | None:
    """The registry's random identity, made with the registry (or at the first write of one
    older than identities): the store records it, so another registry is recognised.
    `known`: the tables are known to exist (saves a catalog query per write on a server)."""
    if not known and not sa.inspect(conn).has_table("meta"):
        return None
    found = conn.execute(sa.select(meta.c.value).where(meta.c.key == "registry_id")).scalar()
    if found is None and create:
        found = uuid.uuid4().hex
        conn.execute(sa.insert(meta).values(key="registry_id", value=found))
    return None if found is None else str(found)


def migrate(conn: sa.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema up to `target`; returns the version found before."""
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        from ..errors import UsageError

        raise UsageError(
            f"the registry has schema version {found}, newer than this modelspec knows ({SCHEMA_VERSION})",
            hint="upgrade modelspec",
        )
    for version in range(found + 1, target + 1):
        MIGRATIONS[version](conn)
        conn.execute(sa.delete(meta).where(meta.c.key == "schema_version"))
        conn.execute(sa.insert(meta).values(key="schema_version", value=str(version)))
    identity(conn, create=True)
    return found
