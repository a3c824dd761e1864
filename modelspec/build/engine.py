"""The build engine: from a resolved graph to outputs in the store and registered versions.

A scheduler walks the graph; for each node the rebuilder either finds its key in the
action cache or runs it in the spec's sandbox; every spec whose stages all succeeded is
recorded and registered. Everything the build uses is leased, so a concurrent gc keeps it.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..env.environment import Environment, ensure_environment
from ..errors import SandboxUnavailableError, StoreError
from ..events import Event, Reporter, ignore
from ..sandbox.limits import effective_limits
from ..sandbox.process import ProcessSandbox, Sandbox
from ..store.leases import Lease, remove_stale_leases
from ..store.objects import Entry
from ..store.reserve import keep as keep_reserve
from ..store.statcache import StatCache
from ..store.traces import ActionCache, ActionResult
from ..store.workspace import Workspace
from .graph import BuildGraph, DataInput, Node, UpstreamInput
from .loading import load_graph, open_registry, write_locks
from .plan import Isolation, content_ids, node_key
from .rebuilder import CachingRebuilder, ForcingRebuilder, NodeOutcome, NodeState
from .registration import build_record, differing_outputs, register, save_build_record, unchanged_registration
from .runner import RunContext, StageFailure, StageJob, run_node
from .scheduler import schedule
from .snapshots import code_snapshot, data_snapshot

if TYPE_CHECKING:
    from ..registry.registry import Revival


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
    # spec name → its outputs whose bytes differ from the version already registered for
    # the same inputs (a `--force` rebuild of a stage that is not deterministic, say)
    differs: dict[str, list[str]] = field(default_factory=dict)
    # spec name → what its version was before this build revived it (retired, say)
    revived: dict[str, Revival] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.state in (NodeState.CACHED, NodeState.RAN) for o in self.outcomes)

    def count(self, state: NodeState) -> int:
        return sum(1 for o in self.outcomes if o.state is state)


def choose_sandboxes(graph: BuildGraph, isolation: Isolation, reporter: Reporter) -> dict[str, Sandbox]:
    """The sandbox of each spec under its hermetic policy; `strict` without bwrap fails now."""
    from ..sandbox.bwrap import BubblewrapSandbox, bwrap_unavailable

    chosen: dict[str, Sandbox] = {}
    warned = False
    for name, item in graph.specs.items():
        mode = isolation.policy(item.lock)
        if mode == "strict" and not isolation.bwrap:
            why, fix = bwrap_unavailable()
            raise SandboxUnavailableError(
                f"spec {name!r} is hermetic: strict but {why}", hint=f"{fix}, or pass --hermetic auto"
            )
        if isolation.used(item.lock) == "bwrap":
            chosen[name] = BubblewrapSandbox()
        else:
            if mode == "auto" and not warned:
                reporter(
                    Event(
                        "warning",
                        data={
                            "message": f"{bwrap_unavailable()[0]}: stages run "
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
    from ..sandbox.bwrap import bwrap_path

    isolation = Isolation(options.hermetic, bwrap_path() is not None)
    sandboxes = choose_sandboxes(graph, isolation, reporter)
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

            key, document = node_key(node, upstream_digest, sandboxes[node.spec.name].isolation)
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
                    limits=effective_limits(node.stage_lock.get("limits"), workspace.settings.get("limits")),
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
            _register(workspace, graph, results, keys, isolation, report, ctx.statcache)
    ctx.statcache.save()
    report.seconds = time.monotonic() - started
    return report


def _register(
    workspace: Workspace,
    graph: BuildGraph,
    results: Mapping[str, NodeOutcome],
    keys: Mapping[str, tuple[str, dict[str, Any]]],
    isolation: Isolation,
    report: BuildReport,
    statcache: StatCache,
) -> None:
    """Record and register every spec whose stages all succeeded, upstream specs first."""
    ids = content_ids(graph, isolation)
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
                _keep_reproducible(workspace, graph, name, statcache)
                report.records[name] = record
                report.versions[name] = (known, False)
                continue
            registry = registry or open_registry(workspace)
            version, created, revived = register(workspace, graph, name, record, ids, results, registry, statcache)
            if revived is not None:
                report.revived[name] = revived
            if not created and (differ := differing_outputs(version, record)):
                report.differs[name] = differ
            save_build_record(workspace, {**record, "registered": version.ref})
            report.records[name] = record
            report.versions[name] = (version.ref, created)
    finally:
        if registry is not None:
            registry.close()
    if registry is not None:
        keep_reserve(workspace.home)  # room for gc on a disk this build may fill


def _keep_reproducible(workspace: Workspace, graph: BuildGraph, name: str, statcache: StatCache) -> None:
    """Even when nothing ran, put back a data or code snapshot that went missing from the
    store (quarantined, say): the registered version must stay reproducible. Cheap when
    they are there: a few stat calls."""
    item = graph.specs[name]
    for stage_name, stage in item.lock.stages.items():
        code_snapshot(item, stage["code"], workspace, workspace.store)
        for source in graph.node(item.spec.node_id(stage_name)).inputs.values():
            if isinstance(source, DataInput) and source.path is not None:
                data_snapshot(source, item.spec.repo_root, workspace.store, statcache)


def _os_reason(exc: OSError, workspace: Workspace) -> str:
    if exc.errno == errno.ENOSPC:
        return (
            f"no space left on the store's filesystem ({workspace.home}): free space (`modelspec gc` can, even "
            "now), or move it (MODELSPEC_HOME)"
        )
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
