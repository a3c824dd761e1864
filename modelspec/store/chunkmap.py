"""Where each chunk lies: the chunk map a process builds from the store's pack indexes.

A pack never changes, so its index is read once; a pack gone since (pruned, here or by
another process) makes the map start over. A chunk quarantined in a pack (a marker
`quarantine/chunks/<chunk>-<pack>`, perhaps left by another process) is not served from it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from .packs import Located, read_index


class ChunkMap:
    """Each chunk's place in the packs of `packs` (`located`: by chunk; a worker process
    tests membership in it directly, ~50,000 times a GiB), safe to use from many threads."""

    def __init__(self, packs: Path, quarantine: Path) -> None:
        self.packs = packs
        self.quarantine = quarantine
        self.located: dict[bytes, Located] = {}
        self.loaded: set[str] = set()  # the packs whose index it holds
        self.lock = threading.Lock()

    def refresh(self) -> None:
        """Read the index of every pack not read yet; forget packs that are gone."""
        present = {p[:-5] for p in os.listdir(self.packs) if p.endswith(".pack")} if self.packs.is_dir() else set()
        bad = self.quarantined()
        with self.lock:
            if self.loaded - present:  # pruned meanwhile: start over
                self.located, self.loaded = {}, set()
            for name in sorted(present - self.loaded):
                with contextlib.suppress(FileNotFoundError, ValueError):  # a damaged index: its chunks unknown
                    for digest, where in read_index(self.packs / f"{name}.pack"):
                        if (digest.hex(), name) not in bad:
                            self.located.setdefault(digest, where)
                self.loaded.add(name)
            for chunk_hex, pack in bad:  # quarantined since we read its pack (by another process)
                known = self.located.get(bytes.fromhex(chunk_hex))
                if known is not None and known.pack == pack:
                    del self.located[bytes.fromhex(chunk_hex)]

    def quarantined(self) -> set[tuple[str, str]]:
        """The (chunk hex, pack) of every chunk marked bad in its pack."""
        if not self.quarantine.is_dir():
            return set()
        return {tuple(n.split("-", 1)) for n in os.listdir(self.quarantine) if "-" in n}  # type: ignore[misc]

    def lacking(self, chunks: Iterable[bytes]) -> set[bytes]:
        with self.lock:
            return {chunk for chunk in chunks if chunk not in self.located}

    def stored_sizes(self) -> dict[bytes, int]:
        with self.lock:
            return {digest: where.stored for digest, where in self.located.items()}

    def add(self, sealed: dict[str, list[tuple[bytes, Located]]]) -> None:
        """The chunks of packs just sealed (pack → its chunks)."""
        with self.lock:
            for located in sealed.values():
                for chunk, where in located:
                    self.located.setdefault(chunk, where)
            self.loaded |= set(sealed)

    def quarantine_chunk(self, chunk: bytes) -> None:
        """Never serve this chunk from its pack again: forgotten here, marked for every process."""
        with self.lock:
            where = self.located.pop(chunk, None)
        if where is not None:
            self.quarantine.mkdir(parents=True, exist_ok=True)
            (self.quarantine / f"{chunk.hex()}-{where.pack}").touch()

    def clear(self) -> None:
        """Forget every pack (after pruning): the next refresh reads them all again."""
        with self.lock:
            self.located, self.loaded = {}, set()
