"""A pids cgroup per stage run, when the machine lets us make one: the only process limit
that counts just the stage's own process tree (RLIMIT_NPROC counts every process of the user
on the host, and does not apply to root at all).

cgroup v2 (a `pids` controller in our own cgroup) or v1 (a `pids` hierarchy) both work; where
neither is writable, `create` returns None and the caller falls back to RLIMIT_NPROC.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path

_MOUNTS = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class PidsGroup:
    path: Path

    def join(self) -> None:
        """In the child before exec: move this process (and so all it starts) into the group."""
        with open(self.path / "cgroup.procs", "w") as procs:
            procs.write("0")

    def hit_limit(self) -> bool:
        """Did a fork fail because of the limit?"""
        try:
            for line in (self.path / "pids.events").read_text().splitlines():
                name, _, count = line.partition(" ")
                if name == "max":
                    return int(count) > 0
        except (OSError, ValueError):
            pass
        return False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


def create(name: str, max_pids: int) -> PidsGroup | None:
    base = _pids_base()
    if base is None:
        return None
    path = base / name
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(max_pids))
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        return None
    return PidsGroup(path)


@functools.cache
def _pids_base() -> Path | None:
    """The cgroup directory of this process in a hierarchy with the pids controller. Looked
    up once per process (it reads every mount: a millisecond a stage otherwise); if the
    process has been moved since, making a group fails and the caller falls back."""
    try:
        mounts = _MOUNTS.read_text().splitlines()
        membership = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        separator = fields.index("-")
        fstype, options = fields[separator + 1], fields[-1].split(",")
        mount = Path(fields[4])
        if fstype == "cgroup" and "pids" in options:
            own = _own_path(membership, lambda controllers: "pids" in controllers.split(","))
        elif fstype == "cgroup2" and "pids" in _read(mount / "cgroup.controllers").split():
            own = _own_path(membership, lambda controllers: controllers == "")
        else:
            continue
        if own is not None:
            base = mount / own.lstrip("/")
            if os.access(base, os.W_OK):
                return base
    return None


def _own_path(membership: list[str], wanted: object) -> str | None:
    for line in membership:
        _number, controllers, path = line.split(":", 2)
        if wanted(controllers):  # type: ignore[operator]
            return path
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
