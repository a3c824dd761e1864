"""ed25519 keys: the workspace's signing key and the public keys it trusts.

The private key is a PKCS#8 PEM file, mode 0600, at `.modelspec/keys/signing.pem` (beside
the store, never committed), or the PEM text in `MODELSPEC_SIGNING_KEY` (for CI, where
secrets come from the environment). Trusted public keys are listed in `modelspec.yaml`
under `trusted_keys:` (key id → raw public key in base64), reviewed like any other change.
A key id is the hex sha256 of the raw 32-byte public key. `cryptography` is imported only
when a key is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..store.files import write_atomic

KEY_ENV = "MODELSPEC_SIGNING_KEY"
KEY_FILE = Path("keys") / "signing.pem"  # under the workspace's store directory
_TRUSTED_LINE = re.compile(r"^trusted_keys:[ \t]*(#.*)?$", re.MULTILINE)


def keyid_of(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()


@dataclass(frozen=True)
class TrustedKey:
    keyid: str
    public: bytes  # raw, 32 bytes

    @property
    def text(self) -> str:
        return base64.b64encode(self.public).decode("ascii")

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    pem: bytes = b""
    source: str = ""  # the file it was read from, or the environment variable

    @property
    def _key(self) -> Any:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(self.pem, password=None)
        except (ValueError, TypeError) as exc:
            raise UsageError(
                f"{self.source} is not an unencrypted PEM private key ({exc})",
                hint="make one with `modelspec keys generate`",
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise UsageError(f"{self.source} is not an ed25519 key", hint="make one with `modelspec keys generate`")
        return key

    @property
    def public(self) -> TrustedKey:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return TrustedKey(keyid_of(raw), raw)

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, message: bytes) -> bytes:
        signature: bytes = self._key.sign(message)
        return signature


def signing_key(home: Path) -> SigningKey | None:
    """The key builds and checkpoints sign with: `MODELSPEC_SIGNING_KEY`, else the workspace's
    key file, else None (statements are then unsigned)."""
    text = os.environ.get(KEY_ENV)
    if text:
        return SigningKey(text.encode(), KEY_ENV)
    path = home / KEY_FILE
    try:
        return SigningKey(path.read_bytes(), str(path))
    except FileNotFoundError:
        return None


def generate(home: Path, force: bool = False) -> SigningKey:
    """A new key written to the workspace's key file, readable by its owner only."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    path = home / KEY_FILE
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", hint="`modelspec keys generate --force` replaces it")
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, not even briefly
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return SigningKey(pem, str(path))


def public_key_from(text: str) -> TrustedKey:
    """A public key given as base64 of its 32 raw bytes, or as a PEM file's path or text."""
    candidate = text.strip()
    if not candidate.startswith("-----BEGIN") and os.path.isfile(candidate):
        candidate = Path(candidate).read_text(errors="replace")
    if candidate.startswith("-----BEGIN"):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

        try:
            key = load_pem_public_key(candidate.encode())
        except ValueError as exc:
            raise UsageError(f"not a PEM public key: {exc}", hint="give base64 of the raw key or a PEM file") from None
        if not isinstance(key, Ed25519PublicKey):
            raise UsageError("not an ed25519 public key", hint="modelspec signs with ed25519 keys only")
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return TrustedKey(keyid_of(raw), raw)
    try:
        raw = base64.b64decode(candidate, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise UsageError(
            f"not an ed25519 public key: {text[:60]!r}",
            hint="give the base64 `modelspec keys list` prints, or a PEM public key file",
        )
    return TrustedKey(keyid_of(raw), raw)


def trusted_keys(settings: Mapping[str, Any]) -> dict[str, TrustedKey]:
    """The workspace file's `trusted_keys` (validated by its schema), by key id."""
    found = {}
    for keyid, text in (settings.get("trusted_keys") or {}).items():
        key = public_key_from(str(text))
        if key.keyid != keyid:
            raise UsageError(
                f"modelspec.yaml: trusted_keys.{keyid}: the key's id is {key.keyid}",
                hint="trust it again with `modelspec keys trust KEY`, which writes the right id",
            )
        found[keyid] = key
    return found


def add_trusted(workspace_file: Path, key: TrustedKey) -> bool:
    """Add `key` under `trusted_keys:` in the workspace file, keeping every other line as it
    is; False when it was already there."""
    text = workspace_file.read_text() if workspace_file.exists() else ""
    text = text if not text or text.endswith("\n") else text + "\n"
    if key.keyid in text:
        return False
    entry = f"  {key.keyid}: {key.text}\n"
    text = re.sub(r"^trusted_keys:[ \t]*\{[ \t]*\}[ \t]*(#.*)?$", "trusted_keys:", text, flags=re.MULTILINE)
    found = _TRUSTED_LINE.search(text)
    if found is None:
        if re.search(r"^trusted_keys:", text, re.MULTILINE):
            raise UsageError(
                f"{workspace_file}: trusted_keys is not a block mapping",
                hint=f"add the line `{entry.strip()}` under trusted_keys yourself",
            )
        text += "trusted_keys:\n" + entry
    else:
        end = found.end() + 1
        text = text[:end] + entry + text[end:]
    write_atomic(workspace_file, text.encode())
    return True


def remove_trusted(workspace_file: Path, keyid: str) -> None:
    """Remove the line of `keyid` under `trusted_keys:` in the workspace file, keeping every
    other line as it is (the line `add_trusted` writes, or one like it)."""
    text = workspace_file.read_text() if workspace_file.exists() else ""
    block = _TRUSTED_LINE.search(text)
    line = re.compile(rf"^[ \t]+['\"]?{re.escape(keyid)}['\"]?[ \t]*:[^\n]*\n?", re.MULTILINE)
    found = line.search(text, block.end()) if block is not None else None
    if found is None:
        raise UsageError(
            f"{workspace_file}: trusted_keys.{keyid} is not a line of its own under trusted_keys",
            hint="remove the key from trusted_keys yourself",
        )
    remaining = text[: found.start()] + text[found.end() :]
    header = _TRUSTED_LINE.search(remaining)
    if header is not None and not re.match(r"\n[ \t]+\S", remaining[header.end() :]):
        # No key left: an empty mapping, not the null a bare `trusted_keys:` would be.
        remaining = remaining[: header.start()] + "trusted_keys: {}" + remaining[header.end() :]
    write_atomic(workspace_file, remaining.encode())
