"""The tamper-evident audit log: each event carries the digest of the one before it.

An edited event no longer matches its digest; an inserted or deleted one breaks the chain
of `prev` links. `verify_chain` is pure: it is given the rows in sequence order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..digest import digest_json

GENESIS = "blake3:" + "0" * 64


def event_digest(seq: int, time: float, kind: str, actor: str, subject: str, payload: str, prev: str) -> str:
    return digest_json(
        {"seq": seq, "time": time, "kind": kind, "actor": actor, "subject": subject, "payload": payload, "prev": prev}
    )


def verify_chain(rows: Iterable[Mapping[str, Any]]) -> str:
    """'' when the chain is intact, else a sentence naming the first bad event."""
    prev = GENESIS
    expected_seq = 1
    for row in rows:
        seq = int(row["seq"])
        if seq != expected_seq:
            return f"event {expected_seq} is missing (the log jumps to {seq})"
        if row["prev"] != prev:
            return f"event {seq} does not follow event {seq - 1}: an event was deleted or inserted"
        digest = event_digest(seq, row["time"], row["kind"], row["actor"], row["subject"], row["payload"], row["prev"])
        if digest != row["digest"]:
            return f"event {seq} ({row['kind']} {row['subject']}) was edited"
        prev = row["digest"]
        expected_seq += 1
    return ""
