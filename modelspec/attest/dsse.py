"""DSSE envelopes (the Dead Simple Signing Envelope) signed with ed25519.

A signature covers PAE(payloadType, payload), the spec's pre-authentication encoding,
never the payload alone, so a signature made for one payload type cannot be passed off as
one for another. The envelope is the JSON the spec describes: the payload in base64, its
type and the signatures, each with the key id of the key that made it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..digest import canonical_json
from .keys import SigningKey, TrustedKey

IN_TOTO = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """`DSSEv1 SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal bytes."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature)

    def to_json(self) -> bytes:
        """One line of canonical JSON (the line of a `.intoto.jsonl` file, without its newline)."""
        return canonical_json(
            {
                "payloadType": self.payload_type,
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "signatures": [
                    {"keyid": keyid, "sig": base64.b64encode(sig).decode("ascii")} for keyid, sig in self.signatures
                ],
            }
        )

    @property
    def keyids(self) -> list[str]:
        return [keyid for keyid, _ in self.signatures]

    def statement(self) -> dict[str, Any]:
        """The payload as JSON; ValueError when it is not a JSON object."""
        value = json.loads(self.payload)
        if not isinstance(value, dict):
            raise ValueError("the payload is not a JSON object")
        return value


def sign(payload_type: str, payload: bytes, key: SigningKey | None) -> Envelope:
    """An envelope of `payload`, signed when a key is given (else with no signature)."""
    if key is None:
        return Envelope(payload_type, payload, ())
    return Envelope(payload_type, payload, ((key.keyid, key.sign(pae(payload_type, payload))),))


def parse(data: bytes) -> Envelope:
    """An envelope from its JSON; ValueError saying what is wrong with it."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, Mapping):
        raise ValueError("not a DSSE envelope (a JSON object)")
    try:
        payload = base64.b64decode(str(document["payload"]), validate=True)
        signatures = tuple(
            (str(s.get("keyid", "")), base64.b64decode(str(s["sig"]), validate=True)) for s in document["signatures"]
        )
        return Envelope(str(document["payloadType"]), payload, signatures)
    except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise ValueError(f"not a DSSE envelope ({type(exc).__name__}: {exc})") from None


def trusted_signers(envelope: Envelope, trusted: Mapping[str, TrustedKey]) -> tuple[list[str], list[str]]:
    """(key ids of trusted keys whose signature verifies, key ids whose signature does not:
    a trusted key with a bad signature, or a key nobody trusts)."""
    message = pae(envelope.payload_type, envelope.payload)
    good, bad = [], []
    for keyid, sig in envelope.signatures:
        key = trusted.get(keyid)
        if key is not None and key.verify(message, sig):
            good.append(keyid)
        else:
            bad.append(keyid)
    return good, bad
