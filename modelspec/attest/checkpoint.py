"""Signed checkpoints of the audit log: its anchor outside the database.

The audit chain proves that no event was edited *unless* whoever edits can recompute every
digest after it (and the registry's head in the store): a writer of the database can. A
checkpoint is a small statement of the chain's head (registry id, event count, the last
event's digest, time), in a DSSE envelope signed with the workspace's key, stored as an
object with its digest in `.modelspec/checkpoints/` (outside the database). `audit
--verify` checks the log against the latest one: an event the checkpoint saw must still
have the digest it saw. A rewritten history no longer reaches the checkpointed head, and
the checkpoint cannot be forged without the private key (unsigned ones, made without a
key, only guard against a writer of the database, not of the store).

Written after every gc, promotion and rollback, and by `modelspec audit checkpoint`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.files import write_atomic
from ..store.protocol import ObjectStore
from . import dsse
from .keys import SigningKey, TrustedKey
from .statement import rfc3339

PAYLOAD_TYPE = "application/vnd.modelspec.audit-checkpoint+json"
CHECKPOINT_TYPE = "https://modelspec.dev/audit-checkpoint/v1"
DIRECTORY = "checkpoints"
LATEST = "latest"  # the newest checkpoint's digest
HISTORY = "history"  # every checkpoint's digest, one a line (gc keeps them all)


@dataclass(frozen=True)
class Checkpoint:
    digest: str  # of the envelope object
    registry: str
    events: int
    head: str
    time: float
    keyids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "registry": self.registry,
            "events": self.events,
            "head": self.head,
            "time": self.time,
            "signed_by": list(self.keyids),
        }


def write(
    store: ObjectStore, home: Path, registry: str, events: int, head: str, key: SigningKey | None, now: float = 0.0
) -> Checkpoint:
    """Sign and store a checkpoint of the chain's head; it becomes the latest."""
    now = now or time.time()
    document = {
        "_type": CHECKPOINT_TYPE,
        "registry": registry,
        "events": events,
        "head": head,
        "time": rfc3339(now),
        "timestamp": now,
    }
    envelope = dsse.sign(PAYLOAD_TYPE, json.dumps(document, sort_keys=True).encode(), key)
    digest = store.put_bytes(envelope.to_json())
    folder = home / DIRECTORY
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / HISTORY, "a") as history:  # appended before `latest` names it: gc keeps what is named
        history.write(digest + "\n")
    write_atomic(folder / LATEST, digest.encode() + b"\n")
    return Checkpoint(digest, registry, events, head, now, tuple(envelope.keyids))


def every_digest(home: Path) -> set[str]:
    """The objects of every checkpoint written (gc's roots)."""
    found = set()
    with contextlib.suppress(FileNotFoundError):
        found |= {line.strip() for line in (home / DIRECTORY / HISTORY).read_text().splitlines() if line.strip()}
    with contextlib.suppress(FileNotFoundError):
        found.add((home / DIRECTORY / LATEST).read_text().strip())
    return found


def latest(store: ObjectStore, home: Path) -> tuple[Checkpoint | None, dsse.Envelope | None, str]:
    """The latest checkpoint and its envelope; (None, None, '') when none was written, or
    (None, None, what is wrong) when it cannot be read."""
    try:
        digest = (home / DIRECTORY / LATEST).read_text().strip()
    except FileNotFoundError:
        return None, None, ""
    return load(digest, store.read_bytes)


def load(
    digest: str, read: Callable[[str], bytes], where: str = ""
) -> tuple[Checkpoint | None, dsse.Envelope | None, str]:
    """The checkpoint stored as object `digest` (`read` gives an object's verified bytes)."""
    try:
        envelope = dsse.parse(read(digest))
        document = json.loads(envelope.payload)
        checkpoint = Checkpoint(
            digest,
            str(document["registry"]),
            int(document["events"]),
            str(document["head"]),
            float(document["timestamp"]),
            tuple(envelope.keyids),
        )
    except Exception as exc:  # a missing, corrupt or foreign object: each says the same to the auditor
        return None, None, f"the latest audit checkpoint{where} ({digest}) cannot be read: {exc}"
    if envelope.payload_type != PAYLOAD_TYPE or document.get("_type") != CHECKPOINT_TYPE:
        return None, None, f"the latest audit checkpoint{where} ({digest}) is not a checkpoint"
    return checkpoint, envelope, ""


def problems(
    checkpoint: Checkpoint,
    envelope: dsse.Envelope,
    registry: str,
    last_event: int,
    digest_at: Mapping[int, str],
    trusted: Mapping[str, TrustedKey],
) -> list[str]:
    """How the log disagrees with the checkpoint (`digest_at`: seq → digest of the log's
    events), or how the checkpoint itself fails its signature. [] when they agree."""
    when = rfc3339(checkpoint.time)
    found = []
    good, bad = dsse.trusted_signers(envelope, trusted)
    if any(keyid in trusted for keyid in bad):
        found.append(f"the audit checkpoint of {when} was altered: its signature does not verify")
    elif trusted and not good:
        found.append(f"the audit checkpoint of {when} is not signed by a trusted key: it may be forged")
    if checkpoint.registry != registry:
        found.append(f"the audit checkpoint of {when} is of another registry ({checkpoint.registry})")
    elif last_event < checkpoint.events:
        found.append(
            f"the audit log ends at event {last_event}, but the checkpoint of {when} saw {checkpoint.events}:"
            " events were removed"
        )
    elif digest_at.get(checkpoint.events) != checkpoint.head:
        found.append(
            f"event {checkpoint.events} is not the one the checkpoint of {when} recorded"
            " (its digest differs): the audit log was rewritten and its chain recomputed"
        )
    return found
