"""A version's provenance, made at registration: its artifacts hashed (sha256 and blake3 in
one read of each stored file, which also re-checks the store's digest), the in-toto
statement (attest/statement.py), and its DSSE envelope, signed when the workspace has a
signing key, put in the store. The version's record names the envelope."""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import __version__
from ..attest import dsse
from ..attest.hashing import HashingSink, hash_file
from ..attest.keys import signing_key
from ..attest.statement import BuildFacts, Subject, data_dependency, statement
from ..digest import PREFIX, canonical_json, hex_of
from ..errors import CorruptObjectError, StoreError
from ..spec.lockdata import PathData, RegisteredData
from ..spec.model import Lock, split_output_ref
from ..store.objects import LocalStore
from ..store.workspace import Workspace

RemoteRead = Callable[[str, Any], int]  # (digest, writable) → size: a remote's object streamed, verified


def export_path(lock: Lock, ref: str) -> str:
    """Where `export` writes artifact `ref`: `stage/` and the output's declared path."""
    stage, output = split_output_ref(ref)
    # As `(Path(stage) / output).as_posix()` for the relative paths without `..` a spec
    # declares, at a tenth of the cost (a version of 1,000 artifacts asks twice for each).
    return posixpath.normpath(f"{stage}/{lock.stages[stage].outputs[output]}")


def artifact_files(store: LocalStore, artifacts: Mapping[str, Mapping[str, Any]], lock: Lock) -> list[tuple[str, str]]:
    """(export path, object digest) of every artifact file: a directory artifact's files below it."""
    found: list[tuple[str, str]] = []
    for ref, entry in sorted(artifacts.items()):
        _walk(store, str(entry["type"]), str(entry["digest"]), export_path(lock, ref), found)
    return found


def _walk(store: LocalStore, kind: str, digest: str, name: str, found: list[tuple[str, str]]) -> None:
    if kind == "tree":
        for child, entry in sorted(store.read_tree(digest).items()):
            _walk(store, str(entry["type"]), str(entry["digest"]), f"{name}/{child}", found)
    else:
        found.append((name, digest))


def subjects(
    store: LocalStore,
    artifacts: Mapping[str, Mapping[str, Any]],
    lock: Lock,
    read_remote: RemoteRead | None = None,
    attested: Mapping[str, str] | None = None,
) -> list[Subject]:
    """Every artifact file, hashed from the store (or as `read_remote` streams one the
    store lacks: left on the remote by `build --no-download`); a file an earlier statement
    attested (`attested`: blake3 hex → sha256 hex) is not hashed again."""
    found = []
    for name, digest in artifact_files(store, artifacts, lock):
        known = (attested or {}).get(hex_of(digest))
        if known is not None:
            found.append(Subject(name, known, hex_of(digest)))
            continue
        if store.is_whole(digest):
            digests = hash_file(store.path_of(digest))
        else:  # cold (chunks only: reassembled as it is hashed), or left on the remote
            sink = HashingSink()
            if store.has(digest) or read_remote is None:
                store.chunks.write_to(digest, sink)  # checked against its digest; missing: an error
            else:
                read_remote(digest, sink)
            digests = sink.digests()
        if PREFIX + digests.blake3 != digest:  # the same read checks the store: a corrupt object is never attested
            store.quarantine(digest)
            raise CorruptObjectError(f"{name}: stored object {digest} is corrupt", hint="run `modelspec verify`")
        found.append(Subject(name, digests.sha256, digests.blake3))
    return found


def attested_sha256(store: LocalStore, envelope: str | None) -> dict[str, str]:
    """blake3 hex → sha256 hex of each subject of an earlier statement in this store (an
    earlier version's), so that a new version re-hashes only the artifacts that changed: a
    retrain that keeps a 1 GiB file paid ~0.7 s for its sha256 again. The statement is
    read from the store, which checks it against its digest; {} when there is none to read."""
    if envelope is None:
        return {}
    try:
        statement = dsse.parse(store.read_bytes(envelope)).statement()
        return {str(s["digest"]["blake3"]): str(s["digest"]["sha256"]) for s in statement["subject"]}
    except (StoreError, ValueError, KeyError, TypeError):
        return {}


def data_dependencies(lock: Lock) -> list[dict[str, Any]]:
    """The data inputs pinned by the lock as resolved dependencies (those from another spec
    of the same build are known only at registration: the caller adds them)."""
    found = []
    for name, data in sorted(lock.data.items()):
        if isinstance(data, PathData):
            found.append(data_dependency(name, f"file:{data.path}", data.entry.get("digest")))
        elif isinstance(data, RegisteredData):
            found.append(
                data_dependency(
                    name,
                    f"modelspec:{data.registered}",
                    data.digest,
                    output=data.output,
                    contentId=data.content_id,
                )
            )
    return found


def make_provenance(
    workspace: Workspace,
    lock: Lock,
    record: Mapping[str, Any],
    facts: dict[str, Any],
    upstream: list[dict[str, Any]],
    read_remote: RemoteRead | None = None,
    earlier: str | None = None,
) -> dict[str, Any]:
    """Hash, describe, sign and store; what the version's record keeps about it. `earlier`:
    the envelope of an earlier version's statement, whose artifacts need no hashing again."""
    store = workspace.store
    artifacts = {ref: {**entry, "path": export_path(lock, ref)} for ref, entry in record["artifacts"].items()}
    built = BuildFacts(
        **facts,
        data=[*data_dependencies(lock), *upstream],
        artifacts=artifacts,
        logs={node.partition(":")[2]: info["log"] for node, info in record["nodes"].items()},
        metrics=record["metrics"],
        tool_version=__version__,
        finished=time.time(),
    )
    hashed = subjects(store, record["artifacts"], lock, read_remote, attested_sha256(store, earlier))
    payload = canonical_json(statement(built, hashed))
    envelope = dsse.sign(dsse.IN_TOTO, payload, signing_key(workspace.home))
    return {
        "envelope": store.put_bytes(envelope.to_json()),
        "statement_sha256": hashlib.sha256(payload).hexdigest(),
        "keyids": envelope.keyids,
    }
