"""The registry's schema on each backend, against a snapshot checked in beside this file
(schema_sqlite.txt, schema_postgresql.txt): a fresh registry and one migrated from every
older schema version must both match it, so a migration that forgets a column, an index or
a default on one backend fails here. After a deliberate schema change, regenerate with

    MODELSPEC_WRITE_SCHEMA=1 pytest tests/unit/test_registry_schema.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelspec.registry import tables as schema
from modelspec.registry.registry import Registry

HERE = Path(__file__).parent
REGENERATE = "MODELSPEC_WRITE_SCHEMA=1 pytest tests/unit/test_registry_schema.py"


def describe(url: str) -> str:
    """Every table's columns (type, nullability, default), keys and indexes, sorted."""
    engine = sa.create_engine(url)
    lines = []
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for table in sorted(inspector.get_table_names()):
                lines.append(f"table {table}")
                for column in inspector.get_columns(table):
                    null = "NULL" if column["nullable"] else "NOT NULL"
                    default = f" DEFAULT {column['default']}" if column.get("default") is not None else ""
                    lines.append(f"  column {column['name']} {column['type']} {null}{default}")
                primary = inspector.get_pk_constraint(table)["constrained_columns"]
                lines.append(f"  primary key ({', '.join(primary)})")
                for key in sorted(inspector.get_foreign_keys(table), key=lambda k: k["constrained_columns"]):
                    target = f"{key['referred_table']} ({', '.join(key['referred_columns'])})"
                    lines.append(f"  foreign key ({', '.join(key['constrained_columns'])}) -> {target}")
                for unique in sorted(inspector.get_unique_constraints(table), key=lambda u: u["column_names"]):
                    lines.append(f"  unique ({', '.join(unique['column_names'])})")
                for index in sorted(inspector.get_indexes(table), key=lambda i: str(i["name"])):
                    kind = "unique index" if index["unique"] else "index"
                    columns = ", ".join(str(c) for c in index["column_names"])
                    lines.append(f"  {kind} {index['name']} ({columns})")
    finally:
        engine.dispose()
    return "\n".join(lines) + "\n"


def snapshot(url: str) -> Path:
    return HERE / f"schema_{sa.make_url(url).get_backend_name()}.txt"


def test_a_new_registry_has_the_schema_of_the_snapshot(registry_url: str) -> None:
    Registry(registry_url).close()
    live, path = describe(registry_url), snapshot(registry_url)
    if os.environ.get("MODELSPEC_WRITE_SCHEMA"):
        path.write_text(live)
    recorded = path.read_text() if path.exists() else "(no snapshot)\n"
    assert live == recorded, f"the live schema differs from {path.name}; if the change is meant, run: {REGENERATE}"


@pytest.mark.parametrize("old", range(1, schema.SCHEMA_VERSION))
def test_every_older_schema_migrates_to_the_snapshot(registry_url: str, old: int) -> None:
    engine = sa.create_engine(registry_url)
    with engine.begin() as conn:
        schema.migrate(conn, target=old)
        assert schema.schema_version(conn) == old
    engine.dispose()
    with Registry(registry_url) as registry, registry.engine.connect() as conn:
        assert schema.schema_version(conn) == schema.SCHEMA_VERSION
    path = snapshot(registry_url)
    assert describe(registry_url) == path.read_text(), f"schema {old} migrated differs from {path.name}"


def test_every_string_column_compares_byte_wise_on_postgresql() -> None:
    """`tables.String`, not `sa.String`: on PostgreSQL a server's locale would reorder names
    and break the content-id prefix ranges that `resolve` uses."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()
    plain = [
        f"{table.name}.{column.name}"
        for table in schema.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, sa.String) and not isinstance(column.type, sa.Text)
        and 'COLLATE "C"' not in column.type.dialect_impl(dialect).compile(dialect=dialect)
    ]
    assert plain == [], "declare these columns with tables.String"
