"""A throwaway PostgreSQL server for the tests and for `.ci/run`: Debian's `postgresql`
package (installed when missing and we are root), a data directory in a temp dir owned by
`postgres` (initdb refuses to run as root), listening on 127.0.0.1 only, on a free port.

    python tests/pgserver.py start DIR   # prints the server's URL; DIR holds data and socket
    python tests/pgserver.py stop DIR

The tests use `MODELSPEC_TEST_POSTGRES_URL` when it is set (`.ci/run` sets it), else start one
of these for the session. Durability is off (fsync): it is a test server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ENV = "MODELSPEC_TEST_POSTGRES_URL"
DRIVER = "postgresql+psycopg"


def bin_dir() -> Path | None:
    """Where Debian's PostgreSQL binaries are (the newest installed), or None."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / "pg_ctl").exists()), key=lambda p: int(p.parent.name))
    return versions[-1] if versions else None


def install() -> Path | None:
    """Install Debian's `postgresql` when missing and we may (root); its bin dir or None."""
    found = bin_dir()
    if found is not None or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    def apt(*args: str) -> int:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(["apt-get", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return done.returncode

    if apt("install", "-y", "-q", "postgresql"):
        apt("update", "-q")
        apt("install", "-y", "-q", "postgresql")
    return bin_dir()


@dataclass(frozen=True)
class Server:
    directory: Path  # holds data/, the socket and the log
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"{DRIVER}://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *command: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        command = [str(self.bin / "pg_ctl"), "-w", "-t", "60", "-D", str(self.directory / "data")]
        log = ["-l", str(self.directory / "server.log")]
        subprocess.run(self._as_owner(*command, *log, "-o", options, "start"), check=True, stdout=subprocess.DEVNULL)

    def stop(self, mode: str = "fast") -> None:
        command = [str(self.bin / "pg_ctl"), "-w", "-D", str(self.directory / "data"), "-m", mode, "stop"]
        subprocess.run(self._as_owner(*command), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def create(directory: Path) -> Server:
    """initdb a new cluster in `directory` (made and owned by postgres) and start it."""
    binaries = install()
    if binaries is None:
        raise RuntimeError("no PostgreSQL server: install Debian's postgresql package")
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        directory.chmod(0o700)
    server = Server(directory, free_port(), binaries)
    initdb = [str(binaries / "initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"]
    subprocess.run(server._as_owner(*initdb, "-D", str(directory / "data")), check=True, capture_output=True)
    (directory / "port").write_text(str(server.port))
    server.start()
    return server


def existing(directory: Path) -> Server:
    binaries = bin_dir()
    assert binaries is not None
    return Server(directory, int((directory / "port").read_text()), binaries)


@contextlib.contextmanager
def database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at `server_url`, dropped afterwards: its URL."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def wait_ready(url: str, seconds: float = 30) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + seconds
    try:
        while True:
            try:
                with engine.connect():
                    return
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        engine.dispose()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(argv[2])
    if argv[1] == "start":
        print(create(directory).url)
    else:
        existing(directory).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
