"""`gc --remote`: free a shared remote of what no workspace needs, safely for every other
workspace that uses it (`dvc gc --cloud` deletes what other projects still use: this does not).

Roots: the roots document of every workspace that pushed to the remote (what it keeps:
its kept versions and last builds; this workspace's is written afresh first), the objects of
unexpired leases (builds and pushes running anywhere), and action-cache entries younger
than the grace period with everything they name. Nothing younger than the grace is swept.

Two steps, two runs apart, make an object's removal safe against a push that found it
present just before: an object no root needs is first *condemned* (recorded with the time
in `gc/condemned.json`), and only a later gc, at least the grace period after, deletes it —
if it is still unneeded then, with the leases read afresh. Action-cache entries naming an
unneeded object are deleted before any object (an entry is never left naming what is gone;
and a lookup verifies every object anyway, so a lost one is a miss, never a failure).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..attest.checkpoint import every_digest
from ..build.needed import build_records, metadata_entries, needed_objects
from ..digest import canonical_json
from ..registry.registry import Registry
from ..store.remote_cache import (
    CONDEMNED,
    Remote,
    live_remote_leased,
    read_condemned,
    read_roots,
    write_roots,
)
from ..store.workspace import Workspace

DEFAULT_REMOTE_GRACE = 86400.0  # a day: longer than the longest build or push


@dataclass
class RemoteGcReport:
    url: str
    dry_run: bool
    grace: float
    workspaces: list[str] = field(default_factory=list)  # whose roots were kept
    kept: int = 0  # objects needed by some root, lease or young entry
    deleted: list[str] = field(default_factory=list)  # objects deleted (or, dry, that would be)
    deleted_bytes: int = 0
    condemned: list[str] = field(default_factory=list)  # newly condemned: deleted by a later gc
    entries_deleted: int = 0  # action-cache entries naming unneeded objects
    young: int = 0  # unneeded but younger than the grace
    temp_files: int = 0  # scratch files of killed writers removed (file:// remotes)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.url,
            "dry_run": self.dry_run,
            "grace_seconds": self.grace,
            "workspaces": self.workspaces,
            "kept_objects": self.kept,
            "deleted_objects": len(self.deleted),
            "deleted_bytes": self.deleted_bytes,
            "condemned_objects": len(self.condemned),
            "deleted_action_cache_entries": self.entries_deleted,
            "young_objects": self.young,
            "temp_files": self.temp_files,
            "seconds": round(self.seconds, 3),
        }


def kept_objects(workspace: Workspace, registry: Registry) -> set[str]:
    """What this workspace keeps (what its own gc keeps): its roots on a remote."""
    store = workspace.store
    active = registry.versions_by_status("active")
    kept = set(needed_objects(store, active, build_records(workspace)))
    for version in [*active, *registry.versions_by_status("retired")]:
        kept |= {entry.digest for _what, entry in metadata_entries(version)}
    return kept | every_digest(workspace.home)  # the audit log's checkpoints


def collect_remote(
    workspace: Workspace,
    registry: Registry,
    remote: Remote,
    *,
    dry_run: bool = False,
    grace: float = DEFAULT_REMOTE_GRACE,
    now: float | None = None,
) -> RemoteGcReport:
    started = time.monotonic()
    now = time.time() if now is None else now
    report = RemoteGcReport(remote.url, dry_run, grace)
    blobs = remote.blobs
    own = kept_objects(workspace, registry)
    if not dry_run:  # this workspace's roots as they are now (a gc here may have retired some)
        write_roots(blobs, remote.workspace_id, own, {"root": str(workspace.root)})
    roots = read_roots(blobs)
    report.workspaces = sorted(roots | {remote.workspace_id: {}})
    needed: set[str] = set(own)
    for document in roots.values():
        needed.update(str(d) for d in document["objects"])
    needed |= live_remote_leased(blobs, now)
    cutoff = now - grace

    # Action-cache entries: a young one is a root; an old one is kept while all it names is.
    entries = [(name, modified, _entry_objects(remote, name)) for name, modified in _entry_infos(remote)]
    for _name, modified, objects in entries:
        if modified > cutoff:
            needed |= objects
    stale_entries = [name for name, modified, objects in entries if modified <= cutoff and not objects <= needed]
    report.entries_deleted = len(stale_entries)
    if not dry_run:
        blobs.delete(stale_entries)  # before any object they name

    condemned = read_condemned(blobs)
    still: dict[str, float] = {}
    doomed = []
    for info in blobs.scan("objects/"):
        digest = "blake3:" + info.name.rsplit("/", 1)[-1]
        if digest in needed:
            report.kept += 1
            continue
        if info.modified > cutoff:
            report.young += 1
            continue
        since = condemned.get(digest)
        if since is not None and since <= cutoff:
            doomed.append((info.name, digest, info.size))
        else:
            still[digest] = since if since is not None else now
            if since is None:
                report.condemned.append(digest)
    if doomed and not dry_run:
        # The leases again, just before deleting: a build or push that started meanwhile.
        leased = live_remote_leased(blobs, time.time())
        doomed = [item for item in doomed if item[1] not in leased]
    report.deleted = [digest for _name, digest, _size in doomed]
    report.deleted_bytes = sum(size for _name, _digest, size in doomed)
    if not dry_run:
        blobs.replace(CONDEMNED, canonical_json(still))  # first: a gc killed now deletes nothing twice
        blobs.delete([name for name, _digest, _size in doomed])
        # Scratch of writers killed on a shared directory (a live one writes for seconds).
        report.temp_files = blobs.clean_temp(now - max(grace, 3600.0))
    report.seconds = time.monotonic() - started
    return report


def _entry_infos(remote: Remote) -> list[tuple[str, float]]:
    return [(info.name, info.modified) for info in remote.blobs.scan("ac/")]


def _entry_objects(remote: Remote, name: str) -> set[str]:
    data = remote.blobs.get(name)
    try:
        return {str(d) for d in json.loads(data or b"")["objects"]}
    except (ValueError, KeyError, TypeError):
        return set()  # unreadable: names nothing, and is deleted once old
