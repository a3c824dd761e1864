"""`modelspec verify`: every object re-hashed against its digest (corrupt ones quarantined),
what each needed object is, environments against their manifests, edited action-cache
entries dropped, and the registry's rows cross-checked with the store; or the objects of
one version, where bytes retention removed on purpose are not problems."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .build.loading import open_existing_registry, open_registry, registry_url
from .build.needed import build_records, labelled_objects, metadata_entries, needed_objects, version_entries
from .env.manifest import verify_environments
from .events import Event, Reporter, ignore
from .registry.head import HEAD_FILE
from .registry.sqlite import has_versions_table
from .store.held import held_on_remote
from .store.traces import ActionCache
from .store.workspace import Workspace


@dataclass
class VerifyReport:
    checked: int
    corrupt: list[str]
    bytes: int
    missing: list[str] = field(default_factory=list)
    what: dict[str, str] = field(default_factory=dict)  # digest → what it is (verify REF)
    bad_entries: list[str] = field(default_factory=list)  # edited action-cache entries, dropped
    retired: str = ""  # verify REF of a retired version: when and why its artifacts were removed
    removed: list[str] = field(default_factory=list)  # objects retention removed on purpose (not problems)
    environments: dict[str, list[str]] = field(default_factory=dict)  # changed environment → its changes
    registry: list[str] = field(default_factory=list)  # rows the store's objects contradict (verify --all)
    on_remote: list[str] = field(default_factory=list)  # left on the remote by a remote hit (not problems)

    @property
    def ok(self) -> bool:
        return not (self.corrupt or self.missing or self.bad_entries or self.environments or self.registry)


def verify(workspace: Workspace, ref: str | None = None, reporter: Reporter = ignore) -> VerifyReport:
    """Re-hash every object (or every object of one version); corrupt ones are quarantined.
    With no `ref`, also every file of every environment against its manifest."""
    store = workspace.store
    store.clean_temp()
    if ref is None:
        what, registry_problems = _needed_objects(workspace)
        digests = sorted(set(store.iter()) | set(what))
        bad_entries = ActionCache(workspace.action_cache_dir, store.tmp).drop_invalid()
        retired, permanent = "", set(digests)
        environments = verify_environments(workspace.envs_dir)
    else:
        digests, what, retired, permanent = _version_objects(workspace, ref)
        bad_entries, environments, registry_problems = [], {}, []
    report = VerifyReport(0, [], 0, what=what, bad_entries=bad_entries, retired=retired, environments=environments)
    report.registry = registry_problems
    held = held_on_remote(workspace.settings, workspace.home)
    for digest in digests:
        info = store.stat(digest)  # a whole copy, or a cold object's chunks
        if info is None:
            # Bytes retention removed on purpose are not corruption; a retired version's
            # metadata (its lock) is kept for ever, so that one missing is. An object a
            # remote hit left there is fetched when needed (`verify --remote` checks it).
            if held is not None and digest in held:
                report.on_remote.append(digest)
            else:
                (report.removed if digest not in permanent else report.missing).append(digest)
            continue
        report.checked += 1
        report.bytes += info.size
        if not store.verify(digest):
            report.corrupt.append(digest)
            label = what.get(digest, "object")
            reporter(Event("warning", data={"message": f"corrupt {label} {digest} quarantined"}))
    return report


def _needed_objects(workspace: Workspace) -> tuple[dict[str, str], list[str]]:
    """Every object a registered (active) version or a spec's last build needs (as gc keeps
    them), and what it is; and where the registry's rows disagree with the store's objects."""
    from .registry.crosscheck import registry_problems

    store = workspace.store
    versions = []
    problems: list[str] = []
    if _has_versions(workspace):
        with open_registry(workspace, read_only=True) as registry:
            problems = registry_problems(registry, store)
            versions = registry.versions_by_status("active")
    return needed_objects(store, versions, build_records(workspace)), problems


def _has_versions(workspace: Workspace) -> bool:
    """Does the registry hold versions at all? (Read without opening it for writing: a
    registry whose creation a full disk interrupted has none.)"""
    if registry_url(workspace) or (workspace.home / HEAD_FILE).exists():
        return True  # a store that knows its registry checks it, even if it is gone
    path = workspace.home / "registry.db"
    return path.exists() and has_versions_table(path)


def _version_objects(workspace: Workspace, ref: str) -> tuple[list[str], dict[str, str], str, set[str]]:
    """The version's objects and what each is; for a retired version, when and why it was
    retired and the objects it keeps for ever (the others were removed on purpose)."""
    with open_existing_registry(workspace, read_only=True) as registry:
        version = registry.resolve(ref)
    what = labelled_objects(workspace.store, version_entries(version))
    if version.status == "active":
        return list(what), what, "", set(what)
    day = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(version.status_time or 0))
    retired = f"{version.ref} was {version.status} on {day} ({version.status_reason}); its artifacts were removed"
    return list(what), what, retired, {entry.digest for _what, entry in metadata_entries(version)}
