"""sha256 and blake3 of a file in one read pass.

in-toto subjects need sha256 (the SLSA spec requires it); the store names objects by
blake3. A large file is mapped, not read: sha256 hashes the mapping in a second thread while
blake3 hashes it in this one (both release the GIL), so the pass runs at the speed of the
slower hash, not of their sum, and no thread spends its time copying blocks (the copy had
kept blake3's thread behind sha256's: 1.42 GiB/s where sha256 alone runs at 1.68).
"""

from __future__ import annotations

import hashlib
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
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
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return _hash_mapped(mapped)


def _hash_mapped(mapped: mmap.mmap) -> FileDigests:
    view = memoryview(mapped)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool:
            sha = pool.submit(_sha256_blocks, view)
            b3 = blake3.blake3()
            for start in range(0, len(view), BLOCK):  # blocks: a signal is seen between them
                b3.update(view[start : start + BLOCK])
            return FileDigests(sha.result(), b3.hexdigest(), len(view))
    finally:
        view.release()


def _sha256_blocks(view: memoryview) -> str:
    sha = hashlib.sha256()
    for start in range(0, len(view), BLOCK):
        sha.update(view[start : start + BLOCK])
    return sha.hexdigest()


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
