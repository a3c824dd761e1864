"""The pieces of attestation on their own: DSSE's PAE against the spec's test vector,
sha256 and blake3 in one pass against hashlib and blake3, and trusting a key in the
workspace file without disturbing its other lines."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import blake3
import pytest
import yaml

from modelspec.attest import dsse
from modelspec.attest.hashing import BLOCK, hash_file
from modelspec.attest.keys import add_trusted, generate, public_key_from, remove_trusted, trusted_keys
from modelspec.errors import UsageError


def test_pae_is_the_dsse_specs_test_vector() -> None:
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@pytest.mark.parametrize("size", [0, 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345])
def test_both_digests_in_one_pass_match_the_libraries(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    found = hash_file(path)
    assert (found.sha256, found.blake3, found.size) == (
        hashlib.sha256(data).hexdigest(),
        blake3.blake3(data).hexdigest(),
        size,
    )


def test_sign_parse_and_verify_round_trip(tmp_path: Path) -> None:
    key = generate(tmp_path)
    assert oct((tmp_path / "keys" / "signing.pem").stat().st_mode & 0o777) == "0o600"
    envelope = dsse.sign(dsse.IN_TOTO, b'{"a": 1}', key)
    parsed = dsse.parse(envelope.to_json())
    assert parsed == envelope
    trusted = {key.keyid: key.public}
    assert dsse.trusted_signers(parsed, trusted) == ([key.keyid], [])
    forged = dsse.Envelope(parsed.payload_type, b'{"a": 2}', parsed.signatures)
    assert dsse.trusted_signers(forged, trusted) == ([], [key.keyid])
    # A signature for another payload type is not one for this type (why PAE exists).
    retyped = dsse.Envelope("application/json", parsed.payload, parsed.signatures)
    assert dsse.trusted_signers(retyped, trusted) == ([], [key.keyid])
    with pytest.raises(UsageError, match="already exists"):
        generate(tmp_path)
    for damaged in (b"{", b"[]", b'{"payload": "!!", "payloadType": "x", "signatures": []}'):
        with pytest.raises(ValueError):
            dsse.parse(damaged)


WORKSPACE_FILES = [
    "",
    "store: .modelspec",
    "# a comment\nstore: .modelspec\n",
    "trusted_keys: {}\n",
    "trusted_keys:  # ours\n",
]


@pytest.mark.parametrize("before", WORKSPACE_FILES)
def test_trusting_and_untrusting_keys_keeps_the_rest_of_the_workspace_file(tmp_path: Path, before: str) -> None:
    key = generate(tmp_path).public
    other = generate(tmp_path / "other").public
    path = tmp_path / "modelspec.yaml"
    path.write_text(before)

    def kept() -> bool:
        return all(line in path.read_text() for line in before.splitlines() if not line.startswith("trusted_keys:"))

    assert add_trusted(path, key) is True
    assert add_trusted(path, key) is False
    assert add_trusted(path, other) is True
    assert set(trusted_keys(yaml.safe_load(path.read_text()))) == {key.keyid, other.keyid} and kept()
    remove_trusted(path, key.keyid)
    assert set(trusted_keys(yaml.safe_load(path.read_text()))) == {other.keyid}
    remove_trusted(path, other.keyid)
    assert yaml.safe_load(path.read_text()).get("trusted_keys") == {} and kept()  # an empty mapping, never null
    with pytest.raises(UsageError, match="is not a line of its own under trusted_keys"):
        remove_trusted(path, key.keyid)


def test_public_keys_in_each_form(tmp_path: Path) -> None:
    key = generate(tmp_path).public
    assert public_key_from(key.text) == key
    with pytest.raises(UsageError, match="not an ed25519 public key"):
        public_key_from(base64.b64encode(b"x" * 31).decode())
    with pytest.raises(UsageError, match="the key's id is"):
        trusted_keys({"trusted_keys": {"0" * 64: key.text}})
