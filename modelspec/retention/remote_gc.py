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

A large object pushed as chunks (store/remote_chunks.py) is its recipe: a needed recipe makes
every chunk it names needed (a leased one too), an unneeded recipe is condemned and deleted
like a loose object, and recipes are deleted before any chunk or pack, so none is ever left
naming a chunk that is gone; the chunks only it needed go whole with their packs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
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
from ..store.remote_chunks import chunk_packs
from ..store.remote_packs import Listing, index_name, pack_name
from ..store.remote_recipes import chunk_digest, recipe_name
from ..store.workspace import Workspace

DEFAULT_REMOTE_GRACE = 86400.0  # a day: longer than the longest build or push


@dataclass
class RemoteGcReport:
    url: str
    dry_run: bool
    grace: float
    workspaces: list[str] = field(default_factory=list)  # whose roots were kept
    kept: int = 0  # objects and chunks needed by some root, lease or young entry
    deleted: list[str] = field(default_factory=list)  # objects and chunks deleted (or, dry, that would be)
    deleted_bytes: int = 0
    condemned: list[str] = field(default_factory=list)  # newly condemned: deleted by a later gc
    entries_deleted: int = 0  # action-cache entries naming unneeded objects
    young: int = 0  # unneeded but younger than the grace
    # Of the above, chunks (parts of large objects, or of none: not objects), counted apart.
    kept_chunks: int = 0
    deleted_chunks: int = 0
    condemned_chunks: int = 0
    young_chunks: int = 0
    temp_files: int = 0  # scratch files of killed writers removed (file:// remotes)
    deleted_packs: int = 0  # packs whose every member was deleted (counted in `deleted`)
    orphan_packs: int = 0  # packs a killed push left without an index, swept
    partly_dead_packs: int = 0  # packs with a needed member and unneeded ones: kept whole
    deleted_recipes: int = 0  # large objects' chunk lists deleted (counted in `deleted`)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.url,
            "dry_run": self.dry_run,
            "grace_seconds": self.grace,
            "workspaces": self.workspaces,
            "kept_objects": self.kept - self.kept_chunks,
            "kept_chunks": self.kept_chunks,
            "deleted_objects": len(self.deleted) - self.deleted_chunks,
            "deleted_large_objects": self.deleted_recipes,
            "deleted_chunks": self.deleted_chunks,
            "deleted_bytes": self.deleted_bytes,
            "condemned_objects": len(self.condemned) - self.condemned_chunks,
            "condemned_chunks": self.condemned_chunks,
            "deleted_action_cache_entries": self.entries_deleted,
            "young_objects": self.young - self.young_chunks,
            "young_chunks": self.young_chunks,
            "temp_files": self.temp_files,
            "deleted_packs": self.deleted_packs,
            "orphan_packs": self.orphan_packs,
            "partly_dead_packs": self.partly_dead_packs,
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
    # Recipes: a needed one keeps its chunks; an unneeded one goes like a loose object.
    recipes = remote.store.recipes
    listed = recipes.listed()
    chunks_of = recipes_chunks(remote, listed)
    for digest in listed:
        if digest in needed:
            needed |= chunks_of[digest]
    doomed_recipes = []
    for digest, modified in sorted(listed.items()):
        if digest in needed:
            report.kept += 1
        elif modified > cutoff:
            report.young += 1
            needed |= chunks_of[digest]  # a push may be about to call it present
        elif (since := condemned.get(digest)) is not None and since <= cutoff:
            doomed_recipes.append((recipe_name(digest), digest, 0))
        else:
            still[digest] = since if since is not None else now
            report.condemned += [] if since is not None else [digest]
    # Every recipe that stays names chunks that stay, however long they have been condemned:
    # a push may have made a recipe of chunks an older version left (found present, reused).
    going = {digest for _name, digest, _size in doomed_recipes}
    for digest in listed.keys() - going:
        needed |= chunks_of[digest]
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
    named = set().union(*chunks_of.values())
    packs = _plan_packs(remote, report, needed, named, condemned, still, cutoff, now)
    if (doomed or packs.doomed) and not dry_run:
        # The leases again, just before deleting: a build or push that started meanwhile.
        leased = live_remote_leased(blobs, time.time())
        leased |= {c for d in leased & set(chunks_of) for c in chunks_of[d]}
        # And the recipes made since they were listed: a push that found a condemned chunk
        # present, named it and released its lease, all while this gc ran.
        for chunks in recipes_chunks(remote, recipes.listed().keys() - listed.keys()).values():
            leased |= chunks
        doomed = [item for item in doomed if item[1] not in leased]
        doomed_recipes = [item for item in doomed_recipes if item[1] not in leased]
        packs.doomed = [item for item in packs.doomed if not leased & set(item[1])]
    report.deleted = [digest for _name, digest, _size in doomed_recipes + doomed]
    report.deleted += [d for _p, ds, _s in packs.doomed for d in ds]
    report.deleted_recipes = len(doomed_recipes)
    report.deleted_bytes = sum(size for _name, _digest, size in doomed) + sum(s for _p, _ds, s in packs.doomed)
    report.deleted_packs = len(packs.doomed)
    report.deleted_chunks = sum(len(ds) for p, ds, _s in packs.doomed if p in packs.chunky)
    if not dry_run:
        blobs.replace(CONDEMNED, canonical_json(still))  # first: a gc killed now deletes nothing twice
        blobs.delete([name for name, _digest, _size in doomed_recipes])  # before the chunks they name
        blobs.delete([name for name, _digest, _size in doomed])
        # A pack's index before the pack: its members are gone at once, and a gc killed
        # between leaves a pack without an index, which the next gc sweeps.
        blobs.delete([index_name(pack) for pack, _members, _size in packs.doomed])
        gone = {pack for pack, _members, _size in packs.doomed} | set(packs.orphans)
        blobs.delete([pack_name(pack) for pack in sorted(gone)] + packs.stray)
        blobs.delete([name for (pack, _d), name in packs.listing.bad.items() if pack in gone])
        # Scratch of writers killed on a shared directory (a live one writes for seconds).
        report.temp_files = blobs.clean_temp(now - max(grace, 3600.0))
    report.seconds = time.monotonic() - started
    return report


@dataclass
class _PackPlan:
    listing: Listing
    doomed: list[tuple[str, list[str], int]] = field(default_factory=list)  # pack, its members, its size
    orphans: list[str] = field(default_factory=list)  # packs without an index, older than the grace
    stray: list[str] = field(default_factory=list)  # old indices and bad marks whose pack is gone
    chunky: set[str] = field(default_factory=set)  # the packs that hold chunks


def _plan_packs(
    remote: Remote,
    report: RemoteGcReport,
    needed: set[str],
    named: set[str],
    condemned: dict[str, float],
    still: dict[str, float],
    cutoff: float,
    now: float,
) -> _PackPlan:
    """Packs go whole: one whose every member is unneeded is condemned like a loose object
    (its members, so that a push that found them there checks again), and deleted by a later
    gc. A pack with one needed member stays whole (rewriting it is not worth a pass here).
    `named`: the chunks the recipes name, which tell packs of chunks apart (counted as such)."""
    catalog = remote.store.packs
    plan = _PackPlan(catalog.refresh())
    listing = plan.listing
    plan.chunky = chunk_packs({p: catalog.packed(p) for p in listing.indices if p in listing.packs}, named)
    for pack, index in sorted(listing.indices.items()):
        info = listing.packs.get(pack)
        if info is None:  # names nothing: no reader believes it
            plan.stray += [index_name(pack)] if index.modified <= cutoff else []
            continue
        members = sorted({m.digest for m in catalog.packed(pack)})
        if pack in catalog.unreadable or not members:
            continue  # what it names cannot be known: kept
        chunky = pack in plan.chunky
        live = sum(1 for d in members if d in needed)
        if live:
            report.kept += live
            report.kept_chunks += live if chunky else 0
            report.partly_dead_packs += live < len(members)
            continue
        if max(index.modified, info.modified) > cutoff:
            report.young += len(members)
            report.young_chunks += len(members) if chunky else 0
            continue
        since = {d: condemned.get(d) for d in members}
        if all(t is not None and t <= cutoff for t in since.values()):
            plan.doomed.append((pack, members, info.size + index.size))
        for digest, t in since.items():
            still[digest] = t if t is not None else now
            if t is None:
                report.condemned.append(digest)
                report.condemned_chunks += chunky
    plan.orphans = [
        p for p, info in sorted(listing.packs.items()) if p not in listing.indices and info.modified <= cutoff
    ]
    report.orphan_packs = len(plan.orphans)
    plan.stray += [name for (pack, _d), name in listing.bad.items() if pack not in listing.packs]
    return plan


def recipes_chunks(remote: Remote, digests: Iterable[str]) -> dict[str, set[str]]:
    """The chunks each object's recipe names, the recipes read a few at a time (none for a
    damaged one, quarantined: its object is no longer on the remote, and a push sends it
    again; none for one gone since it was listed)."""
    digests = sorted(digests)
    read = remote.store.recipes.get_all(digests, damaged=True)
    return {d: {chunk_digest(c) for c, _n in read[d].chunks} if d in read else set() for d in digests}


def _entry_infos(remote: Remote) -> list[tuple[str, float]]:
    return [(info.name, info.modified) for info in remote.blobs.scan("ac/")]


def _entry_objects(remote: Remote, name: str) -> set[str]:
    data = remote.blobs.get(name)
    try:
        return {str(d) for d in json.loads(data or b"")["objects"]}
    except (ValueError, KeyError, TypeError):
        return set()  # unreadable: names nothing, and is deleted once old
