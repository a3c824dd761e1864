"""The build engine: from a resolved graph to outputs in the store and registered versions.

A scheduler walks the graph; for each node a task (`tasks`) computes its key and the
rebuilder either finds it in the action cache or runs the node in the spec's sandbox;
every spec whose stages all succeeded is recorded and registered. Everything the build
uses is leased, so a concurrent gc keeps it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..digest import canonical_json, digest_bytes
from ..events import Reporter, ignore
from ..store.leases import Lease, remove_stale_leases
from ..store.objects import Entry
from ..store.reserve import keep as keep_reserve
from ..store.traces import ActionCache
from ..store.workspace import Workspace
from .executor import CLUSTER_JOBS, executor_of
from .gating import judge_gates, known_verdict
from .graph import BuildGraph, DataInput
from .loading import load_graph, open_registry, reach_registry, write_locks
from .plan import Isolation, content_ids
from .provenance import RemoteRead
from .rebuilder import CachingRebuilder, ForcingRebuilder, NodeOutcome, NodeState, Rebuilder
from .registration import (
    build_record,
    differing_outputs,
    register,
    save_build_record,
    unchanged_registration,
)
from .remote import build_remote, with_remote
from .tasks import EnvironmentPool, Tasks, WorkspaceSources, choose_sandboxes, run_tasks

if TYPE_CHECKING:
    from ..registry.registry import Revival
    from ..spec.gates import GateVerdict


@dataclass(frozen=True)
class BuildOptions:
    overrides: tuple[str, ...] = ()
    jobs: int = os.cpu_count() or 1
    keep_going: bool = False
    force: bool = False
    hermetic: str | None = None
    allow_dirty: bool = False
    offline: bool = False
    remote: bool = True  # ask the workspace's remote cache after a local miss (--no-remote)
    push: bool = True  # upload what ran to the remote as the build goes (--no-push)
    download: bool = True  # fetch the versions' artifacts held on the remote (--no-download)
    # Where stages that must run go: dask://HOST:PORT, or local; None: the workspace file's
    # `executor:`, else local (--executor).
    executor: str | None = None


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
    # spec name → its version's quality gates, judged after registering it (specs with gates)
    gates: dict[str, GateVerdict] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.state in (NodeState.CACHED, NodeState.RAN) for o in self.outcomes)

    def count(self, state: NodeState) -> int:
        return sum(1 for o in self.outcomes if o.state is state)


def build(
    spec_paths: list[Path],
    options: BuildOptions = BuildOptions(),
    reporter: Reporter = ignore,
    cancel: threading.Event | None = None,
    executor: Executor | None = None,
) -> BuildReport:
    """Build the targets: run what changed, reuse the rest, record the result of each spec.

    Stages run on `executor` when one is given (its owner shuts it down), else on a thread
    pool of `options.jobs` workers."""
    started = time.monotonic()
    started_at = time.time()  # the provenance's startedOn
    cancel = cancel or threading.Event()
    workspace, graph, ctx = load_graph(spec_paths, options.overrides, options.allow_dirty)
    reach_registry(workspace)
    store = workspace.store
    store.clean_temp()
    remove_stale_leases(workspace.home)
    from ..sandbox.bwrap import bwrap_path

    isolation = Isolation(options.hermetic, bwrap_path() is not None)
    sandboxes = choose_sandboxes(graph, isolation, reporter)
    write_locks(graph, workspace.cache_dir)
    cache = ActionCache(workspace.action_cache_dir, store.tmp)
    cache.read_index(graph.cache_index)
    environments = EnvironmentPool(workspace, options.offline, reporter)
    sources = WorkspaceSources(workspace, graph, ctx.statcache)
    cluster = None
    url = executor_of(options.executor, workspace.settings)
    if url is not None:  # Dask and the remote's modules load only for a cluster build
        from .cluster import open_cluster

        cluster = open_cluster(url, workspace, reporter, cancel)  # connected when a stage must run
    # What this build uses is leased, so that a concurrent gc keeps it; its objects reach the
    # disk before registration names them, not one fsync at a time.
    with Lease(workspace.home) as lease, store.deferring_sync():
        # A cluster's workers upload what they ran themselves.
        push = options.push and cluster is None
        remote = build_remote(workspace, fetch=options.remote and not options.force, push=push)
        rebuilder: Rebuilder = (
            ForcingRebuilder(cache, workspace.locks_dir)
            if options.force
            else CachingRebuilder(cache, store, workspace.locks_dir, lease, remote.held if remote else ())
        )
        rebuilder = with_remote(rebuilder, remote, store, lease, reporter)
        tasks = Tasks(graph, sources, sandboxes, environments, rebuilder, lease, reporter, cancel, cluster)
        order = graph.order()
        jobs = options.jobs or (CLUSTER_JOBS if cluster is not None else os.cpu_count() or 1)
        try:
            results = run_tasks(tasks, order, jobs=jobs, keep_going=options.keep_going, executor=executor)
        finally:
            if cluster is not None:
                cluster.close()
        cache.write_index(graph.cache_index)
        report = BuildReport([results[n] for n in order])
        with lease.holding():
            fetch = rebuilder.present if options.download else None
            # Left on the remote, a new version's artifacts are hashed for its provenance as they stream past.
            read_remote = remote.remote.store.download_to if remote and not options.download else None
            _register(workspace, graph, results, tasks.keys, isolation, report, sources, fetch, started_at, read_remote)
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
    sources: WorkspaceSources,
    fetch: Callable[[Iterable[Entry]], None] | None,
    started_at: float,
    read_remote: RemoteRead | None,
) -> None:
    """Record and register every spec whose stages all succeeded, upstream specs first,
    its artifacts fetched first (`fetch`) if they are held on the remote only."""
    ids = content_ids(graph, isolation)
    order = graph.order()
    first_node: dict[str, int] = {}
    for i, node_id in enumerate(order):
        first_node.setdefault(graph.node(node_id).spec_name, i)
    spec_order = sorted(graph.specs, key=first_node.__getitem__)
    registry = None
    try:
        for name in spec_order:
            nodes = [n for n in order if graph.node(n).spec_name == name]
            if not all(results[n].state in (NodeState.CACHED, NodeState.RAN) for n in nodes):
                continue
            record = build_record(
                workspace, graph, name, {n: results[n] for n in nodes}, {n: keys[n][1] for n in nodes}, ids[name]
            )
            if fetch is not None:
                fetch(Entry.from_dict(artifact) for artifact in record["artifacts"].values())
            record_json = canonical_json(record)  # made once: it is a megabyte of JSON at 1,000 stages
            digest = digest_bytes(record_json)
            known = unchanged_registration(workspace, record, digest)
            if known is not None:
                _keep_reproducible(sources, graph, name)
                report.records[name] = record
                report.versions[name] = (known, False)
                continue
            registry = registry or open_registry(workspace)
            version, created, revived = register(
                workspace, graph, name, record, ids, results, registry, sources, started_at, read_remote
            )
            if revived is not None:
                report.revived[name] = revived
            if not created and (differ := differing_outputs(version, record)):
                report.differs[name] = differ
            save_build_record(workspace, name, record_json, version.ref, digest)
            report.records[name] = record
            report.versions[name] = (version.ref, created)
        for name, (ref, _created) in report.versions.items():
            spec = graph.specs[name].spec
            if spec.gates:  # judged again at every build, the baseline may have moved (see gating.py)
                verdict = known_verdict(workspace, ref, spec)
                if verdict is None:
                    registry = registry or open_registry(workspace)
                    verdict = judge_gates(workspace, registry, ref, spec)
                report.gates[name] = verdict
    finally:
        if registry is not None:
            registry.close()
    if registry is not None:
        keep_reserve(workspace.home)  # room for gc on a disk this build may fill


def _keep_reproducible(sources: WorkspaceSources, graph: BuildGraph, name: str) -> None:
    """Even when nothing ran, put back a data or code snapshot that went missing from the
    store (quarantined, say): the registered version must stay reproducible. Cheap when
    they are there: a few stat calls."""
    item = graph.specs[name]
    for stage_name in item.lock.stages:
        node = graph.node(item.spec.node_id(stage_name))
        sources.code(node)
        for source in node.inputs.values():
            if isinstance(source, DataInput) and source.path is not None:
                sources.data(node, source)
