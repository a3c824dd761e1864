"""Opening a workspace and loading its build graph: the step every command starts with.

Also where the workspace's registry is opened, and where a spec's inputs from registered
versions are resolved (the resolver is handed down to `resolve`, which sits below the
registry).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import indented
from ..digest import digest_bytes, hex_of
from ..errors import UsageError
from ..resolve.lock import ResolveContext
from ..spec.load import shown_path
from ..spec.markers import marker_content
from ..spec.model import Lock, Spec, split_output_ref
from ..spec.refs import matches_range, parse_version
from ..spec.yamlsource import open_regular
from ..store.files import pid_alive, write_atomic
from ..store.protocol import ObjectStore
from ..store.statcache import StatCache
from ..store.workspace import STORE_DIR, Workspace, find_workspace
from .graph import BuildGraph, build_graph

if TYPE_CHECKING:
    from ..registry.registry import ModelVersion, Registry

REGISTRY_URL_ENV = "MODELSPEC_REGISTRY_URL"


def open_workspace(spec_paths: list[Path]) -> Workspace:
    if not spec_paths:
        raise UsageError("no spec given", hint="name a spec file, e.g. specs/fraud.yaml")
    first = Path(spec_paths[0])
    from ..spec.load import find_repo_root

    return find_workspace(first.parent, fallback_root=find_repo_root(first.parent))


def resolve_context(workspace: Workspace, allow_dirty: bool = False, check_only: bool = False) -> ResolveContext:
    temp = workspace.store.tmp
    statcache = StatCache(workspace.cache_dir / "stat.json", temp)

    def registered(name: str, selector: str, output: str, allow: tuple[str, ...]) -> dict[str, Any]:
        if check_only and not registry_exists(workspace):  # checking must not create one
            raise UsageError(f"no version of {name} is registered (no registry in {workspace.home})")
        registry = open_registry(workspace)
        try:
            return registered_artifact(registry, workspace.store, name, selector, output, allow)
        finally:
            registry.close()

    private = {workspace.home.resolve(), (workspace.root / STORE_DIR).resolve()}
    return ResolveContext(
        statcache, workspace.cache_dir, temp, allow_dirty, check_only, registered, private=tuple(sorted(private))
    )


def registry_url(workspace: Workspace) -> str | None:
    """The workspace's registry when it is not the SQLite file in its store: MODELSPEC_REGISTRY_URL,
    else `registry:` in modelspec.yaml."""
    url = os.environ.get(REGISTRY_URL_ENV) or workspace.settings.get("registry")
    return str(url) if url else None


def registry_exists(workspace: Workspace) -> bool:
    return bool(registry_url(workspace)) or (workspace.home / "registry.db").exists()


def check_graph(
    spec_paths: list[Path], overrides: list[str] | tuple[str, ...] = (), allow_dirty: bool = False
) -> BuildGraph:
    """Every check that `load_graph` makes, without hashing data and without writing
    anything: what `validate` runs. The graph's locks lack data and environment digests."""
    workspace = open_workspace(spec_paths)
    return build_graph(spec_paths, list(overrides), resolve_context(workspace, allow_dirty, check_only=True))


def load_graph(
    spec_paths: list[Path], overrides: list[str] | tuple[str, ...] = (), allow_dirty: bool = False
) -> tuple[Workspace, BuildGraph, ResolveContext]:
    workspace = open_workspace(spec_paths)
    ctx = resolve_context(workspace, allow_dirty)
    graph = build_graph(spec_paths, list(overrides), ctx)
    # Only now, with every spec resolved, is anything written: a rejected spec writes nothing.
    for item in graph.specs.values():
        if item.spec.schema_marker is not None:
            ctx.pending[item.spec.schema_marker] = marker_content(item.spec.document)
    for path, data in ctx.pending.items():
        write_atomic(path, data, ctx.temp_dir)
    ctx.statcache.save()
    return workspace, graph, ctx


def lock_path(spec: Spec) -> Path:
    return spec.path.with_suffix(".lock")


def lock_bytes(lock: Lock) -> bytes:
    """The lock file: canonical content, indented so that it diffs well in review."""
    return (indented.dumps(lock.to_dict(), ensure_ascii=False) + "\n").encode()


def write_locks(graph: BuildGraph, cache_dir: Path | None = None) -> list[Path]:
    """Write `<spec>.lock` beside each target spec, only when its content changed.

    With `cache_dir`, a lock file this function wrote or checked before, unchanged since
    (same size, mtime and inode) and holding the same lock (by the digest of its canonical
    JSON), is not formatted again: indented JSON is written by Python's slow encoder."""
    written = []
    for name in graph.targets:
        item = graph.specs[name]
        path = lock_path(item.spec)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed build
            pid = stale.name.removeprefix(f".{path.name}.").split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                stale.unlink(missing_ok=True)
        seen = _LockSeen(cache_dir, path, digest_bytes(item.lock_json)) if cache_dir is not None else None
        if seen is not None and seen.unchanged():
            continue
        data = lock_bytes(item.lock)
        if not _holds(path, data):
            write_atomic(path, data)
            written.append(path)
        if seen is not None:
            seen.record()
    return written


@dataclass(frozen=True)
class _LockSeen:
    """What a lock file held when last written or checked: its stat and its lock's digest."""

    cache_dir: Path
    path: Path
    digest: str

    @property
    def _marker(self) -> Path:
        return self.cache_dir / "locks" / hex_of(digest_bytes(os.fsencode(self.path)))

    def _now(self) -> list[object] | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return [self.digest, info.st_size, info.st_mtime_ns, info.st_ino]

    def unchanged(self) -> bool:
        try:
            return json.loads(self._marker.read_bytes()) == self._now()
        except (FileNotFoundError, ValueError):
            return False

    def record(self) -> None:
        now = self._now()
        if now is not None:
            write_atomic(self._marker, json.dumps(now).encode(), durable=False)


def _holds(path: Path, data: bytes) -> bool:
    """Whether the lock file already holds `data`; one that is not a regular file (a FIFO
    would block the read) is refused, and no more than `data` is ever read."""
    try:
        with open_regular(path, shown_path(path)) as handle:
            return handle.read(len(data) + 1) == data
    except FileNotFoundError:
        return False


def open_registry(workspace: Workspace, guard: bool = True, read_only: bool = False) -> Registry:
    """The workspace's registry; with `guard`, refused unless the store recognises it;
    `read_only` for commands that only read (they work on a full disk)."""
    from ..registry.head import HEAD_FILE
    from ..registry.registry import Registry

    url = registry_url(workspace)
    head_file = workspace.home / HEAD_FILE
    if url:
        return Registry(url, head_file=head_file, guard=guard)
    return Registry.at(workspace.home / "registry.db", head_file, guard, read_only)


def reach_registry(workspace: Workspace) -> None:
    """A registry on a server is opened before a build runs anything: one that is down or
    refuses fails the build at once, not after its stages (a file registry cannot be down)."""
    if registry_url(workspace) is not None:
        open_registry(workspace).close()


def open_existing_registry(workspace: Workspace, guard: bool = True, read_only: bool = False) -> Registry:
    """`open_registry` for what acts on versions already built (queries, gc, promote...): a
    workspace that has no registry yet is told to build first, not given an empty one."""
    from ..registry.head import HEAD_FILE

    missing = not registry_exists(workspace)
    if missing and not (workspace.home / HEAD_FILE).exists():  # else opening it says what is wrong
        raise UsageError(f"no registry in {workspace.home}", hint="build a spec first: modelspec build specs/NAME.yaml")
    return open_registry(workspace, guard, read_only)


def registered_artifact(
    registry: Registry, store: ObjectStore, name: str, selector: str, output: str, allow: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The data entry of a lock for `{spec: NAME@RANGE, output: OUTPUT}`: the newest active
    version in the range that carries no mark the spec does not `allow` (dirty, unsandboxed);
    for `NAME@ALIAS`, the alias's primary target, held to the same rule. Pinned, with its
    artifact's digest."""
    via: dict[str, str] = {}
    if _is_alias(selector):
        version = _alias_target(registry, name, selector, allow)
        via = {"alias": selector}
    else:
        version = _newest_in_range(registry, name, selector, allow)
    artifacts = registry.artifacts_of(version)
    refs = [ref for ref in artifacts if ref == output or split_output_ref(ref)[1] == output]
    if len(refs) != 1:
        raise UsageError(f"{version.ref} has no single artifact {output!r} (artifacts: {', '.join(sorted(artifacts))})")
    stage, name_of_output = split_output_ref(refs[0])
    lock = json.loads(store.read_bytes(version.lock))
    basename = Path(lock["stages"][stage]["outputs"][name_of_output]).name
    return {
        "registered": version.ref,
        "content_id": version.content_id,
        "output": refs[0],
        "basename": basename,
        **via,
        **artifacts[refs[0]],
    }


def _is_alias(selector: str) -> bool:
    """`production`, not a range (`^2.0`, `1.3`, `>=1.2,<2`); `latest` is the range of every version."""
    return selector[:1].isalpha() and selector != "latest"


def _newest_in_range(registry: Registry, name: str, version_range: str, allow: tuple[str, ...]) -> ModelVersion:
    every = registry.list_versions(name)  # ordered by version number
    in_range = [v for v in every if matches_range(_numbers(v.version), version_range)]
    rejected = _rejected(registry, [v for v in in_range if v.status == "active"])
    usable = [v for v in in_range if v.status == "active" and not _refused_marks(v, allow) and v.id not in rejected]
    if usable:
        return usable[-1]
    if rejected and all(v.id in rejected or v.status != "active" for v in in_range):
        skipped = ", ".join(f"{v.version} ({'rejected' if v.id in rejected else v.status})" for v in reversed(in_range))
        raise UsageError(
            f"no version of {name} in {version_range!r} passed its quality gates: skipped {skipped}",
            hint=f"build a version of {name} that passes (`modelspec show {name}@VERSION` says which gate failed), "
            f'or accept a rejected one: modelspec promote {name}@VERSION ALIAS --force --reason "…"',
        )
    marks = sorted({mark for v in in_range if v.status == "active" for mark in _refused_marks(v, allow)})
    if not marks:  # nothing in the range, or only retired versions
        known = ", ".join(f"{v.version} ({v.status})" for v in every) or "none"
        raise UsageError(f"no active version of {name} matches {version_range!r} (versions: {known})")
    skipped = ", ".join(
        f"{v.version} ({v.status if v.status != 'active' else ', '.join(_refused_marks(v, allow)) or 'rejected'})"
        for v in reversed(in_range)
    )
    raise UsageError(
        f"no version of {name} in {version_range!r} is active, clean and sandboxed: skipped {skipped}",
        hint=f"accept such versions with `allow: [{', '.join(sorted({*allow, *marks}))}]` on this input "
        f"({_explained(marks)}), or build {name} from committed code in the sandbox",
    )


def _alias_target(registry: Registry, name: str, alias: str, allow: tuple[str, ...]) -> ModelVersion:
    from ..registry.registry import primary_target

    targets = registry.alias_targets(name, alias)
    if not targets:
        known = registry.alias_names(name)
        listed = f"aliases of {name}: {', '.join(known)}" if known else f"{name} has no aliases"
        raise UsageError(
            f"no alias {name}@{alias}",
            hint=f"{listed}; name one, promote a version (modelspec promote {name}@VERSION {alias}) "
            f"or name a version range ({name}@^1.0)",
        )
    version = primary_target(targets)
    if version.status != "active":
        raise UsageError(
            f"{name}@{alias} points to {version.ref}, which is {version.status}: its artifacts are gone",
            hint=f"point the alias at an active version (modelspec promote {name}@VERSION {alias})",
        )
    if _rejected(registry, [version]):
        raise UsageError(
            f"{name}@{alias} points to {version.ref}, which its quality gates rejected (judged again since it "
            "was promoted)",
            hint=f"point the alias at a version that passes, or accept this one: modelspec promote {version.ref} "
            f'{alias} --force --reason "…"',
        )
    refused = _refused_marks(version, allow)
    if refused:
        raise UsageError(
            f"{name}@{alias} points to {version.ref}, which is {' and '.join(refused)}",
            hint=f"accept it with `allow: [{', '.join(sorted({*allow, *refused}))}]` on this input "
            f"({_explained(refused)}), or point the alias at a clean, sandboxed version",
        )
    return version


def _rejected(registry: Registry, versions: list[ModelVersion]) -> set[int]:
    """The ids of the versions whose newest gate verdict failed (a forced promotion accepts one)."""
    from ..registry.gates import latest

    verdicts = registry.read(latest, [v.id for v in versions])
    return {i for i, found in verdicts.items() if found["verdict"] == "failed"}


def _refused_marks(version: ModelVersion, allow: tuple[str, ...]) -> list[str]:
    return [mark for mark in version.marks if mark not in allow]


def _explained(marks: list[str]) -> str:
    from ..registry.registry import MARKS

    return "; ".join(f"{mark}: {MARKS[mark]}" for mark in marks)


def _numbers(version: str) -> tuple[int, int, int]:
    major, minor, patch = parse_version(version)
    return major, minor, patch or 0
