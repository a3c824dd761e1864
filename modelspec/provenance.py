"""`modelspec verify --provenance`: a version's (or an exported directory's) provenance
checked end to end: the envelope's statement against the digest recorded for it, its
signature against the trusted keys (`modelspec.yaml`'s and `--key`s), every artifact
re-hashed (sha256 and blake3 in one pass) against the statement's subjects, and the
predicate against the registry (or, for an export on a machine without the workspace,
against the export's manifest)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .attest.keys import TrustedKey, public_key_from, trusted_keys
from .attest.verify import Checked, check_envelope, check_subjects, predicate_mismatches, safe_name, subject_names
from .build.provenance import artifact_files
from .errors import StoreError, UsageError
from .spec.model import Lock
from .spec.schema import WORKSPACE_FILE
from .store.protocol import ObjectStore
from .store.workspace import Workspace

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ProvenanceReport:
    subject: str  # the version's ref, or the directory
    signed_by: tuple[str, ...]
    problems: tuple[str, ...]
    files: int
    bytes: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "ok": self.ok,
            "signed_by": list(self.signed_by),
            "problems": list(self.problems),
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }


def trusted(settings: Mapping[str, Any], keys: Sequence[str]) -> dict[str, TrustedKey]:
    found = trusted_keys(settings)
    for text in keys:
        key = public_key_from(text)
        found[key.keyid] = key
    return found


def verify_version(
    workspace: Workspace, ref: str, keys: Sequence[str] = (), allow_unsigned: bool = False
) -> ProvenanceReport:
    from .build.loading import open_registry

    started = time.perf_counter()
    store = workspace.store
    with open_registry(workspace, read_only=True) as registry:
        version = registry.resolve(ref)
        artifacts = registry.artifacts_of(version)
    provenance = version.record.get("provenance")
    if not provenance:
        raise UsageError(
            f"{version.ref} has no provenance (it was registered before modelspec recorded one)",
            hint="a version registered by this modelspec has one; `modelspec show` says which do",
        )
    lock = Lock.from_dict(json.loads(store.read_bytes(version.lock)))
    envelope = check_envelope(
        store.read_bytes(provenance["envelope"]),
        trusted(workspace.settings, keys),
        provenance.get("statement_sha256"),
        allow_unsigned,
        where=f"the provenance of {version.ref}",
    )
    # A cold artifact (chunks only) is made whole to be read: verify reads every byte anyway.
    files = {}
    for name, digest in artifact_files(store, artifacts, lock):
        with contextlib.suppress(StoreError):  # a missing one is named below, as in an export
            files[name] = store.path_of(digest) if store.is_whole(digest) else store.checked_path(digest)
    subjects = check_subjects(envelope.statement, files.get)
    expected = _expected(version, artifacts)
    extra = [
        f"artifact {name} is not in the statement" for name in sorted(set(files) - subject_names(envelope.statement))
    ]
    return _report(
        version.ref, envelope, subjects, [*extra, *predicate_mismatches(envelope.statement, expected)], started
    )


def verify_directory(
    directory: Path,
    settings: Mapping[str, Any],
    keys: Sequence[str] = (),
    allow_unsigned: bool = False,
    workspace: Workspace | None = None,
) -> ProvenanceReport:
    """An exported directory, on its own: no store or registry is needed. With a workspace
    whose registry has the version, the predicate is checked against the registry too."""
    started = time.perf_counter()
    try:
        manifest = json.loads((directory / MANIFEST).read_bytes())
        attestation = manifest["provenance"]
        envelope_file = directory / str(attestation["file"])
    except FileNotFoundError:
        raise UsageError(
            f"{directory} holds no {MANIFEST}", hint="give a directory `modelspec export` wrote, or a version"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            f"{directory / MANIFEST} names no provenance", hint="export the version again with this modelspec"
        ) from None
    if not envelope_file.is_file():
        raise UsageError(f"{envelope_file} is missing", hint="export the version again")
    lines = envelope_file.read_bytes().splitlines()
    envelope = check_envelope(
        lines[0] if lines else b"",
        trusted(settings, keys),
        attestation.get("statement_sha256"),
        allow_unsigned,
        where=envelope_file.name,
    )
    names = subject_names(envelope.statement)
    subjects = check_subjects(envelope.statement, lambda name: directory / name if safe_name(name) else None)
    ignored = {MANIFEST, envelope_file.name}
    on_disk = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - ignored
    extra = [f"{name} is in the export but not in the statement" for name in sorted(on_disk - names)]
    lock = manifest.get("lock") or {}
    expected = {
        "contentId": manifest.get("content_id"),
        "gitCommit": (lock.get("code") or {}).get("commit", ""),
        "artifacts": {ref: a.get("digest") for ref, a in (manifest.get("artifacts") or {}).items()},
    }
    mismatches = [
        m.replace("the registry's", "the manifest's") for m in predicate_mismatches(envelope.statement, expected)
    ]
    ref = f"{manifest.get('name')}@{manifest.get('version')}"
    registered = _registered(workspace, ref) if workspace is not None else None
    if registered is not None:
        mismatches += predicate_mismatches(envelope.statement, registered)
    subject = f"{ref} in {directory}" + (" (and in the registry)" if registered is not None else "")
    return _report(subject, envelope, subjects, [*extra, *mismatches], started)


def _registered(workspace: Workspace, ref: str) -> dict[str, Any] | None:
    """What the workspace's registry says of `ref`, as `predicate_mismatches` compares it;
    None when there is no registry or it has no such version."""
    from .build.loading import open_registry, registry_exists

    if not registry_exists(workspace):
        return None
    try:
        with open_registry(workspace, read_only=True) as registry:
            version = registry.resolve(ref)
            artifacts = registry.artifacts_of(version)
    except (UsageError, StoreError):
        return None
    return _expected(version, artifacts)


def _expected(version: Any, artifacts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "lock": version.lock,
        "contentId": version.content_id,
        "environment": version.environment,
        "hermetic": version.hermetic,
        "gitCommit": version.commit,
        "artifacts": {ref: a["digest"] for ref, a in artifacts.items()},
    }


def _report(subject: str, envelope: Checked, subjects: Checked, more: list[str], started: float) -> ProvenanceReport:
    problems = (*envelope.problems, *subjects.problems, *more)
    seconds = time.perf_counter() - started
    return ProvenanceReport(subject, envelope.signed_by, problems, subjects.files, subjects.bytes, seconds)


def read_statement(store: ObjectStore, info: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance statement of a version (`info` as `show` gives it), from its envelope."""
    from .attest.dsse import parse

    provenance = info.get("provenance")
    if not provenance:
        raise UsageError(
            f"{info['ref']} has no provenance (it was registered before modelspec recorded one)",
            hint="`modelspec show REF` says which versions have one",
        )
    return parse(store.read_bytes(provenance["envelope"])).statement()


# -- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    keyid: str
    public: str  # base64 of the raw key
    source: str  # the key file or environment variable; "modelspec.yaml" for a trusted key
    signing: bool
    trusted: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("keyid", "public", "source", "signing", "trusted")}


def generate_key(workspace: Workspace, force: bool = False, trust: bool = True) -> KeyInfo:
    """A new signing key in the workspace (0600), trusted in its modelspec.yaml unless not `trust`."""
    from .attest.keys import add_trusted, generate

    key = generate(workspace.home, force)
    public = key.public
    if trust:
        add_trusted(workspace.root / WORKSPACE_FILE, public)
    return KeyInfo(public.keyid, public.text, key.source, True, trust)


def trust_key(workspace: Workspace, text: str) -> tuple[KeyInfo, bool]:
    """Trust a public key (base64, or a PEM file or text): written to modelspec.yaml; and
    whether it was new there."""
    from .attest.keys import add_trusted

    key = public_key_from(text)
    added = add_trusted(workspace.root / WORKSPACE_FILE, key)
    return KeyInfo(key.keyid, key.text, WORKSPACE_FILE, False, True), added


def untrust_key(workspace: Workspace, text: str, force: bool = False) -> KeyInfo:
    """Stop trusting a key (its id, a prefix of 8 or more characters, or the key itself):
    removed from modelspec.yaml's trusted_keys, so that versions signed only by it no longer
    verify. The workspace's own signing key only with `force`."""
    from .attest.keys import remove_trusted, signing_key

    trusted = trusted_keys(workspace.settings)
    if text and all(c in "0123456789abcdef" for c in text):
        if len(text) < 8:
            raise UsageError(
                f"{text!r} is too short a key id: give 8 or more of its characters",
                hint="`modelspec keys list` prints each key's id",
            )
        matching = [keyid for keyid in trusted if keyid.startswith(text)]
    else:
        matching = [keyid for keyid in trusted if keyid == public_key_from(text).keyid]
    if len(matching) != 1:
        raise UsageError(
            f"{text!r} {'names more than one' if matching else 'is not a'} trusted key",
            hint=f"the trusted keys: {', '.join(k[:16] for k in sorted(trusted)) or 'none'} (`modelspec keys list`)",
        )
    keyid = matching[0]
    signer = signing_key(workspace.home)
    signs = signer is not None and signer.public.keyid == keyid
    if signs and not force:
        raise UsageError(
            f"{keyid[:16]} is this workspace's signing key: its builds would sign with a key verify refuses",
            hint="make a new one first (`modelspec keys generate --force`, trusted at once), or give --force",
        )
    remove_trusted(workspace.root / WORKSPACE_FILE, keyid)
    return KeyInfo(
        keyid, trusted[keyid].text, WORKSPACE_FILE, signer is not None and signer.public.keyid == keyid, False
    )


def list_keys(workspace: Workspace) -> list[KeyInfo]:
    """The signing key (if any) and every trusted key."""
    from .attest.keys import signing_key

    found = trusted_keys(workspace.settings)
    keys = []
    signer = signing_key(workspace.home)
    if signer is not None:
        public = signer.public
        keys.append(KeyInfo(public.keyid, public.text, signer.source, True, public.keyid in found))
    for keyid, key in sorted(found.items()):
        if signer is None or keyid != keys[0].keyid:
            keys.append(KeyInfo(keyid, key.text, WORKSPACE_FILE, False, True))
    return keys
