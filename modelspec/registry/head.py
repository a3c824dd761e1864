"""The store's memory of its registry: which registry it belongs to (the registry's random
identity) and how far that registry's audit log had reached at its last write.

Without it, a registry truncated to 0 bytes, deleted, swapped for another workspace's or
restored from an old backup looks like a fresh start: gc would free every object and
`fraud@1.0.0` would be handed out again for other content. With it, such a registry beside
this store is an error that every command opening the registry reports before it reads or
writes anything.

    .modelspec/registry-head   {"format": 1, "registry": "<id>", "seq": 42, "digest": "blake3:…"}

The file is replaced atomically after each registry write commits. A process killed between
the commit and that replacement leaves the file one write behind, so the check accepts any
recorded head that is a *prefix* of the registry's audit chain (its event `seq` exists and
has the recorded digest); a registry whose log is shorter, or differs at that event, fails.
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..store.files import write_atomic
from ..text import plural

HEAD_FILE = "registry-head"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class RegistryHead:
    registry: str  # the registry's identity (meta.registry_id)
    seq: int  # the newest audit event at the last write
    digest: str  # that event's digest

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "registry": self.registry, "seq": self.seq, "digest": self.digest}


class RegistryMismatchError(UsageError):
    """The registry beside the store is not the one the store belongs to, or is older."""


def read_head(path: Path) -> RegistryHead | None:
    """The recorded head, or None when the store has never recorded one."""
    try:
        document = json.loads(path.read_bytes())
        return RegistryHead(str(document["registry"]), int(document["seq"]), str(document["digest"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryMismatchError(
            f"{path} (the store's record of its registry) is damaged: {exc}",
            hint=f"if the registry is known to be the right one, delete {path}; the next registry write records it",
        ) from None


def record_head(path: Path, head: RegistryHead) -> None:
    """Remember `head` after a committed write, unless a newer head of the same registry is
    already recorded (two writers finishing out of order). A full or read-only disk leaves
    the older head in place: still a prefix of the chain, so nothing refuses to open."""
    with contextlib.suppress(RegistryMismatchError):
        current = read_head(path)
        if current is not None and current.registry == head.registry and current.seq >= head.seq:
            return
    try:
        write_atomic(path, json.dumps(head.to_dict(), sort_keys=True).encode() + b"\n", path.parent / "tmp")
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES):
            raise


def head_problem(
    recorded: RegistryHead, identity: str | None, last_seq: int, digest_at: Callable[[int], str | None]
) -> str:
    """'' when the registry (its identity, its newest event, and the digest of its event at
    `recorded.seq`) is the one `recorded` was taken from, or its continuation; else why not."""
    short = recorded.registry[:12]
    if identity is None and last_seq == 0:
        had = plural(recorded.seq, "event")
        return f"it is empty, but the store belongs to registry {short}, whose audit log had {had}"
    if identity is not None and identity != recorded.registry:
        return f"it is registry {identity[:12]}, but the store belongs to registry {short}"
    if last_seq < recorded.seq:
        return (
            f"its audit log ends at event {last_seq}, but the store saw it reach event {recorded.seq}: "
            "it was rolled back or replaced by an older copy"
        )
    if digest_at(recorded.seq) != recorded.digest:
        return (
            f"its audit event {recorded.seq} is not the one the store recorded: "
            "the log was rewritten or the registry replaced"
        )
    return ""


def mismatch(registry: str, head_path: Path, problem: str, recorded: RegistryHead) -> RegistryMismatchError:
    return RegistryMismatchError(
        f"the registry {registry} does not belong to this store: {problem} (recorded in {head_path})",
        hint=f"restore the registry from a backup that reaches audit event {recorded.seq}, or point `registry:` in "
        f"modelspec.yaml at the right one; nothing was read, written or deleted. Only to start a new registry on "
        f"purpose with this store, delete {head_path} (gc then frees what the new registry does not name)",
    )
