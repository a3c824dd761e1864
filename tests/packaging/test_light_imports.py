"""Start-up stays light: the CLI and the library's entry point load neither SQLAlchemy (the
registry) nor croniter (schedules) nor the chunk layer's pyfastcdc, zstandard and numpy nor Dask (a
cluster) until a command needs them, so a no-op build or `--help` does not pay for them (issue
21's budget; api hands those names on lazily)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "croniter", "pyfastcdc", "zstandard", "numpy", "cryptography", "mlflow", "distributed", "dask")


@pytest.mark.parametrize("module", ["modelspec.api", "modelspec.cli"])
def test_importing_the_entry_points_loads_no_registry_or_schedule_library(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_console_script_asks_a_resident_before_loading_the_cli() -> None:
    """The launcher (the `modelspec` script) is the standard library only until it runs the
    command here: with a resident, a command costs the interpreter's start and a socket."""
    heavy = ("click", "rich", "modelspec.cli", "socket")
    code = f"import sys, modelspec.launch; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_lazy_names_of_api_are_the_real_ones() -> None:
    from modelspec import api
    from modelspec.catalog import Catalog
    from modelspec.registry.versions import MARKS

    assert api.Catalog is Catalog and api.MARKS is MARKS
    with pytest.raises(AttributeError):
        api.no_such_name  # noqa: B018
    for name in api._LAZY:
        assert getattr(api, name) is not None


def test_a_sqlite_registry_loads_no_postgresql_driver(tmp_path: object) -> None:
    """psycopg is imported only when a postgresql URL is opened: SQLite users never pay for it."""
    code = (
        "import sys; from modelspec.registry.registry import Registry; "
        f"Registry('sqlite:///{tmp_path}/r.db').close(); print('psycopg' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"
