"""Garbage collection: retire versions by policy, then mark and sweep the object store.

Roots: every object of a kept version (its artifacts and everything `reproduce` needs),
the small objects every version's metadata needs for ever (its lock and environment lock
file: `show`, `diff` and `lineage` of a retired version still work), the last build of
each spec in the workspace, objects leased by running builds, and objects younger than
the grace period. Everything else is swept; action-cache entries and code-snapshot
indexes that point at swept objects are dropped; environments that no kept version, last
build or running build uses are removed, and so are lock files no running build holds.

Crash safety: versions are retired in one registry transaction before anything is
deleted, and a kept version's objects are never candidates, so a gc killed at any point
leaves every kept version whole; the next gc finishes the sweep.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..attest.checkpoint import every_digest
from ..build.needed import build_environment, build_records, expand, metadata_entries, needed_objects
from ..env.environment import file_lock, remove_abandoned
from ..env.manifest import MANIFEST
from ..errors import ModelspecError, UsageError
from ..registry.anchor import checkpoint
from ..registry.registry import ModelVersion, Registry
from ..spec.load import find_repo_root, load_spec
from ..store import reserve
from ..store.files import remove_path
from ..store.leases import gc_guard, live_leased, remove_unheld_locks
from ..store.protocol import ObjectStore
from ..store.traces import ActionCache
from ..store.workspace import Workspace
from .chunked import ChunkGc, cool_and_prune, hot_objects
from .policy import RetentionPlan, RetentionPolicy, merge_rules, parse_duration, plan_retention

DEFAULT_GRACE = 3600.0


@dataclass
class GcReport:
    retention: RetentionPlan
    objects: list[str] = field(default_factory=list)  # swept (or, in a dry run, to sweep)
    bytes: int = 0
    environments: list[str] = field(default_factory=list)
    action_entries: int = 0
    dry_run: bool = True
    seconds: float = 0.0
    grace: float = DEFAULT_GRACE
    young_objects: int = 0  # unneeded, but younger than the grace period: kept for now
    young_bytes: int = 0
    young_until: float | None = None  # when the earliest of them can be freed
    stale_locks: int = 0  # lock files under locks/ that no build holds, removed
    chunks: ChunkGc = field(default_factory=ChunkGc)  # cooled objects and pruned packs

    def plus(self, earlier: GcReport) -> GcReport:
        """This report with what an earlier sweep of the same gc freed."""
        self.objects = [*earlier.objects, *self.objects]
        self.bytes += earlier.bytes
        self.environments = [*earlier.environments, *self.environments]
        self.action_entries += earlier.action_entries
        self.stale_locks += earlier.stale_locks
        self.seconds += earlier.seconds
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            **self.retention.to_dict(),
            "objects": len(self.objects),
            "bytes": self.bytes,
            "environments": self.environments,
            "action_cache_entries": self.action_entries,
            "grace": {
                "seconds": self.grace,
                "objects": self.young_objects,
                "bytes": self.young_bytes,
                "earliest_free": self.young_until,
            },
            "stale_locks": self.stale_locks,
            "chunks": self.chunks.to_dict(),
            "seconds": round(self.seconds, 3),
        }


def policies(workspace: Workspace, registry: Registry, names: list[str]) -> dict[str, RetentionPolicy]:
    """Each model's policy: the workspace defaults overridden by the `retention:` of its spec
    as it is in the workspace now (or, if that file is gone, as its newest version had it)."""
    defaults = dict(workspace.settings.get("retention") or {})
    root = find_repo_root(workspace.root) or workspace.root
    found = {}
    for name in names:
        newest = registry.resolve(f"{name}@latest")
        rules = newest.record.get("retention") or {}
        with contextlib.suppress(ModelspecError, OSError):
            spec = load_spec(root / str(newest.record.get("spec", "")))
            if spec.name == name:
                rules = dict(spec.retention)
        found[name] = RetentionPolicy.from_dict(merge_rules(defaults, rules))
    return found


def grace_period(workspace: Workspace) -> float:
    grace = (workspace.settings.get("retention") or {}).get("grace")
    return parse_duration(grace) if grace is not None else DEFAULT_GRACE


@contextlib.contextmanager
def reserve_released(home: Path) -> Iterator[None]:
    """gc's room on a full disk: the store's reserve is deleted before gc opens the registry
    (SQLite needs room to open it for writing and to log the retirements), and made again
    once gc has freed space."""
    reserve.release(home)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # never hides why gc failed
            reserve.keep(home)


def disk_full(home: Path) -> bool:
    """Too full for SQLite to open the registry for writing (its index alone takes 32 KiB)."""
    return shutil.disk_usage(home).free < reserve.RESERVE_BYTES


def free_without_writing(workspace: Workspace, actor: str) -> GcReport:
    """On a full disk without the reserve (a store made before it, or filled again since),
    where the registry cannot be opened for writing: sweep what needs no registry write (the
    bytes of versions already retired, objects nothing names), so that gc can then retire."""
    from ..build.loading import open_registry

    with open_registry(workspace, read_only=True) as registry:
        return collect(workspace, registry, actor=actor, retire=False)


@contextlib.contextmanager
def single_gc(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "gc.run.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError("another gc is running in this workspace", hint="wait for it to finish") from None
        yield


def collect(
    workspace: Workspace,
    registry: Registry,
    *,
    now: float | None = None,
    dry_run: bool = False,
    actor: str = "",
    retire: bool = True,
) -> GcReport:
    """Retire by policy, then sweep. `retire=False` only sweeps what is unneeded now (it
    writes nothing to the registry, which may be read-only)."""
    started = time.monotonic()
    now = time.time() if now is None else now
    store = workspace.store
    with single_gc(workspace.home):
        refuse_tampered(registry)
        facts = registry.retention_facts()
        plan = plan_retention(facts, policies(workspace, registry, sorted(facts)), now)
        if not dry_run and retire and plan.retire:
            # First: from here on their bytes are not roots. One promoted since the plan
            # was made stays active (and kept).
            for version_id in registry.retire(plan.retire, actor):
                plan.keep[version_id] = ["alias (promoted during gc)"]
                del plan.retire[version_id]
        with gc_guard(workspace.home, exclusive=not dry_run):
            # Inside the guard: a version registered since the plan was made is kept too.
            active = registry.versions_by_status("active")
            kept = [v for v in active if not (dry_run and v.id in plan.retire)]
            records = build_records(workspace)
            live, env_digests = _mark(workspace, store, kept, records)
            # Every version keeps its metadata for ever, so its small objects are roots too.
            for version in [*active, *registry.versions_by_status("retired")]:
                live |= {entry.digest for _what, entry in metadata_entries(version)}
            live |= expand(store, live_leased(workspace.home))
            live |= every_digest(workspace.home)  # the audit log's anchors
            report = GcReport(plan, dry_run=dry_run, grace=grace_period(workspace))
            cutoff = now - report.grace
            for digest in store.iter():
                if digest in live:
                    continue
                info = store.stat(digest)
                if info is None:
                    continue
                if info.stored_at > cutoff:  # too young: a build may be about to reference it
                    report.young_objects += 1
                    report.young_bytes += info.size
                    free_after = info.stored_at + report.grace
                    report.young_until = min(report.young_until or free_after, free_after)
                    continue
                report.objects.append(digest)
                report.bytes += info.size if store.is_whole(digest) else 0  # a cold one's chunks: by pruning
                if not dry_run:
                    store.delete(digest)
            hot = hot_objects(store, kept, facts, records)
            report.chunks = cool_and_prune(store, live, hot, cutoff, dry_run=dry_run, swept=set(report.objects))
            report.bytes += report.chunks.pack_bytes
            report.environments = _environments(workspace, env_digests | live, cutoff, dry_run)
            if not dry_run:
                remove_abandoned(workspace.envs_dir)  # half-made by a killed build
            swept = set(report.objects)
            report.action_entries = _drop_action_entries(workspace, swept, dry_run)
            if not dry_run:
                _drop_snapshot_indexes(workspace, swept)
                report.stale_locks = remove_unheld_locks(workspace.locks_dir)
        if not dry_run and retire:  # a dry run reads only: it leaves no trace in the audit log
            registry.record_event(
                "gc",
                "workspace",
                actor,
                {
                    "retire": sorted(plan.to_dict()["retire"]),
                    "objects": len(report.objects),
                    "bytes": report.bytes,
                    "environments": len(report.environments),
                },
            )
            checkpoint(registry, store, workspace.home)
    report.seconds = time.monotonic() - started
    return report


def refuse_tampered(registry: Registry) -> None:
    """gc decides by the tables (status, aliases, pins, alias history): it must not act on
    tables edited behind the audit log's back, where a production version made to look
    retired would lose its model."""
    problems = registry.audit_problems()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(
            f"gc refuses to run: the registry disagrees with its audit log: {problems[0]}{more}",
            hint="`modelspec audit --verify` names every difference; restore the registry from a backup. "
            "Nothing was retired or deleted",
        )


def _mark(
    workspace: Workspace, store: ObjectStore, kept: list[ModelVersion], records: list[dict[str, Any]]
) -> tuple[set[str], set[str]]:
    """Live objects, and the digests of the environments they use."""
    live = set(needed_objects(store, kept, records))
    environments = {version.environment for version in kept if version.environment}
    for record in records:
        environment = build_environment(store, record)
        if environment:
            environments.add(str(environment["digest"]))
    return live, environments


def _environments(workspace: Workspace, used: set[str], cutoff: float, dry_run: bool) -> list[str]:
    removed: list[str] = []
    if not workspace.envs_dir.is_dir():
        return removed
    for entry in sorted(workspace.envs_dir.iterdir()):
        manifest = entry / MANIFEST
        if not entry.is_dir() or not manifest.is_file():
            continue
        digest = json.loads(manifest.read_bytes()).get("digest", "")
        if digest in used or manifest.stat().st_mtime > cutoff:
            continue
        removed.append(digest)
        if not dry_run:
            with file_lock(workspace.envs_dir / f"{entry.name}.lock"):
                remove_path(entry)
                # Removed while held: a creator waiting for it re-takes the lock on a new file.
                (workspace.envs_dir / f"{entry.name}.lock").unlink(missing_ok=True)
    return removed


def _drop_action_entries(workspace: Workspace, swept: set[str], dry_run: bool) -> int:
    cache = ActionCache(workspace.action_cache_dir)
    dropped = 0
    for key in list(cache.keys()):
        result = cache.get(key)
        if result is None or any(e.digest in swept for e in result.outputs.values()) or result.log in swept:
            dropped += 1
            if not dry_run:
                cache.delete(key)
    if dropped and not dry_run:
        cache.drop_indexes()
    return dropped


def _drop_snapshot_indexes(workspace: Workspace, swept: set[str]) -> None:
    if not workspace.snapshots_dir.is_dir():
        return
    for index in workspace.snapshots_dir.iterdir():
        with contextlib.suppress(ValueError, KeyError, OSError):
            if json.loads(index.read_bytes())["digest"] in swept:
                index.unlink()
