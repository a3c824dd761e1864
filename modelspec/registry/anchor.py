"""The audit log anchored outside its database: a checkpoint of the chain's head written to
the store (attest/checkpoint.py), and `audit --verify`'s check of the log against the
latest one. See attest/checkpoint.py for what that detects."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..attest import checkpoint as checkpoints
from ..attest.keys import TrustedKey, signing_key
from ..errors import StoreError
from ..store.protocol import ObjectStore
from . import audit

if TYPE_CHECKING:
    from ..store.remote_cache import Remote
    from .registry import Registry


def checkpoint(registry: Registry, store: ObjectStore, home: Path) -> checkpoints.Checkpoint:
    """Checkpoint the registry's audit head now, signed with the workspace's key if it has one."""
    identity, seq, digest = registry.read(audit.head)
    return checkpoints.write(store, home, identity, seq, digest, signing_key(home))


def anchor_problems(
    registry: Registry,
    store: ObjectStore,
    home: Path,
    trusted: Mapping[str, TrustedKey],
    remote: Remote | None = None,
) -> tuple[checkpoints.Checkpoint | None, list[str]]:
    """The newest checkpoint (None when none was written) and how the log disagrees with it.
    With a remote, the checkpoint `push` left there is checked too: deleting the local ones
    does not remove the anchor."""
    found, envelope, unreadable = checkpoints.latest(store, home)
    problems = [unreadable] if unreadable else []
    anchors = [(found, envelope)] if found is not None and envelope is not None else []
    if remote is not None:
        try:
            pointer = remote.blobs.get(f"{checkpoints.DIRECTORY}/{remote.workspace_id}")
        except StoreError:  # unreachable (offline): the local checkpoint still anchors the log
            pointer = None
        digest = pointer.decode(errors="replace").strip() if pointer else ""
        if digest and (found is None or digest != found.digest):
            there, there_envelope, unreadable = checkpoints.load(digest, remote.store.read_bytes, " on the remote")
            problems += [unreadable] if unreadable else []
            if there is not None and there_envelope is not None:
                anchors.append((there, there_envelope))
    if not anchors:
        return None, problems
    identity, seq, _digest = registry.read(audit.head)
    at = registry.read(audit.digests, [anchor.events for anchor, _ in anchors])
    for anchor, anchor_envelope in anchors:
        problems += checkpoints.problems(anchor, anchor_envelope, identity, seq, at, trusted)
    return max((anchor for anchor, _ in anchors), key=lambda a: a.events), problems
