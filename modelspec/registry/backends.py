"""The registry's database, whichever it is: an engine from a URL, and what a read or a write
transaction must do first on that backend (`sqlite`, `postgres`). Only SQLite and
PostgreSQL are supported: the two every registry test runs on."""

from __future__ import annotations

import sqlalchemy as sa

from ..errors import StoreError, UsageError
from . import postgres, sqlite

SUPPORTED = ("sqlite", "postgresql")
INSTALL_HINT = "install the PostgreSQL driver: pip install 'modelspec[postgres]'"


def parse(url: str) -> sa.URL:
    """The URL, checked; `postgresql://` means psycopg 3 (SQLAlchemy's default is psycopg2)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise UsageError(
            f"the registry URL {url!r} is not a database URL",
            hint="e.g. postgresql+psycopg://user@host:5432/modelspec or sqlite:////srv/modelspec/registry.db",
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise UsageError(
            f"the registry cannot be on {backend} ({shown(parsed)})",
            hint="use a sqlite:/// or postgresql+psycopg:// URL",
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def shown(url: sa.URL) -> str:
    """The URL as it may be printed: without its password."""
    return url.render_as_string(hide_password=True)


def create_engine(url: str) -> sa.Engine:
    parsed = parse(url)
    try:
        if parsed.get_backend_name() == "postgresql":
            return postgres.create_engine(parsed)
        engine = sa.create_engine(parsed)
    except ImportError as exc:  # SQLAlchemy imports the driver here
        raise UsageError(f"the registry {shown(parsed)} needs {exc.name or 'a driver'}", hint=INSTALL_HINT) from None
    sqlite.configure(engine)
    return engine


def begin_write(conn: sa.Connection) -> None:
    """First thing in a write transaction (SQLite's BEGIN IMMEDIATE is issued by its engine)."""
    if conn.dialect.name == "postgresql":
        postgres.begin_write(conn)


def begin_read(conn: sa.Connection) -> None:
    """Before a read transaction starts."""
    if conn.dialect.name == "postgresql":
        postgres.begin_read(conn)


def server_error(url: sa.URL, doing: str, exc: sa.exc.DBAPIError) -> StoreError:
    """A server's failure as a person reads it: the URL without its password, the driver's
    first line (scrubbed of the password too), and what to check."""
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    if url.password:
        reason = reason.replace(str(url.password), "***")
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    if f'database "{url.database}" does not exist' in reason:
        hint = f"create it first: createdb -h {url.host or 'localhost'} -p {url.port or 5432} {url.database}"
    elif isinstance(exc, sa.exc.OperationalError) or exc.connection_invalidated:  # unreachable, refused, dropped
        hint = (
            f"check that the PostgreSQL server at {where} is running and accepts connections from this machine "
            "(the registry is `registry:` in modelspec.yaml, or MODELSPEC_REGISTRY_URL)"
        )
        if doing == "written":
            hint += "; a write the server did not commit changed nothing: run the command again"
    else:  # the server refused a statement: the transaction rolled back
        hint = "nothing was written; `modelspec audit --verify` says whether the registry was edited by hand"
    return StoreError(f"the registry {shown(url)} cannot be {doing}: {reason}", hint=hint)
