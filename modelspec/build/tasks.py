"""Tasks: the one place a node of a graph becomes a stage's job and runs.

A build and a reproduction differ only in where a node's key, code and data come from
and where its log goes (`Sources`: the workspace, or what a version recorded). Everything
else is here, once: the sandbox of each spec (chosen once per run), the environments
(created on first use), the leases that keep what a stage uses from a concurrent gc, the
job itself, the rebuilder that decides whether it runs, and the events it reports.

    graph ─ scheduler ─▶ Tasks.run(node) ─ rebuilder ─▶ run_node(job) ─ sandbox
                                                    └─▶ cluster.run(StageTask) ─ a Dask worker's sandbox
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..env.environment import Environment, ensure_environment
from ..errors import SandboxUnavailableError, StoreError
from ..events import Event, Reporter
from ..sandbox.limits import effective_limits
from ..sandbox.process import ProcessSandbox, Sandbox
from ..store.files import Remover
from ..store.leases import Lease
from ..store.objects import Entry, LocalStore
from ..store.statcache import StatCache
from ..store.traces import ActionResult
from ..store.workspace import Workspace
from .graph import BuildGraph, DataInput, Node, UpstreamInput
from .plan import Isolation, node_key
from .rebuilder import NodeOutcome, NodeState, Rebuilder
from .runner import RunContext, StageFailure, StageJob, run_node
from .scheduler import schedule
from .snapshots import code_snapshot, data_snapshot
from .stagetask import StageTask, dask_resources

if TYPE_CHECKING:
    from .cluster import Cluster

UpstreamDigest = Callable[[UpstreamInput], str]


class Sources(Protocol):
    """Where a node's key, code and data come from, and where its log goes."""

    def key(self, node: Node, upstream_digest: UpstreamDigest, isolation: str) -> tuple[str, dict[str, Any]]: ...

    def code(self, node: Node) -> Entry: ...

    def data(self, node: Node, source: DataInput) -> Entry: ...

    def environment_file(self, node: Node) -> Path: ...

    def log(self, node: Node) -> Path: ...


@dataclass(frozen=True)
class WorkspaceSources:
    """A build's: keys computed from the inputs, code exported from git, data snapshotted
    from the working tree (once per digest, then found in the store). Each snapshot is
    checked once per build, however many stages share it (stages of a spec often read the
    same code and data)."""

    workspace: Workspace
    graph: BuildGraph
    statcache: StatCache
    _checked: dict[str, Entry] = field(default_factory=dict, compare=False, repr=False)

    def key(self, node: Node, upstream_digest: UpstreamDigest, isolation: str) -> tuple[str, dict[str, Any]]:
        return node_key(node, upstream_digest, isolation)

    def code(self, node: Node) -> Entry:
        seen = f"code {node.stage_lock.code_digest}"
        checked = self._checked.get(seen)
        if checked is None:
            item = self.graph.specs[node.spec_name]
            checked = code_snapshot(item, node.stage_lock.code, self.workspace, self.workspace.store)
            self._checked[seen] = checked
        return checked

    def data(self, node: Node, source: DataInput) -> Entry:
        seen = f"data {source.entry['digest']}"
        checked = self._checked.get(seen)
        if checked is None:
            repo_root = self.graph.specs[node.spec_name].spec.repo_root
            checked = self._checked[seen] = data_snapshot(source, repo_root, self.workspace.store, self.statcache)
        return checked

    def environment_file(self, node: Node) -> Path:
        assert node.lock.environment is not None
        return self.graph.specs[node.spec_name].spec.repo_root / str(node.lock.environment["file"])

    def log(self, node: Node) -> Path:
        return self.workspace.logs_dir / node.spec_name / f"{node.stage}.log"


class EnvironmentPool:
    """The environments of one run, each created on first use (never for a no-op build)."""

    def __init__(self, workspace: Workspace, offline: bool, reporter: Reporter) -> None:
        self.workspace = workspace
        self.offline = offline
        self.reporter = reporter
        self._lock = threading.Lock()
        self._made: dict[str, Environment] = {}

    def get(self, pinned: Mapping[str, Any], env_file: Path) -> Environment:
        with self._lock:
            digest = str(pinned["digest"])
            if digest not in self._made:
                self._made[digest] = ensure_environment(
                    pinned,
                    env_file,
                    self.workspace.envs_dir,
                    self.workspace.store,
                    offline=self.offline,
                    reporter=self.reporter,
                )
            return self._made[digest]


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


class Tasks:
    """Runs the nodes of one graph: `run` is what the scheduler executes for each node.
    The key document of every node that got as far as a key is kept in `keys`."""

    def __init__(
        self,
        graph: BuildGraph,
        sources: Sources,
        sandboxes: Mapping[str, Sandbox],  # spec name → its sandbox
        environments: EnvironmentPool,
        rebuilder: Rebuilder,
        lease: Lease,
        reporter: Reporter,
        cancel: threading.Event,
        cluster: Cluster | None = None,  # where stages that must run go, if not to this machine
    ) -> None:
        self.graph = graph
        self.cluster = cluster
        self.sources = sources
        self.sandboxes = sandboxes
        self.environments = environments
        self.rebuilder = rebuilder
        self.lease = lease
        self.reporter = reporter
        self.cancel = cancel
        self.workspace = environments.workspace
        self.keys: dict[str, tuple[str, dict[str, Any]]] = {}
        self.remover = Remover()  # work directories, removed behind the stages

    @property
    def store(self) -> LocalStore:
        return self.workspace.store

    def settle(self, node_id: str, parents: Mapping[str, NodeOutcome]) -> NodeOutcome | None:
        """The node's outcome if the action cache has it (the scheduler asks before handing
        the node to its executor, so a cache hit costs no hand-over); None: it must run."""
        node = self.graph.node(node_id)
        try:
            key = self._key(node, parents)
            hit = self.rebuilder.lookup(key)
        except (StoreError, OSError):
            return None  # `run` meets the same problem and reports it
        if hit is None:
            return None
        outcome = NodeOutcome(node_id, NodeState.CACHED, key, hit)
        _report(outcome, self.reporter)
        return outcome

    def _key(self, node: Node, parents: Mapping[str, NodeOutcome]) -> str:
        known = self.keys.get(node.id)
        if known is None:
            sandbox = self.sandboxes[node.spec_name]
            known = self.keys[node.id] = self.sources.key(node, lambda s: _output(parents, s).digest, sandbox.isolation)
        return known[0]

    def run(self, node_id: str, parents: Mapping[str, NodeOutcome]) -> NodeOutcome:
        """The node's outcome: cached, ran, or failed (a failure is a value, never raised)."""
        node = self.graph.node(node_id)

        def upstream_output(source: UpstreamInput) -> Entry:
            return _output(parents, source)

        sandbox = self.sandboxes[node.spec_name]
        key = self._key(node, parents)

        def run() -> ActionResult | StageFailure:
            if self.cluster is not None:  # the worker says when it starts (and which one it is)
                result = self.remote_run(node, upstream_output, key, sandbox, self.cluster)
            else:
                self.reporter(Event("stage-start", node_id, {"key": key}))
                job = self.job(node, upstream_output)
                result = run_node(job, key, RunContext(self.store, sandbox, self.cancel, self.remover.remove))
            if isinstance(result, ActionResult):
                self.lease.add([*result.outputs.values(), Entry("file", result.log, 0)])
            return result

        try:
            outcome = self.rebuilder.build(node_id, key, run)
        except (StoreError, OSError) as exc:
            reason = exc.message if isinstance(exc, StoreError) else _os_reason(exc, self.workspace)
            self.reporter(Event("stage-failed", node_id, {"reason": reason, "log_tail": "", "log": ""}))
            return NodeOutcome(node_id, NodeState.FAILED, key, reason=reason)
        if self.cluster is not None and outcome.state in (NodeState.RAN, NodeState.FAILED):
            outcome = self.cluster.placed(outcome)
        _report(outcome, self.reporter)
        return outcome

    def remote_run(
        self,
        node: Node,
        upstream_output: Callable[[UpstreamInput], Entry],
        key: str,
        sandbox: Sandbox,
        cluster: Cluster,
    ) -> ActionResult | StageFailure:
        pinned = node.lock.environment
        if pinned is not None and pinned["kind"] != "uv":
            now = time.time()
            reason = f"a {pinned['kind']} environment cannot run on a cluster yet (uv environments can)"
            return StageFailure(node.id, reason, None, "", now, now)
        return cluster.run(self.stage_task(node, upstream_output, key, sandbox, cluster), self.sources.log(node))

    def stage_task(
        self,
        node: Node,
        upstream_output: Callable[[UpstreamInput], Entry],
        key: str,
        sandbox: Sandbox,
        cluster: Cluster,
    ) -> StageTask:
        """What a worker needs to run the node: digests (in the store, leased), never bytes."""
        pinned = node.lock.environment
        with self.lease.holding():
            code, inputs = self._sources(node, upstream_output)
            env_file = []
            if pinned is not None:  # the worker creates the environment from the stored lock file
                digest = str(pinned["file_digest"])
                env_file = [self.store.put_file(self.sources.environment_file(node), digest=digest)]
            self.lease.add([code, *(e for _name, e in inputs.values()), *(Entry("file", d, 0) for d in env_file)])
        objects = [*self.store.tree_objects(code)]
        for _name, input_entry in inputs.values():
            objects.extend(self.store.tree_objects(input_entry))
        return StageTask(
            key=key,
            node=node.id,
            stage=node.stage_lock,
            code=code,
            inputs=inputs,
            objects=tuple(dict.fromkeys([*objects, *env_file])),
            environment=pinned,
            source_date_epoch=int(node.lock.code.get("time", 0)),
            limits=effective_limits(node.stage_lock.limits, self.workspace.settings.get("limits")),
            isolation=sandbox.isolation,
            remote=cluster.config,
            cancel=f"{cluster.cancel_name}-{key}",  # per stage: a stage another build shares is not stopped
            record=cluster.record,
            resources=dask_resources(node.stage_lock.resources),
        )

    def _sources(
        self, node: Node, upstream_output: Callable[[UpstreamInput], Entry]
    ) -> tuple[Entry, dict[str, tuple[str, Entry]]]:
        """The node's code and its inputs (basename, entry), in the store; called under the
        lease's hold, which the caller adds them to."""

        def entry(source: DataInput | UpstreamInput) -> Entry:
            if isinstance(source, DataInput):
                return self.sources.data(node, source)
            return upstream_output(source)

        return self.sources.code(node), {i: (s.basename, entry(s)) for i, s in node.inputs.items()}

    def job(self, node: Node, upstream_output: Callable[[UpstreamInput], Entry]) -> StageJob:
        """Everything the node's run needs, in the store and leased."""
        environment = self.environment(node)
        with self.lease.holding():
            code, inputs = self._sources(node, upstream_output)
            self.lease.add([code, *(e for _name, e in inputs.values())])
        self.rebuilder.present(e for _name, e in inputs.values())  # an upstream's output may be on the remote only
        return StageJob(
            node=node.id,
            stage=node.stage_lock,
            code=code,
            inputs=inputs,
            environment=environment,
            source_date_epoch=int(node.lock.code.get("time", 0)),
            log=self.sources.log(node),
            limits=effective_limits(node.stage_lock.limits, self.workspace.settings.get("limits")),
        )

    def environment(self, node: Node) -> Environment | None:
        """The node's environment (leased), created if this run has not yet."""
        pinned = node.lock.environment
        if pinned is None:
            return None
        self.lease.add([Entry("env", str(pinned["digest"]), 0)])
        return self.environments.get(pinned, self.sources.environment_file(node))


def run_tasks(
    tasks: Tasks, order: list[str], *, jobs: int, keep_going: bool, executor: Executor | None = None
) -> dict[str, NodeOutcome]:
    """Every node's outcome, the graph run by the scheduler (`order` is the graph's own
    order); a skipped node is reported."""
    try:
        outcomes = schedule(
            tasks.graph,
            order,
            tasks.run,
            jobs=jobs,
            keep_going=keep_going,
            cancel=tasks.cancel,
            executor=executor,
            settle=tasks.settle,
            settling=tasks.lease.holding,  # one hold of the gc guard, one lease write, per run of hits
        )
    finally:
        tasks.remover.wait()  # the build leaves no work directory behind
    for outcome in outcomes.values():
        if outcome.state is NodeState.SKIPPED:
            tasks.reporter(Event("stage-skipped", outcome.node, {"reason": outcome.reason}))
    return outcomes


def _output(parents: Mapping[str, NodeOutcome], source: UpstreamInput) -> Entry:
    result = parents[source.node].result
    assert result is not None
    return result.outputs[source.output]


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
