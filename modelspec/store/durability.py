"""Deferred durability for `LocalStore`: inside a build, objects are committed without
waiting for the disk, and made durable together before anything durable names them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from .files import fsync_dir, fsync_file, fsync_paths


class DeferredSync:
    """The objects committed but not yet fsynced, while a build defers durability."""

    def __init__(self) -> None:
        self._unsynced: list[Path] | None = None
        self._unsynced_lock = threading.Lock()

    def path_of(self, digest: str) -> Path:
        raise NotImplementedError

    @contextlib.contextmanager
    def deferring_sync(self) -> Iterator[None]:
        """Commit objects without waiting for the disk inside this block; `sync` makes them
        durable, and must run before anything durable (a registry record) names them.

        Only a power cut or an OS crash loses page-cache data, never a killed process, and
        what is lost then is caught: an action-cache entry whose outputs are missing or do
        not verify is a miss. A build stores two or three objects per stage, and two fsyncs
        each cost more than everything else modelspec does for a stage."""
        self._unsynced = []
        try:
            yield
        finally:
            with self._unsynced_lock:
                pending, self._unsynced = self._unsynced or [], None
            fsync_paths(pending)

    def _defer(self, target: Path) -> None:
        with self._unsynced_lock:
            if self._unsynced is not None:
                self._unsynced.append(target)
                return
        fsync_file(target)  # the deferring block ended meanwhile
        fsync_dir(target.parent)

    def sync(self, digests: Iterable[str] = ()) -> None:
        """Make durable every object committed since `deferring_sync` began, and `digests`
        (objects this process found already there, which another build may have written
        without syncing yet): their files, then their folders."""
        with self._unsynced_lock:
            pending = self._unsynced or []
            if self._unsynced is not None:
                self._unsynced = []
        fsync_paths([*pending, *(self.path_of(d) for d in digests)])
