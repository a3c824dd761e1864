"""A few hundred KiB the store keeps for gc, so that gc can always run on a full disk.

gc writes before it frees: SQLite needs room for the registry's shared-memory index and
write-ahead log to record the retirements, and only then may their bytes go. On a disk
that a build (or anything else) filled, that write would fail and the one command that
frees space could not run. So the store holds `.modelspec/reserve`, made whenever there is
room (after a build registers a version, and after gc), and gc deletes it first.
"""

from __future__ import annotations

import errno
from pathlib import Path

from .files import write_atomic

RESERVE_FILE = "reserve"
RESERVE_BYTES = 512 * 1024  # the registry's index (32 KiB) and log for a gc's transactions, with room to spare
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


def keep(home: Path) -> bool:
    """Make the reserve if it is missing; False when there is no room for it yet (a full
    or read-only disk is not an error: the next build or gc makes it)."""
    path = home / RESERVE_FILE
    if path.is_file() and path.stat().st_size == RESERVE_BYTES:
        return True
    try:
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        write_atomic(path, bytes(RESERVE_BYTES), home / "tmp")  # zeros written, not a sparse hole
    except OSError as exc:
        if exc.errno not in _NO_ROOM:
            raise
        return False
    return True


def release(home: Path) -> int:
    """Delete the reserve; the bytes it freed."""
    path = home / RESERVE_FILE
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size
