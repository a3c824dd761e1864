"""Leases: how a running build tells gc which objects it is about to use.

A build holds a lease file, locked for as long as the build runs, and appends the digests
it restores or produces. It does so under the *shared* gc guard, and gc sweeps only under
the *exclusive* guard after reading every live lease, so an object a build has checked
and leased cannot vanish before the build has used it.

    <home>/gc.lock                  the guard (flock: shared for builds, exclusive for a sweep)
    <home>/leases/<pid>-<n>.lease   one per running build; a lease whose lock is free is stale
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from .objects import Entry
from .owner import remove_orphans, temp_prefix


@contextlib.contextmanager
def gc_guard(home: Path, *, exclusive: bool) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "gc.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Lease:
    """The objects one running build uses. Use as a context manager."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._file: IO[str] | None = None
        # The gc guard, opened once and held shared while any thread of this build is inside
        # `holding` (a no-op build enters it once per stage: no open and close each time).
        self._guard: IO[str] | None = None
        self._holders = 0
        self._holders_lock = threading.Lock()

    def __enter__(self) -> Lease:
        folder = self.home / "leases"
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=temp_prefix(folder), suffix=".new")
        self._file = os.fdopen(fd, "a")
        fcntl.flock(self._file, fcntl.LOCK_EX)
        # Only a locked lease gets the name gc reads: an unlocked one would look stale.
        self.path = Path(name).with_suffix(".lease")
        os.rename(name, self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._file is not None
        self.path.unlink(missing_ok=True)
        self._file.close()  # releases the lock
        self._file = None
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Check and lease objects inside this block: gc cannot sweep meanwhile."""
        with self._holders_lock:
            if self._holders == 0:
                if self._guard is None:
                    self._guard = open(self.home / "gc.lock", "a")  # noqa: SIM115 (closed by __exit__)
                fcntl.flock(self._guard, fcntl.LOCK_SH)
            self._holders += 1
        try:
            yield
        finally:
            with self._holders_lock:
                self._holders -= 1
                if self._holders == 0 and self._guard is not None:
                    self._flush()  # what was leased inside is in the file before gc may sweep
                    fcntl.flock(self._guard, fcntl.LOCK_UN)

    def add(self, entries: Iterable[Entry]) -> None:
        """Lease `entries`: in the file at once, or, inside `holding`, when it ends (a no-op
        build leases each stage's outputs: one write for them all, not one each)."""
        assert self._file is not None
        with self._holders_lock:
            for entry in entries:
                self._file.write(f"{entry.type} {entry.digest}\n")
            if self._holders == 0:
                self._flush()

    def _flush(self) -> None:
        if self._file is not None:
            self._file.flush()


def live_leased(home: Path) -> set[Entry]:
    """Entries leased by running builds; stale leases (their build died) are removed."""
    leased: set[Entry] = set()
    for path in _live_leases(home):
        with contextlib.suppress(FileNotFoundError), open(path) as handle:
            for line in handle:
                kind, _, digest = line.strip().partition(" ")
                if digest:
                    leased.add(Entry(kind, digest, 0))
    return leased


def remove_stale_leases(home: Path) -> None:
    """Remove the leases of builds that died (run at the start of every build)."""
    _live_leases(home)


def _live_leases(home: Path) -> list[Path]:
    folder = home / "leases"
    if not folder.is_dir():
        return []
    # A build killed between creating and naming its lease left a `.new` file.
    remove_orphans(folder, lambda path: path.unlink(missing_ok=True) if path.suffix == ".new" else None)
    live = []
    for path in sorted(folder.glob("*.lease")):
        try:
            with open(path) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    live.append(path)  # its build holds the lock: it is running
                    continue
            path.unlink(missing_ok=True)  # nobody holds it: its build is gone
        except FileNotFoundError:
            continue
    return live


def remove_unheld_locks(folder: Path) -> int:
    """Remove the lock files no process holds (each action key leaves one behind); a held
    lock is a running build's and stays. `file_lock` re-checks, once it holds a lock, that
    its file is still the one at the path, so removing one a build is about to take is safe."""
    removed = 0
    if not folder.is_dir():
        return removed
    for path in sorted(folder.glob("*.lock")):
        try:
            with open(path, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # held: a build is running under it
                path.unlink(missing_ok=True)  # removed while we hold it
                removed += 1
        except FileNotFoundError:
            continue
    return removed
