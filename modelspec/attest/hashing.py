"""sha256 and blake3 of a file in one read pass.

in-toto subjects need sha256 (the SLSA spec requires it); the store names objects by
blake3. Both are computed from the same buffers: the file is read once, in large blocks,
and sha256 runs in a second thread on the block blake3 has just hashed (both release the
GIL), so the pass runs at the speed of the slower hash, not of their sum.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3

BLOCK = 8 << 20  # large reads: fewer syscalls, and each hash call works on a big buffer


@dataclass(frozen=True, slots=True)
class FileDigests:
    sha256: str  # hex
    blake3: str  # hex
    size: int


def hash_file(path: str | os.PathLike[str]) -> FileDigests:
    """Both digests of one file, read once."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size <= BLOCK:
            data = f.read()
            return FileDigests(hashlib.sha256(data).hexdigest(), blake3.blake3(data).hexdigest(), len(data))
        return _hash_stream(f)


def _hash_stream(f: object) -> FileDigests:
    sha = hashlib.sha256()
    b3 = blake3.blake3()
    buffers = (bytearray(BLOCK), bytearray(BLOCK))  # two: one is read into while sha hashes the other
    pending: Future[None] | None = None
    total = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool:
        for turn in range(1 << 62):
            buffer = buffers[turn % 2]
            count = f.readinto(buffer)  # type: ignore[attr-defined]
            if not count:
                break
            view = memoryview(buffer)[:count]
            total += count
            b3.update(view)
            if pending is not None:
                pending.result()  # sha256 of the previous block, whose buffer is read into next
            pending = pool.submit(sha.update, view)
        if pending is not None:
            pending.result()
    return FileDigests(sha.hexdigest(), b3.hexdigest(), total)


class HashingSink:
    """A writable file that hashes what is written to it (sha256 and blake3) and keeps none
    of it: an artifact left on the remote, hashed as it streams past (`build --no-download`)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._b3 = blake3.blake3()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self._b3.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def digests(self) -> FileDigests:
        return FileDigests(self._sha.hexdigest(), self._b3.hexdigest(), self.size)


def hash_path_files(root: Path) -> dict[str, FileDigests]:
    """Every file below `root` (or `root` itself when it is a file), by relative path."""
    if root.is_file():
        return {"": hash_file(root)}
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[path.relative_to(root).as_posix()] = hash_file(path)
    return found
