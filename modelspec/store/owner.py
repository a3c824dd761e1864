"""Which temp files belong to a running process, decided by a lock instead of a PID.

A PID means nothing in another PID namespace (a second container sharing the workspace sees
other numbers) and is reused over time, so "is that PID alive?" can delete a running build's
scratch files. A lock cannot lie: each process that writes temp files into a folder holds
`<folder>/<token>.owner` locked for as long as it lives and names its files `<token>-…`. The
kernel drops the lock when the process dies, however it dies.

    tmp/4711x1f2e3d4c.owner      locked by the living process
    tmp/4711x1f2e3d4c-run-abc/   its scratch directory
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

# The PID only helps a human reading the folder; the random part makes the token unique.
TOKEN = f"{os.getpid()}x{secrets.token_hex(4)}"
_SUFFIX = ".owner"
_CLAIMING = ".claiming"
_held: dict[str, int] = {}
# Threads of one process claim a folder one at a time: flock is per open file, so a second
# thread opening the same claiming file would wait for a lock its own process never drops.
_claim = threading.Lock()


def temp_prefix(folder: Path) -> str:
    """The name prefix for this process's temp files in `folder`, owning the folder's share first."""
    key = os.fspath(folder)
    if key not in _held:
        with _claim:
            _own(folder, key)
    return f"{TOKEN}-"


def _forget_inherited() -> None:
    """In every child this process forks, first thing: a token of its own, and the owner
    files' descriptors it inherited closed. Their locks stay the parent's alone (a lock lasts
    while any descriptor of it is open), so a child that outlives a killed parent for a moment
    (a worker process of the chunk layer, a resident's command) cannot keep the parent's temp
    files from being cleaned; and the claim lock starts free (another thread may have held it)."""
    global TOKEN, _claim
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()
    _claim = threading.Lock()
    TOKEN = f"{os.getpid()}x{secrets.token_hex(4)}"


os.register_at_fork(after_in_child=_forget_inherited)


def _own(folder: Path, key: str) -> None:
    """Hold `folder`'s owner file locked (`_claim` held: one thread at a time)."""
    while key not in _held:
        folder.mkdir(parents=True, exist_ok=True)
        # Locked before it gets the name cleaners read: an unlocked owner file looks dead.
        claiming = folder / f"{TOKEN}{_CLAIMING}"
        fd = os.open(claiming, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.rename(claiming, folder / f"{TOKEN}{_SUFFIX}")
        except FileNotFoundError:  # a cleaner took it for a dead one before we locked it
            os.close(fd)
            continue
        if not _held:
            atexit.register(_release)
        _held[key] = fd


def _release() -> None:
    """At a normal exit: our owner files go (a file still named after us is then an orphan)."""
    if TOKEN.startswith(f"{os.getpid()}x"):
        for folder, fd in _held.items():
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, f"{TOKEN}{_SUFFIX}"))
            os.close(fd)
    _held.clear()


def remove_orphans(folder: Path, remove: Callable[[Path], None]) -> None:
    """Remove every entry of `folder` whose owner no longer runs.

    An entry whose token has no owner file is an orphan too: a process creates its owner file
    before it names anything after the token, and removes it only after its files.
    """
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    verdicts: dict[str, bool] = {}

    def alive(token: str) -> bool:
        # Asked of the folder now, not of the listing: a listing can miss a file renamed meanwhile.
        if token not in verdicts:
            verdicts[token] = any(_locked(folder / f"{token}{end}") for end in (_SUFFIX, _CLAIMING))
        return verdicts[token]

    for name in names:
        is_owner = name.endswith((_SUFFIX, _CLAIMING))
        if not alive(name.rsplit(".", 1)[0] if is_owner else name.split("-", 1)[0]):
            if is_owner:
                (folder / name).unlink(missing_ok=True)
            else:
                remove(folder / name)


def _locked(owner: Path) -> bool:
    """Does a living process hold this owner file?"""
    if owner.name.startswith(f"{TOKEN}."):
        return True
    try:
        fd = os.open(owner, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
