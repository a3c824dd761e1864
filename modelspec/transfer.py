"""push, fetch, pull and `remote status`: versions between a workspace and its remote.

- `push [REF…]` uploads every object the versions need to be reproduced (none without REF:
  every active version and each spec's last build), then their stages' action-cache entries
  (last: an entry never names an object that is not there yet), then this workspace's roots
  (what it keeps, so that remote gc keeps it for it), all under a remote lease. Objects are
  created only if absent, so a push killed at any point leaves the remote consistent and the
  next push sends only what is missing.
- `fetch [REF…]` downloads what the versions need into the local store, each object verified
  before it enters it; `pull` also places their artifacts under `artifacts/<name>` (as
  `checkout` does).
- `remote status` compares what the workspace keeps with what the remote has.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .attest.checkpoint import DIRECTORY as CHECKPOINTS
from .attest.checkpoint import LATEST, every_digest
from .build.loading import open_existing_registry
from .build.needed import build_records, labelled_objects, needed_objects, version_entries
from .errors import UsageError
from .events import Event, Reporter, ignore
from .registry.registry import ModelVersion, Registry
from .retention.remote_gc import kept_objects
from .spec.model import split_output_ref
from .store.files import remove_path
from .store.objects import Entry, LocalStore
from .store.progress import Progress
from .store.remote_cache import ROOTS, Remote, RemoteLease, read_condemned, read_roots, write_roots
from .store.remote_cache import require_remote as require_remote_of
from .store.remote_chunks import chunk_members
from .store.remote_recipes import chunk_digest
from .store.traces import ActionCache, ActionResult
from .store.workspace import CHECKOUT_DIR, Workspace

DEFAULT_JOBS = 16  # transfers are waits on the network, not work for the CPU


@dataclass
class TransferReport:
    direction: str
    url: str
    versions: list[str] = field(default_factory=list)
    objects: int = 0  # objects the versions need
    transferred: int = 0  # of those, sent or received now (the rest were there)
    bytes: int = 0  # bytes sent or received
    entries: int = 0  # action-cache entries written (push)
    placed: dict[str, str] = field(default_factory=dict)  # artifact → path (pull)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "remote": self.url,
            "versions": self.versions,
            "objects": self.objects,
            "transferred": self.transferred,
            "bytes": self.bytes,
            "action_cache_entries": self.entries,
            "placed": self.placed,
            "seconds": round(self.seconds, 3),
        }


def require_remote(workspace: Workspace) -> Remote:
    return require_remote_of(workspace.settings, workspace.home, workspace.root)


def _progress(reporter: Reporter, what: str) -> Callable[[Progress], None]:
    def report(progress: Progress) -> None:
        reporter(
            Event(
                "transfer",
                data={
                    "what": what,
                    "done": progress.done,
                    "total": progress.total,
                    "bytes": progress.bytes,
                    "total_bytes": progress.total_bytes,
                },
            )
        )

    return report


def _versions(registry: Registry, refs: Iterable[str], *, newest: bool = False) -> list[ModelVersion]:
    """The versions REFs name; without REFs every active one (`newest`: each model's newest)."""
    refs = list(refs)
    if not refs and newest:
        active = registry.versions_by_status("active")
        names = sorted({v.name for v in active})
        return [max((v for v in active if v.name == name), key=lambda v: v.id) for name in names]
    if not refs:
        return registry.versions_by_status("active")
    versions = []
    for ref in refs:
        version = registry.resolve(ref)
        if version.status != "active":
            raise UsageError(
                f"{version.ref} is {version.status}: its artifacts are gone", hint="pick an active version"
            )
        versions.append(version)
    return versions


def push(
    workspace: Workspace,
    refs: Iterable[str] = (),
    *,
    jobs: int = DEFAULT_JOBS,
    reporter: Reporter = ignore,
) -> TransferReport:
    started = time.monotonic()
    remote = require_remote(workspace)
    store = workspace.store
    store.clean_temp()
    with open_existing_registry(workspace) as registry:
        versions = _versions(registry, refs)
        wanted: set[str] = set()
        for version in versions:
            wanted |= set(labelled_objects(store, version_entries(version)))
        records = [] if list(refs) else build_records(workspace)
        wanted |= set(needed_objects(store, [], records))
        anchors = {digest for digest in every_digest(workspace.home) if store.has(digest)}
        wanted |= anchors  # the audit log's checkpoints, kept on the remote too
        results = _stage_results(workspace, versions, records)
        roots = kept_objects(workspace, registry)
    report = TransferReport("push", remote.url, [v.ref for v in versions])
    with RemoteLease(remote.blobs) as lease:
        lease.add(wanted)  # before the existence checks: a concurrent remote gc keeps them
        condemned = read_condemned(remote.blobs)
        progress = remote.store.upload(store, wanted, jobs=jobs, report=_progress(reporter, "upload"), hold=lease.add)
        for result in results:
            objects = [d for entry in result.outputs.values() for d in store.tree_objects(entry)]
            report.entries += int(remote.cache.put(result, [*objects, result.log]))
        write_roots(remote.blobs, remote.workspace_id, roots, {"root": str(workspace.root)})
        latest = workspace.home / CHECKPOINTS / LATEST
        if anchors and latest.is_file():  # which checkpoint is this workspace's latest, beside its roots
            remote.blobs.replace(f"{CHECKPOINTS}/{remote.workspace_id}", latest.read_bytes())
        # An object found there that a remote gc had condemned may have been deleted since
        # by a gc whose sweep began before this push's lease was visible: check, send again.
        lost = remote.store.missing(progress.present & set(condemned), jobs)
        if lost:
            again = remote.store.upload(store, lost, jobs=jobs, hold=lease.add)
            progress.transferred += again.transferred
            progress.moved_bytes += again.moved_bytes
    report.objects, report.transferred, report.bytes = progress.total, progress.transferred, progress.moved_bytes
    report.seconds = time.monotonic() - started
    return report


def _stage_results(
    workspace: Workspace, versions: list[ModelVersion], records: list[dict[str, Any]]
) -> list[ActionResult]:
    """The action-cache entries of the versions' and last builds' stages, as the local
    cache has them (one a later build replaced is skipped: it is the remote's to keep)."""
    cache = ActionCache(workspace.action_cache_dir, workspace.store.tmp)
    keys = {info["key"] for version in versions for info in version.record.get("stages", {}).values()}
    keys |= {info["key"] for record in records for info in record["nodes"].values()}
    found = (cache.get(key) for key in sorted(keys))
    return [result for result in found if result is not None and all(workspace.store.has(d) for d in _digests(result))]


def _digests(result: ActionResult) -> list[str]:
    return [*(entry.digest for entry in result.outputs.values()), result.log]


def fetch(
    workspace: Workspace,
    refs: Iterable[str] = (),
    *,
    jobs: int = DEFAULT_JOBS,
    reporter: Reporter = ignore,
    direction: str = "fetch",
    newest: bool = False,
) -> tuple[TransferReport, list[tuple[ModelVersion, dict[str, dict[str, Any]]]]]:
    """The report, and each version with its artifacts."""
    started = time.monotonic()
    remote = require_remote(workspace)
    store = workspace.store
    store.clean_temp()
    with open_existing_registry(workspace) as registry:
        versions = _versions(registry, refs, newest=newest)
        artifacts = [(version, registry.artifacts_of(version)) for version in versions]
    wanted: set[str] = set()
    for version in versions:
        for _what, entry in version_entries(version):
            wanted |= _objects_below(entry, store, remote)
    lacking = {d for d in wanted if not store.has(d)}  # what is here need not be there
    absent = remote.store.missing(lacking, jobs) if lacking else set()
    if absent:
        sample = sorted(absent)[0]
        raise UsageError(
            f"the remote {remote.url} lacks {len(absent)} of the objects these versions need and this workspace "
            f"does not have (e.g. {sample})",
            hint="push them from a workspace that has them (`modelspec push REF`)",
        )
    progress = remote.store.download(store, wanted, jobs=jobs, report=_progress(reporter, "download"))
    report = TransferReport(direction, remote.url, [v.ref for v in versions])
    report.objects, report.transferred, report.bytes = progress.total, progress.transferred, progress.moved_bytes
    report.seconds = time.monotonic() - started
    return report, artifacts


def _objects_below(entry: Entry, local: LocalStore, remote: Remote) -> set[str]:
    """The entry's objects; each tree document read locally when it is there, else from
    the remote (verified), to learn what is below it."""
    found = {entry.digest}
    if entry.type == "tree":
        tree = local.read_tree(entry.digest) if local.has(entry.digest) else remote.store.read_tree(entry.digest)
        for child in tree.values():
            found |= _objects_below(Entry(str(child["type"]), str(child["digest"]), 0), local, remote)
    return found


def pull(
    workspace: Workspace,
    refs: Iterable[str],
    *,
    out: Path | None = None,
    jobs: int = DEFAULT_JOBS,
    reporter: Reporter = ignore,
) -> TransferReport:
    """fetch, then each version's artifacts under `out` (default artifacts/<name>); without
    REFs, each model's newest active version."""
    started = time.monotonic()
    report, versions = fetch(workspace, refs, jobs=jobs, reporter=reporter, direction="pull", newest=True)
    if len({v.name for v, _a in versions}) < len(versions):
        raise UsageError("pull places one version of each model: name one REF per model")
    for version, artifacts in versions:
        target = (
            (out / version.name if len(versions) > 1 else out) if out else workspace.root / CHECKOUT_DIR / version.name
        )
        report.placed.update(_place(workspace.store, version, artifacts, target))
    report.seconds = time.monotonic() - started
    return report


def _place(
    store: LocalStore, version: ModelVersion, artifacts: dict[str, dict[str, Any]], target: Path
) -> dict[str, str]:
    import json

    from .spec.model import Lock

    lock = Lock.from_dict(json.loads(store.read_bytes(version.lock)))
    placed = {}
    for ref, artifact in sorted(artifacts.items()):
        stage, output = split_output_ref(ref)
        dest = target / stage / lock.stages[stage].outputs[output]
        if dest.exists() or dest.is_symlink():
            remove_path(dest)
        store.restore(Entry.from_dict(artifact), dest, link=False)
        placed[f"{version.ref}:{ref}"] = os.path.abspath(dest)
    return placed


def forget(workspace: Workspace, workspace_id: str) -> bool:
    """Drop a workspace's roots from the remote (one that is gone for good): remote gc no
    longer keeps what only it needed. False if the remote has no such roots."""
    remote = require_remote(workspace)
    name = f"{ROOTS}{workspace_id}.json"
    if remote.blobs.head(name) is None:
        return False
    remote.blobs.delete([name])
    return True


def status(workspace: Workspace, *, jobs: int = DEFAULT_JOBS) -> dict[str, Any]:
    """What the workspace keeps that the remote lacks (a push would send), what the remote
    has that the local store lacks, the workspaces that publish roots, and the leases."""
    remote = require_remote(workspace)
    with open_existing_registry(workspace, read_only=True) as registry:
        kept = kept_objects(workspace, registry)
    local_only = remote.store.missing(kept, jobs)
    recipes = remote.store.recipes.listed()
    read = remote.store.recipes.get_all(recipes, jobs, damaged=True)  # a damaged recipe names none
    chunks = {chunk_digest(c) for recipe in read.values() for c, _n in recipe.chunks}
    remote.store.packs.refresh(jobs)
    parts = chunk_members(remote.store, chunks)  # parts of large objects (or of none), not objects
    remote_all = set(remote.store.loose()) | (set(remote.store.packs.members()) - parts) | recipes.keys()
    local_all = set(workspace.store.iter())
    entries = sum(len(names) for _key, names in remote.cache.by_key())
    roots = read_roots(remote.blobs)
    return {
        "remote": remote.url,
        "workspace": remote.workspace_id,
        "kept_objects": len(kept),
        "not_on_remote": len(local_only),
        "remote_objects": len(remote_all),
        "remote_chunked_objects": len(recipes),
        "remote_chunks": len(chunks),
        "remote_orphan_chunks": len(parts - chunks),  # no recipe names them: remote gc reclaims them
        "remote_only": len(remote_all - local_all),
        "action_cache_entries": entries,
        "workspaces": [
            {"id": ident, "root": doc.get("root"), "updated": doc.get("updated"), "objects": len(doc["objects"])}
            for ident, doc in sorted(roots.items())
        ],
    }


@dataclass
class RemoteVerifyReport:
    url: str
    checked: int = 0  # objects (large ones among them)
    bytes: int = 0
    large_objects: int = 0  # objects stored as a recipe and chunks
    chunks: int = 0  # their chunks, each checked (not objects)
    orphan_chunks: int = 0  # of those, chunks no recipe names (remote gc reclaims them)
    corrupt: list[str] = field(default_factory=list)  # quarantined on the remote
    # action key → its node and the differing results (outputs by name → digest)
    nondeterministic: dict[str, dict[str, Any]] = field(default_factory=dict)
    dangling: list[str] = field(default_factory=list)  # entries naming an object the remote lacks

    @property
    def ok(self) -> bool:
        return not (self.corrupt or self.nondeterministic or self.dangling)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "remote": self.url,
            "checked": self.checked,
            "large_objects": self.large_objects,
            "chunks": self.chunks,
            "orphan_chunks": self.orphan_chunks,
            "bytes": self.bytes,
            "corrupt": self.corrupt,
            "nondeterministic": self.nondeterministic,
            "dangling_action_cache_entries": self.dangling,
        }


def verify_remote(workspace: Workspace, *, jobs: int = DEFAULT_JOBS, reporter: Reporter = ignore) -> RemoteVerifyReport:
    """Re-hash every object on the remote (a corrupt one is quarantined there), and read
    every action-cache entry: keys with two different results (a stage that is not
    deterministic) and entries naming an object the remote lacks are reported."""
    remote = require_remote(workspace)
    report = RemoteVerifyReport(remote.url)
    progress, report.corrupt, counted = remote.store.verify_all(jobs, _progress(reporter, "verify"))
    report.checked, report.large_objects, report.bytes = counted.objects, counted.large_objects, progress.moved_bytes
    report.chunks, report.orphan_chunks = counted.chunks, counted.orphans
    present = set(remote.store.iter())  # without what was just taken out of service
    for key, _names in remote.cache.by_key():
        entries = remote.cache.entries(key)
        if len(entries) > 1:
            report.nondeterministic[key] = {
                "node": entries[0].result.node,
                "results": [{n: e.digest for n, e in sorted(r.result.outputs.items())} for r in entries],
            }
        report.dangling += [entry.name for entry in entries if not set(entry.objects) <= present]
    return report
