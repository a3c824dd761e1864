"""The audit log anchored outside its database: a checkpoint of the chain's head written to
the store (attest/checkpoint.py), and `audit --verify`'s check of the log against the
latest one. See attest/checkpoint.py for what that detects."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..attest import checkpoint as checkpoints
from ..attest.keys import TrustedKey, signing_key
from ..store.protocol import ObjectStore
from . import audit

if TYPE_CHECKING:
    from .registry import Registry


def checkpoint(registry: Registry, store: ObjectStore, home: Path) -> checkpoints.Checkpoint:
    """Checkpoint the registry's audit head now, signed with the workspace's key if it has one."""
    identity, seq, digest = registry.read(audit.head)
    return checkpoints.write(store, home, identity, seq, digest, signing_key(home))


def anchor_problems(
    registry: Registry, store: ObjectStore, home: Path, trusted: Mapping[str, TrustedKey]
) -> tuple[checkpoints.Checkpoint | None, list[str]]:
    """The latest checkpoint (None when none was written) and how the log disagrees with it."""
    found, envelope, unreadable = checkpoints.latest(store, home)
    if unreadable:
        return None, [unreadable]
    if found is None or envelope is None:
        return None, []
    identity, seq, _digest = registry.read(audit.head)
    at = registry.read(audit.digests, [found.events])
    return found, checkpoints.problems(found, envelope, identity, seq, at, trusted)
