"""Digests of files and directories, as Merkle trees of tree documents over sorted entries:
the walk that storing a path (`LocalStore.put_path`, the remote's) and hashing one without
storing it (`digest_path`, resolution) share."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from ..digest import digest_bytes, digest_file, tree_document
from ..errors import StoreError
from .protocol import Entry


def walk_path(path: Path, visit_file: Callable[[Path], str], put_tree: Callable[[bytes], str]) -> Entry:
    """Digest a file or a directory (as a Merkle tree over sorted entries).

    `visit_file` returns a file's digest (and may store it); `put_tree` does the same for a
    tree document. Symlinks and special files are refused: a snapshot holds only bytes.
    """
    info = path.lstat()
    if stat.S_ISREG(info.st_mode):
        return Entry("file", visit_file(path), info.st_size)
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{path} is not a regular file or directory (symlinks are not allowed)")
    entries: dict[str, dict[str, object]] = {}
    total = 0
    with os.scandir(path) as scan:
        children = sorted(scan, key=lambda e: e.name)
    for child in children:
        executable = child.stat(follow_symlinks=False).st_mode & stat.S_IXUSR
        entry = walk_path(Path(child.path), visit_file, put_tree)
        record: dict[str, object] = {"type": entry.type, "digest": entry.digest}
        if entry.type == "file":
            record["size"] = entry.size
            if executable:
                record["exec"] = True
        entries[child.name] = record
        total += entry.size
    return Entry("tree", put_tree(tree_document(entries)), total)


def digest_path(path: Path, file_digest: Callable[[Path], str] = digest_file) -> Entry:
    return walk_path(path, file_digest, digest_bytes)
