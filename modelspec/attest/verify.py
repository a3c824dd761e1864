"""Checking a provenance envelope: its statement against the digest recorded for it, its
signatures against the trusted keys, and each subject's bytes against its two digests.
Each problem names what was tampered with: the artifact, the statement or the signature."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dsse
from .hashing import hash_file
from .keys import TrustedKey
from .statement import PREDICATE_TYPE, STATEMENT_TYPE


@dataclass(frozen=True)
class Checked:
    """What checking an envelope found: the statement (when it could be read), the trusted
    keys that signed it, and every problem."""

    statement: dict[str, Any] = field(default_factory=dict)
    signed_by: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    files: int = 0
    bytes: int = 0


def check_envelope(
    data: bytes,
    trusted: Mapping[str, TrustedKey],
    statement_sha256: str | None,
    allow_unsigned: bool = False,
    where: str = "the envelope",
) -> Checked:
    """The envelope's statement and signatures; `statement_sha256` is what the registry (or
    the export's manifest) recorded for the statement, None when nothing did."""
    try:
        envelope = dsse.parse(data)
        statement = envelope.statement()
    except ValueError as exc:
        return Checked(problems=(f"{where} is damaged: {exc}",))
    problems = []
    good, bad = dsse.trusted_signers(envelope, trusted)
    if statement_sha256 is not None and hashlib.sha256(envelope.payload).hexdigest() != statement_sha256:
        if good:  # a trusted signature holds: what changed is the record of the statement
            problems.append(f"the sha256 recorded for the statement in {where} was altered (its signature verifies)")
        else:
            problems.append(f"the statement in {where} was altered: its sha256 differs from the one recorded for it")
    if envelope.payload_type != dsse.IN_TOTO:
        problems.append(f"{where} holds a {envelope.payload_type!r} payload, not an in-toto statement")
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"{where} does not hold an in-toto v1 statement of SLSA provenance v1")
    for keyid in bad:
        if keyid in trusted:
            if not problems:  # the statement is the one recorded: what changed is the signature
                problems.append(f"the signature by key {keyid[:16]} in {where} was altered: it does not verify")
            else:
                problems.append(f"the signature by key {keyid[:16]} does not verify over the altered statement")
    if not good and not allow_unsigned:
        if not envelope.signatures:
            problems.append(f"{where} is unsigned")
        elif not bad or all(k not in trusted for k in bad):
            problems.append(f"{where} is signed by no trusted key ({', '.join(k[:16] for k in bad)})")
    return Checked(statement, tuple(good), tuple(problems))


def check_subjects(statement: Mapping[str, Any], locate: Callable[[str], Path | None]) -> Checked:
    """Re-hash each subject (sha256 and blake3 in one pass) where `locate` finds it."""
    problems = []
    files = size = 0
    for subject in statement.get("subject") or []:
        name = str(subject.get("name", ""))
        digests = subject.get("digest") or {}
        path = locate(name)
        if path is None or not path.is_file():
            problems.append(f"artifact {name} is missing")
            continue
        found = hash_file(path)
        files += 1
        size += found.size
        differ = [alg for alg in ("sha256", "blake3") if digests.get(alg) != getattr(found, alg)]
        if differ:
            problems.append(f"artifact {name} was altered: its {' and '.join(differ)} differ from the statement's")
    return Checked(dict(statement), (), tuple(problems), files, size)


def subject_names(statement: Mapping[str, Any]) -> set[str]:
    return {str(s.get("name", "")) for s in statement.get("subject") or []}


def safe_name(name: str) -> bool:
    """A subject name that stays inside the directory it is looked up in."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def predicate_mismatches(statement: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Fields of the predicate that differ from what the registry (or manifest) says."""
    predicate = statement.get("predicate") or {}
    internal = (predicate.get("buildDefinition") or {}).get("internalParameters") or {}
    found = {
        "lock": internal.get("lock"),
        "contentId": internal.get("contentId"),
        "environment": internal.get("environment"),
        "hermetic": internal.get("hermetic"),
        "gitCommit": _commit(predicate),
        "artifacts": {ref: a.get("digest") for ref, a in (internal.get("artifacts") or {}).items()},
    }
    return [
        f"the statement's {key} ({found[key]!r:.80}) is not the registry's ({value!r:.80})"
        for key, value in expected.items()
        if found.get(key) != value
    ]


def _commit(predicate: Mapping[str, Any]) -> str:
    dependencies: Iterable[Mapping[str, Any]] = (predicate.get("buildDefinition") or {}).get(
        "resolvedDependencies"
    ) or []
    for dependency in dependencies:
        commit = (dependency.get("digest") or {}).get("gitCommit")
        if commit:
            return str(commit)
    return ""
