"""Shared fixtures: real git repositories in temp dirs, spec writing, CLI runs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


class Repo:
    """A real git repository in a temp dir, with helpers to write files, commit and run modelspec."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV}
        return subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True, env=env
        ).stdout

    def write(self, relative: str, content: str | bytes, *, dedent: bool = True) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(textwrap.dedent(content) if dedent else content)
        return target

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def modelspec(
        self, *args: str, check: bool = False, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in a subprocess, from the repository root."""
        result = subprocess.run(
            [sys.executable, "-m", "modelspec", *args],
            cwd=self.path,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"modelspec {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def cli(
        self, *args: str, check: bool = False, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI in-process (click's CliRunner) from `cwd` (default the repository root),
        answering as `modelspec()` does: an exception that escaped the CLI is a traceback on stderr."""
        from click.testing import CliRunner

        from modelspec.cli import main

        previous = signal.getsignal(signal.SIGTERM)  # build and reproduce set their own
        try:
            with contextlib.chdir(cwd or self.path):
                invoked = CliRunner(env=env).invoke(main, list(args))
        finally:
            signal.signal(signal.SIGTERM, previous)
        stderr = invoked.stderr
        if invoked.exception is not None and not isinstance(invoked.exception, SystemExit):
            assert invoked.exc_info is not None
            stderr += "".join(traceback.format_exception(*invoked.exc_info))
        result = subprocess.CompletedProcess(["modelspec", *args], invoked.exit_code, invoked.stdout, stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"modelspec {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{stderr}")
        return result

    def build_json(self, *args: str, check: bool = True, in_process: bool = False) -> dict[str, Any]:
        run = self.cli if in_process else self.modelspec
        result = run("build", *args, "--json", check=check)
        return json.loads(result.stdout)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELSPEC_HOME", raising=False)
    monkeypatch.delenv("MODELSPEC_REGISTRY_URL", raising=False)  # a developer's team registry
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def states(report: dict[str, Any]) -> dict[str, str]:
    """node → state from `build --json` output."""
    return {row["node"]: row["state"] for row in report["nodes"]}


# -- PostgreSQL ---------------------------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def missing(component: str, why: str) -> None:
    """A server component the tests need is missing: in CI that fails, elsewhere it skips."""
    message = f"{component} is missing: {why}"
    if in_ci():
        pytest.fail(message + " (CI must provide it: see .ci/run)", pytrace=False)
    pytest.skip(message)


def need_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg", "pip install -e '.[test]'")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server (its `postgres` database): MODELSPEC_TEST_POSTGRES_URL,
    else one this session starts (tests/pgserver.py) and stops at its end."""
    need_psycopg()
    given = os.environ.get(pgserver.ENV)
    if given:
        yield given
        return
    # Not under pytest's basetemp: its folders are 0700, and the server runs as `postgres`.
    parent = Path(tempfile.mkdtemp(prefix="modelspec-pg-"))
    parent.chmod(0o755)
    try:
        server = pgserver.create(parent / "server")
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(parent, ignore_errors=True)
        missing("a PostgreSQL server", f"{exc} (or set {pgserver.ENV})")
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[pgserver.Server]:
    """A PostgreSQL server of this test alone, which it may stop and start (faults)."""
    need_psycopg()
    parent = Path(tempfile.mkdtemp(prefix="modelspec-pg-"))
    parent.chmod(0o755)
    try:
        server = pgserver.create(parent / "server")
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(parent, ignore_errors=True)
        missing("a PostgreSQL server", str(exc))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped after the test."""
    with pgserver.database(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty registry's URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 server on loopback (moto): `.ci/run`'s, or one started for this session."""
    from s3server import ENDPOINT_VARIABLE, start_moto

    given = os.environ.get(ENDPOINT_VARIABLE)
    if given:
        yield given
    else:
        yield from start_moto()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the test server, and AWS variables in the environment."""
    from s3server import new_bucket, s3_environment

    s3_environment(monkeypatch)
    return new_bucket(s3_endpoint)


@pytest.fixture(scope="session")
def dask_url() -> Iterator[str]:
    """A Dask cluster on loopback (a scheduler, two single-thread workers with folders of their
    own): `.ci/run`'s (MODELSPEC_TEST_DASK), or one this session starts and stops."""
    import daskcluster

    given = os.environ.get(daskcluster.ENV)
    if given:
        yield given
        return
    if in_ci():  # .ci/run starts the cluster: its absence there is a broken CI script, not a skip
        missing("a Dask cluster", f"{daskcluster.ENV} is not set")
    try:
        import distributed  # noqa: F401
    except ImportError:
        missing("Dask", "pip install -e '.[test]'")
    folder = Path(tempfile.mkdtemp(prefix="modelspec-dask-"))
    try:
        url = daskcluster.start(folder)
    except (RuntimeError, OSError) as exc:
        daskcluster.stop(folder)
        missing("a Dask cluster", f"{exc} (or set {daskcluster.ENV})")
    try:
        yield url
    finally:
        daskcluster.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
