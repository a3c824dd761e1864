"""Files on disk, beside the objects: replaced all at once, made durable, removed.

`write_atomic` replaces a file through a temp file and a rename (fsynced unless it is a cache
that checks itself); `fsync_paths` makes files and their folders durable; `remove_path` deletes
a file or tree however read-only, and `Remover` does it on a background thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .owner import temp_prefix


def write_atomic(path: Path, data: bytes, temp_dir: Path | None = None, *, durable: bool = True) -> None:
    """Replace `path` with `data` all at once: temp file, fsync, rename. `durable=False`
    skips the fsync, for a file that checks itself and is only a cache: after a power cut
    it may be empty or lost, never half of another version.

    Inside the store directory pass its `tmp/` as `temp_dir` (same filesystem), so that a
    temp file left by a killed process is removed by the next command (`clean_temp`).
    Elsewhere the temp file sits beside `path`, named after the writing process.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = temp_dir or path.parent
    fd, name = _new_file(folder, temp_prefix(temp_dir) if temp_dir else f".{path.name}.{os.getpid()}-", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


def _new_file(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """A new, uniquely named file open for writing, with the mode any program's new file gets:
    0666 less the umask. (mkstemp's 0600 would hide lock files, build records and export
    manifests from the rest of a team that shares them.)"""
    while True:
        name = os.path.join(folder, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), name
        except FileExistsError:
            continue


def fsync_paths(paths: list[Path]) -> None:
    """Files, then each of their folders once."""
    for path in paths:
        fsync_file(path)
    for folder in sorted({path.parent for path in paths}):
        fsync_dir(folder)


def fsync_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Remover:
    """Removes trees on one background thread, in the order given; `wait` until all are gone.
    Freeing blocks is slow on some filesystems (ext4 mounted with `discard` takes ~2 ms per
    directory), and a scratch tree nobody reads again need not hold up what comes next. What a
    killed process leaves behind is in its own temp folder, which the next command removes."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def remove(self, path: Path) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remove")
            self._pool.submit(remove_path, path)

    def wait(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def remove_path(path: Path) -> None:
    """Delete a file or a tree, including read-only parts."""
    if path.is_dir() and not path.is_symlink():
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
