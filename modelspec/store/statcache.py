"""The stat cache: (inode, size, mtime_ns) → digest, so an unchanged file is never read twice.

An entry is trusted only if the file's mtime is older than the moment it was hashed by
more than the filesystem's timestamp slack; a file written in the same instant it was
hashed could change without its mtime moving ("racy git").
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..digest import digest_file
from .files import write_atomic

_FORMAT = 1
_RACY_NS = 2_000_000_000


class StatCache:
    def __init__(self, file: Path, temp_dir: Path | None = None) -> None:
        self.file = file
        self.temp_dir = temp_dir
        self._entries: dict[str, list[object]] | None = None
        self._dirty = False

    def _load(self) -> dict[str, list[object]]:
        if self._entries is None:
            try:
                document = json.loads(self.file.read_bytes())
                self._entries = document["entries"] if document.get("format") == _FORMAT else {}
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                self._entries = {}
        return self._entries

    def digest(self, path: Path) -> str:
        """The file's digest, read from the cache when its stat is unchanged."""
        key = os.path.abspath(path)
        info = os.stat(key)
        signature = [info.st_ino, info.st_size, info.st_mtime_ns]
        entries = self._load()
        cached = entries.get(key)
        if cached is not None and cached[:3] == signature:
            return str(cached[3])
        hashed_at = time.time_ns()
        digest = digest_file(key)
        if info.st_mtime_ns < hashed_at - _RACY_NS:
            entries[key] = [*signature, digest]
            self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache atomically if anything changed; concurrent writers: last one wins."""
        if not self._dirty or self._entries is None:
            return
        write_atomic(self.file, json.dumps({"format": _FORMAT, "entries": self._entries}).encode(), self.temp_dir)
        self._dirty = False
