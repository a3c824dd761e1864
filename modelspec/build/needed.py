"""The objects a version, or a spec's last build, needs in the store, and what each is.

One computation for the two readers that must agree: gc keeps these objects (its roots) and
`verify` checks them (and names them when one is missing or corrupt).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from ..spec.lockdata import PathData, RegisteredData, lock_data
from ..store.objects import Entry
from ..store.protocol import ObjectStore
from ..store.workspace import Workspace
from .registration import read_build_record

if TYPE_CHECKING:
    from ..registry.registry import ModelVersion


def metadata_entries(version: ModelVersion) -> list[tuple[str, Entry]]:
    """The small objects a version's metadata needs for ever, retired or not (`show`,
    `diff`, `lineage`, `drift` read them): its lock, its data profiles and the environment's
    lock file."""
    entries = [("the lock", Entry("file", version.lock, 0))]
    for name, digest in sorted(version.record.get("profiles", {}).items()):  # drift compares them for ever
        entries.append((f"the data profile of {name!r}", Entry("file", digest, 0)))
    provenance = version.record.get("provenance")
    if provenance:  # `verify --provenance` and export read it for ever
        entries.append(("the provenance envelope", Entry("file", provenance["envelope"], 0)))
    environment = version.record.get("environment")
    if environment and environment.get("kind") == "uv":
        entries.append(("the environment's lock file", Entry("file", environment["file_digest"], 0)))
    return entries


def version_entries(version: ModelVersion) -> list[tuple[str, Entry]]:
    """Every store entry a version's record names, with what it is: its lock, the
    environment's lock file, each stage's code snapshot, outputs and log, and its inputs."""
    record = version.record
    entries = metadata_entries(version)
    for name, document in sorted(record.get("data", {}).items()):
        data = lock_data(document)
        if isinstance(data, RegisteredData):
            entries.append((f"the input {name!r} from {data.registered}", Entry.from_dict(document)))
        elif isinstance(data, PathData) and "digest" in data.entry:
            entries.append((f"the data snapshot {name!r}", Entry.from_dict(document)))
    for name, artifact in sorted(record.get("upstream_artifacts", {}).items()):
        entries.append((f"the input {name!r}", Entry.from_dict(artifact)))
    for stage, info in sorted(record.get("stages", {}).items()):
        entries.append((f"the code snapshot of stage {stage}", Entry.from_dict(info["code"])))
        entries.append((f"the log of stage {stage}", Entry("file", info["log"], 0)))
        for output, entry in sorted(info.get("outputs", {}).items()):
            entries.append((f"the output {stage}.{output}", Entry.from_dict(entry)))
    return entries


def build_records(workspace: Workspace) -> list[dict[str, Any]]:
    """The build record of each spec built in the workspace (unreadable ones skipped)."""
    files = sorted(workspace.builds_dir.glob("*.json")) if workspace.builds_dir.is_dir() else []
    records = (read_build_record(workspace, file.stem) for file in files)
    return [record for record in records if record is not None]


def build_environment(store: ObjectStore, record: dict[str, Any]) -> dict[str, Any] | None:
    """The environment of a last build, as its stored lock names it (None when it has none or
    the lock cannot be read: verify reports that lock as missing or corrupt)."""
    with contextlib.suppress(StoreError, ValueError, KeyError, TypeError, AttributeError):
        environment = json.loads(store.read_bytes(record["lock"])).get("environment")
        return dict(environment) if environment else None
    return None


def build_entries(store: ObjectStore, record: dict[str, Any]) -> list[tuple[str, Entry]]:
    """Every store entry a last build's record names, with what it is: each stage's outputs
    and log, the lock, the artifacts and the environment's lock file."""
    name = record["name"]
    entries = []
    for node, info in sorted(record["nodes"].items()):
        for output, entry in sorted(info.get("outputs", {}).items()):
            entries.append((f"the output {output} of {node} (last build)", Entry.from_dict(entry)))
        entries.append((f"the log of {node} (last build)", Entry("file", info["log"], 0)))
    entries.append((f"the lock of {name} (last build)", Entry("file", record["lock"], 0)))
    for ref, artifact in sorted(record["artifacts"].items()):
        entries.append((f"the artifact {ref} of {name} (last build)", Entry.from_dict(artifact)))
    environment = build_environment(store, record)
    if environment:
        file = Entry("file", str(environment["file_digest"]), 0)
        entries.append((f"the environment's lock file of {name} (last build)", file))
    return entries


def expand(store: ObjectStore, entries: Iterable[Entry]) -> set[str]:
    """The entries' digests and, for trees, every object below them."""
    found: set[str] = set()
    for entry in entries:
        found.add(entry.digest)
        if entry.type == "tree":
            with contextlib.suppress(StoreError):  # a corrupt tree: verify checks the tree itself
                found.update(store.tree_objects(entry))
    return found


def labelled_objects(store: ObjectStore, entries: Iterable[tuple[str, Entry]]) -> dict[str, str]:
    """Every object the entries need (tree documents and the files below them), each with
    the label of the first entry that needs it."""
    what: dict[str, str] = {}
    for label, entry in entries:
        for digest in sorted(expand(store, [entry])):
            what.setdefault(digest, label)
    return what


def needed_objects(
    store: ObjectStore, versions: Iterable[ModelVersion], records: Iterable[dict[str, Any]]
) -> dict[str, str]:
    """The objects the versions and the last builds need, and what each is: gc's roots
    (besides leases and every version's metadata) and what `verify` checks."""
    what: dict[str, str] = {}
    for version in versions:
        for digest, label in labelled_objects(store, version_entries(version)).items():
            what.setdefault(digest, f"{label} of {version.ref}")
    for record in records:
        for digest, label in labelled_objects(store, build_entries(store, record)).items():
            what.setdefault(digest, label)
    return what
