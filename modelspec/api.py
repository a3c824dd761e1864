"""The Python API: validate, lock, plan, build, checkout, verify.

Every function returns values and reports progress through a `Reporter`; nothing here
prints or exits (the CLI does).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environments import Environment, ensure_environment
from .errors import SandboxUnavailableError, StoreError, UsageError
from .events import Event, Reporter, ignore
from .graph import BuildGraph, DataInput, Node, UpstreamInput, build_graph, load_specs
from .leases import Lease, remove_stale_leases
from .model import Lock, Spec, split_output_ref
from .planning import PlannedNode, content_ids, hermetic_mode, node_key, plan_build
from .rebuilder import CachingRebuilder, ForcingRebuilder, NodeOutcome, NodeState
from .registration import build_record, read_build_record, register, save_build_record, unchanged_registration
from .resolve import ResolveContext
from .runner import RunContext, StageFailure, StageJob, run_node
from .sandbox import ProcessSandbox, Sandbox
from .scheduler import schedule
from .snapshots import code_snapshot, data_snapshot
from .statcache import StatCache
from .store import Entry, pid_alive, write_atomic
from .traces import ActionCache, ActionResult

if TYPE_CHECKING:
    from .registry import Registry
from .workspace import Workspace, find_workspace


@dataclass(frozen=True)
class BuildOptions:
    overrides: tuple[str, ...] = ()
    jobs: int = os.cpu_count() or 1
    keep_going: bool = False
    force: bool = False
    hermetic: str | None = None
    allow_dirty: bool = False
    offline: bool = False


@dataclass
class BuildReport:
    outcomes: list[NodeOutcome]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # spec name → build record
    versions: dict[str, tuple[str, bool]] = field(default_factory=dict)  # spec name → (name@version, new?)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.state in (NodeState.CACHED, NodeState.RAN) for o in self.outcomes)

    def count(self, state: NodeState) -> int:
        return sum(1 for o in self.outcomes if o.state is state)


# -- loading -----------------------------------------------------------------------------


def open_workspace(spec_paths: list[Path]) -> Workspace:
    if not spec_paths:
        raise UsageError("no spec given", hint="name a spec file, e.g. specs/fraud.yaml")
    first = Path(spec_paths[0])
    from .specload import find_repo_root

    return find_workspace(first.parent, fallback_root=find_repo_root(first.parent))


def resolve_context(workspace: Workspace, allow_dirty: bool = False) -> ResolveContext:
    temp = workspace.store.tmp
    statcache = StatCache(workspace.cache_dir / "stat.json", temp)

    def registered(name: str, version_range: str, output: str) -> dict[str, Any]:
        from .catalog import registered_artifact

        registry = open_registry(workspace)
        try:
            return registered_artifact(registry, workspace.store, name, version_range, output)
        finally:
            registry.close()

    return ResolveContext(statcache, workspace.cache_dir, temp, allow_dirty, registered)


def validate(spec_paths: list[Path]) -> dict[str, Spec]:
    """Load every spec (and those their data names); raises `SpecError` with every problem."""
    return load_specs(spec_paths)


def load_graph(
    spec_paths: list[Path], overrides: list[str] | tuple[str, ...] = (), allow_dirty: bool = False
) -> tuple[Workspace, BuildGraph, ResolveContext]:
    workspace = open_workspace(spec_paths)
    ctx = resolve_context(workspace, allow_dirty)
    graph = build_graph(spec_paths, list(overrides), ctx)
    ctx.statcache.save()
    return workspace, graph, ctx


def lock_path(spec: Spec) -> Path:
    return spec.path.with_suffix(".lock")


def lock_bytes(lock: Lock) -> bytes:
    """The lock file: canonical content, indented so that it diffs well in review."""
    return (json.dumps(lock.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def write_locks(graph: BuildGraph) -> list[Path]:
    """Write `<spec>.lock` beside each target spec, only when its content changed."""
    written = []
    for name in graph.targets:
        item = graph.specs[name]
        path = lock_path(item.spec)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed build
            pid = stale.name.removeprefix(f".{path.name}.").split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                stale.unlink(missing_ok=True)
        data = lock_bytes(item.lock)
        try:
            if path.read_bytes() == data:
                continue
        except FileNotFoundError:
            pass
        write_atomic(path, data)
        written.append(path)
    return written


# -- plan ----------------------------------------------------------------------------------


def plan(
    spec_paths: list[Path],
    overrides: list[str] | tuple[str, ...] = (),
    *,
    allow_dirty: bool = False,
    hermetic: str | None = None,
) -> tuple[BuildGraph, list[PlannedNode]]:
    workspace, graph, _ctx = load_graph(spec_paths, overrides, allow_dirty)
    cache = ActionCache(workspace.action_cache_dir, workspace.store.tmp)
    rebuilder = CachingRebuilder(cache, workspace.store, workspace.locks_dir)
    return graph, plan_build(graph, rebuilder.lookup, previous_key_documents(workspace, graph), hermetic)


def previous_key_documents(workspace: Workspace, graph: BuildGraph) -> dict[str, dict[str, Any]]:
    documents: dict[str, dict[str, Any]] = {}
    for name in graph.specs:
        record = read_build_record(workspace, name)
        for node, info in (record or {}).get("nodes", {}).items():
            documents[node] = info.get("key_document", {})
    return documents


# -- build ---------------------------------------------------------------------------------


def choose_sandboxes(graph: BuildGraph, override: str | None, reporter: Reporter) -> dict[str, Sandbox]:
    """The sandbox of each spec under its hermetic policy; `strict` without bwrap fails now."""
    from .bwrap import BubblewrapSandbox, bwrap_path

    have_bwrap = bwrap_path() is not None
    chosen: dict[str, Sandbox] = {}
    warned = False
    for name, item in graph.specs.items():
        mode = override or item.lock.hermetic
        if mode == "strict" and not have_bwrap:
            raise SandboxUnavailableError(
                f"spec {name!r} is hermetic: strict but bubblewrap (bwrap) is not installed",
                hint="install it (apt-get install bubblewrap), or pass --hermetic auto",
            )
        if mode != "off" and have_bwrap:
            chosen[name] = BubblewrapSandbox()
        else:
            if mode == "auto" and not warned:
                reporter(
                    Event(
                        "warning",
                        data={
                            "message": "bubblewrap (bwrap) is not installed: stages run "
                            "without a sandbox and results are recorded as not hermetic"
                        },
                    )
                )
                warned = True
            chosen[name] = ProcessSandbox()
    return chosen


def build(
    spec_paths: list[Path],
    options: BuildOptions = BuildOptions(),
    reporter: Reporter = ignore,
    cancel: threading.Event | None = None,
) -> BuildReport:
    """Build the targets: run what changed, reuse the rest, record the result of each spec."""
    started = time.monotonic()
    cancel = cancel or threading.Event()
    workspace, graph, ctx = load_graph(spec_paths, options.overrides, options.allow_dirty)
    store = workspace.store
    store.clean_temp()
    remove_stale_leases(workspace.home)
    sandboxes = choose_sandboxes(graph, options.hermetic, reporter)
    write_locks(graph)
    cache = ActionCache(workspace.action_cache_dir, store.tmp)
    rebuilder_class = ForcingRebuilder if options.force else CachingRebuilder
    environments = _EnvironmentPool(workspace, options.offline, reporter)
    keys: dict[str, tuple[str, dict[str, Any]]] = {}
    with Lease(workspace.home) as lease:  # what this build uses, so that a concurrent gc keeps it
        rebuilder = rebuilder_class(cache, store, workspace.locks_dir, lease)

        def execute(node_id: str, done: dict[str, NodeOutcome]) -> NodeOutcome:
            node = graph.node(node_id)

            def upstream_digest(source: UpstreamInput) -> str:
                result = done[source.node].result
                assert result is not None
                return result.outputs[source.output].digest

            key, document = node_key(node, upstream_digest, hermetic_mode(node, options.hermetic))
            keys[node_id] = (key, document)

            def run() -> ActionResult | StageFailure:
                reporter(Event("stage-start", node_id, {"key": key}))
                if node.lock.environment is not None:
                    lease.add([Entry("env", str(node.lock.environment["digest"]), 0)])
                environment = environments.get(node)
                with lease.holding():
                    code = code_snapshot(graph.specs[node.spec.name], node.stage_lock["code"], workspace, store)
                    inputs = {i: (s.basename, input_entry(s)) for i, s in node.inputs.items()}
                    lease.add([code, *(entry for _name, entry in inputs.values())])
                job = StageJob(
                    node=node_id,
                    stage=node.stage_lock,
                    code=code,
                    inputs=inputs,
                    environment=environment,
                    source_date_epoch=int(node.lock.code.get("time", 0)),
                    log=workspace.logs_dir / node.spec.name / f"{node.stage}.log",
                )
                result = run_node(job, key, RunContext(store, sandboxes[node.spec.name], cancel))
                if isinstance(result, ActionResult):
                    lease.add([*result.outputs.values(), Entry("file", result.log, 0)])
                return result

            def input_entry(source: DataInput | UpstreamInput) -> Entry:
                if isinstance(source, DataInput):
                    return data_snapshot(source, node.spec.repo_root, store, ctx.statcache)
                result = done[source.node].result
                assert result is not None
                return result.outputs[source.output]

            try:
                outcome = rebuilder.build(node_id, key, run)
            except (StoreError, OSError) as exc:
                reason = exc.message if isinstance(exc, StoreError) else _os_reason(exc, workspace)
                reporter(Event("stage-failed", node_id, {"reason": reason, "log_tail": "", "log": ""}))
                return NodeOutcome(node_id, NodeState.FAILED, key, reason=reason)
            _report(outcome, reporter)
            return outcome

        order = graph.order()
        results = schedule(graph, order, execute, jobs=options.jobs, keep_going=options.keep_going, cancel=cancel)
        for outcome in results.values():
            if outcome.state is NodeState.SKIPPED:
                reporter(Event("stage-skipped", outcome.node, {"reason": outcome.reason}))
        report = BuildReport([results[n] for n in order])
        with lease.holding():
            _register(workspace, graph, results, keys, options, report, ctx.statcache)
    ctx.statcache.save()
    report.seconds = time.monotonic() - started
    return report


def _register(
    workspace: Workspace,
    graph: BuildGraph,
    results: Mapping[str, NodeOutcome],
    keys: Mapping[str, tuple[str, dict[str, Any]]],
    options: BuildOptions,
    report: BuildReport,
    statcache: StatCache,
) -> None:
    """Record and register every spec whose stages all succeeded, upstream specs first."""
    ids = content_ids(graph, options.hermetic)
    order = graph.order()
    first_node: dict[str, int] = {}
    for i, node_id in enumerate(order):
        first_node.setdefault(graph.node(node_id).spec.name, i)
    spec_order = sorted(graph.specs, key=first_node.__getitem__)
    registry = None
    try:
        for name in spec_order:
            nodes = [n for n in order if graph.node(n).spec.name == name]
            if not all(results[n].state in (NodeState.CACHED, NodeState.RAN) for n in nodes):
                continue
            record = build_record(
                workspace, graph, name, {n: results[n] for n in nodes}, {n: keys[n][1] for n in nodes}, ids[name]
            )
            known = unchanged_registration(workspace, record)
            if known is not None:
                report.records[name] = record
                report.versions[name] = (known, False)
                continue
            registry = registry or open_registry(workspace)
            version, created = register(workspace, graph, name, record, ids, results, registry, statcache)
            save_build_record(workspace, {**record, "registered": version.ref})
            report.records[name] = record
            report.versions[name] = (version.ref, created)
    finally:
        if registry is not None:
            registry.close()


def open_registry(workspace: Workspace) -> Registry:
    from .registry import Registry

    url = workspace.settings.get("registry")
    return Registry(str(url)) if url else Registry.at(workspace.home / "registry.db")


def _os_reason(exc: OSError, workspace: Workspace) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the store's filesystem ({workspace.home}): free space, or move it (MODELSPEC_HOME)"
    if exc.errno == errno.EROFS:
        return f"the store ({workspace.home}) is on a read-only filesystem"
    return f"{exc.strerror or exc}: {exc.filename or ''}"


def _report(outcome: NodeOutcome, reporter: Reporter) -> None:
    if outcome.state is NodeState.CACHED:
        reporter(Event("stage-cached", outcome.node, {"key": outcome.key}))
    elif outcome.state is NodeState.RAN and outcome.result is not None:
        reporter(Event("stage-done", outcome.node, {"seconds": outcome.result.duration}))
    elif outcome.failure is not None:
        failure = outcome.failure
        reporter(
            Event(
                "stage-failed",
                outcome.node,
                {"reason": failure.reason, "log_tail": failure.log_tail, "log": str(failure.log_path or "")},
            )
        )


class _EnvironmentPool:
    """Environments of this build, created on first use (never for a no-op build)."""

    def __init__(self, workspace: Workspace, offline: bool, reporter: Reporter) -> None:
        self.workspace = workspace
        self.offline = offline
        self.reporter = reporter
        self._lock = threading.Lock()
        self._made: dict[str, Environment] = {}

    def get(self, node: Node) -> Environment | None:
        pinned = node.lock.environment
        if pinned is None:
            return None
        with self._lock:
            digest = str(pinned["digest"])
            if digest not in self._made:
                self._made[digest] = ensure_environment(
                    pinned,
                    node.spec.repo_root / str(pinned["file"]),
                    self.workspace.envs_dir,
                    self.workspace.store,
                    offline=self.offline,
                    reporter=self.reporter,
                )
            return self._made[digest]


def create_environment(spec_path: Path, *, offline: bool = False, reporter: Reporter = ignore) -> Environment | None:
    """Materialize the environment of one spec (what `build` does on first use)."""
    workspace, graph, _ctx = load_graph([spec_path])
    item = graph.specs[graph.targets[0]]
    pinned = item.lock.environment
    if pinned is None:
        return None
    return ensure_environment(
        pinned,
        item.spec.repo_root / str(pinned["file"]),
        workspace.envs_dir,
        workspace.store,
        offline=offline,
        reporter=reporter,
    )


# -- checkout and verify ----------------------------------------------------------------------


def checkout(spec_path: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Materialize the artifacts of the spec's last build from the store (hardlinks, read-only)."""
    workspace = open_workspace([spec_path])
    spec = validate([spec_path])
    name = next(s.name for s in spec.values() if s.path == Path(os.path.abspath(spec_path)))
    record = read_build_record(workspace, name)
    if record is None:
        raise UsageError(f"{name} has not been built in this workspace", hint=f"run `modelspec build {spec_path}`")
    target = out_dir or Path("artifacts") / name
    placed = {}
    for ref, entry in record["artifacts"].items():
        stage, output = split_output_ref(ref)
        lock = Lock.from_dict(json.loads(workspace.store.read_bytes(record["lock"])))
        dest = target / stage / lock.stages[stage]["outputs"][output]
        if dest.exists() or dest.is_symlink():
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            else:
                dest.unlink()
        workspace.store.restore(Entry.from_dict(entry), dest, link=True)
        placed[ref] = dest
    return placed


@dataclass
class VerifyReport:
    checked: int
    corrupt: list[str]
    bytes: int
    missing: list[str] = field(default_factory=list)
    what: dict[str, str] = field(default_factory=dict)  # digest → what it is (verify REF)
    bad_entries: list[str] = field(default_factory=list)  # edited action-cache entries, dropped

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing and not self.bad_entries


def verify(workspace: Workspace, ref: str | None = None, reporter: Reporter = ignore) -> VerifyReport:
    """Re-hash every object (or every object of one version); corrupt ones are quarantined."""
    store = workspace.store
    store.clean_temp()
    if ref is None:
        digests = list(store.iter())
        what: dict[str, str] = {}
        bad_entries = ActionCache(workspace.action_cache_dir, store.tmp).drop_invalid()
    else:
        digests, what = _version_objects(workspace, ref)
        bad_entries = []
    report = VerifyReport(0, [], 0, what=what, bad_entries=bad_entries)
    for digest in digests:
        path = store.path_of(digest)
        if not path.exists():
            report.missing.append(digest)
            continue
        report.checked += 1
        report.bytes += path.stat().st_size
        if not store.verify(digest):
            report.corrupt.append(digest)
            label = what.get(digest, "object")
            reporter(Event("warning", data={"message": f"corrupt {label} {digest} quarantined"}))
    return report


def _version_objects(workspace: Workspace, ref: str) -> tuple[list[str], dict[str, str]]:
    from .catalog import open_catalog
    from .registration import version_entries

    catalog = open_catalog(workspace)
    try:
        version = catalog.registry.resolve(ref)
    finally:
        catalog.close()
    store = workspace.store
    what: dict[str, str] = {}
    for label, entry in version_entries(version):
        what.setdefault(entry.digest, label)
        if entry.type == "tree" and store.has(entry.digest):
            try:
                for digest in store.tree_objects(entry):
                    what.setdefault(digest, label)
            except StoreError:
                pass  # a corrupt tree object: it is checked (and quarantined) below
    return list(what), what
