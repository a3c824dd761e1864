"""Exact reproduction of a registered version from what was recorded, not from the workspace.

Everything comes from the store: the lock, the code snapshot of each stage (so history
may have been rewritten since), the data snapshots, the environment's lock file. The
stored lock becomes a graph that the build's scheduler runs through the build's tasks
(`build.tasks`) with a forcing rebuilder: every stage runs afresh in the sandbox, ignoring
the action cache, and each output's digest is compared with the recorded one.

    identical          every output has its recorded digest              exit 0
    within tolerance   only metrics files differ, each metric within rtol exit 0, with a warning
    different          anything else                                     exit 1
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .build.executor import CLUSTER_JOBS, executor_of
from .build.graph import BuildGraph, DataInput, Node, lock_graph
from .build.rebuilder import ForcingRebuilder, NodeOutcome, NodeState
from .build.snapshots import complete
from .build.tasks import EnvironmentPool, Tasks, UpstreamDigest, run_tasks
from .digest import canonical_json
from .errors import CorruptObjectError, ModelspecError, SandboxUnavailableError, StoreError
from .events import Reporter, ignore
from .registry.facts import revival_hint
from .registry.registry import ModelVersion, Registry, retired_error
from .sandbox.process import ProcessSandbox, Sandbox
from .spec.lockdata import FromData, PathData, RegisteredData
from .spec.model import Lock, split_output_ref
from .store.leases import Lease, remove_stale_leases
from .store.objects import Entry, LocalStore
from .store.protocol import ObjectStore
from .store.workspace import Workspace

IDENTICAL, WITHIN, DIFFERENT = "identical", "within tolerance", "different"


@dataclass(frozen=True)
class OutputComparison:
    stage: str
    output: str
    recorded: dict[str, Any]
    reproduced: dict[str, Any] | None

    @property
    def identical(self) -> bool:
        return self.reproduced is not None and self.reproduced["digest"] == self.recorded["digest"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "output": self.output,
            "identical": self.identical,
            "recorded": self.recorded,
            "reproduced": self.reproduced,
        }


@dataclass
class ReproductionReport:
    ref: str
    verdict: str
    outputs: list[OutputComparison]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric → recorded, reproduced, within
    seconds: float = 0.0
    original_seconds: float = 0.0
    failure: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "verdict": self.verdict,
            "outputs": [o.to_dict() for o in self.outputs],
            "differing": [f"{o.stage}.{o.output}" for o in self.outputs if not o.identical],
            "metrics": self.metrics,
            "seconds": round(self.seconds, 3),
            "original_seconds": round(self.original_seconds, 3),
            "failure": self.failure,
        }


class MissingPieceError(StoreError):
    """Something a reproduction needs is no longer in the store."""


def reproduce(
    workspace: Workspace,
    registry: Registry,
    ref: str,
    *,
    rtol: float = 0.0,
    into: Path | None = None,
    offline: bool = False,
    actor: str = "",
    jobs: int = os.cpu_count() or 1,
    reporter: Reporter = ignore,
    cancel: threading.Event | None = None,
    executor: Executor | None = None,
    executor_url: str | None = None,
) -> ReproductionReport:
    """Run every stage of `ref` again from what it recorded, as a build would (the same
    scheduler and tasks, `jobs` at once or on the caller's `executor`, the first failure
    stopping the rest), but forced: the action cache is neither read nor written. With
    `executor_url` (dask://HOST:PORT, else the workspace file's `executor:`) the stages run on
    a cluster's workers, which create the environment themselves."""
    started = time.monotonic()
    store = workspace.store
    store.clean_temp()
    remove_stale_leases(workspace.home)
    version = registry.resolve(ref)
    if version.status != "active":
        # Retired means gone for reproduce and export alike, even while gc's grace period
        # still holds some of its bytes: the answer must not depend on when gc last ran.
        raise retired_error(version)
    lock = Lock.from_dict(json.loads(_need(store, version, version.lock, "the lock").decode()))
    record = version.record
    graph = lock_graph(lock, record.get("upstream_artifacts", {}))
    order = graph.order()
    sandboxes = {lock.name: _sandbox_for(version)}
    env_file = _environment_file(workspace, version, lock)
    environments = EnvironmentPool(workspace, offline, reporter)
    cancel = cancel or threading.Event()
    cluster = None
    url = executor_of(executor_url, workspace.settings)
    if url is not None:
        from .build.cluster import open_cluster

        cluster = open_cluster(url, workspace, reporter, cancel, record=False)
    with Lease(workspace.home) as lease:  # what it uses, so that a concurrent gc keeps it
        sources = _stored_sources(workspace, version, graph, order, env_file, lease)
        tasks = Tasks(graph, sources, sandboxes, environments, ForcingRebuilder(), lease, reporter, cancel, cluster)
        if cluster is None:
            _prepare_environment(tasks, version, order, offline)
        jobs = jobs or (CLUSTER_JOBS if cluster else os.cpu_count() or 1)
        try:
            outcomes = run_tasks(tasks, order, jobs=jobs, keep_going=False, executor=executor)
        finally:
            if cluster is not None:
                cluster.close()
        reproduced: dict[str, dict[str, Entry]] = {}
        metrics: dict[str, float] = {}
        for node_id in order:
            result = outcomes[node_id].result
            if outcomes[node_id].state is NodeState.RAN and result is not None:
                reproduced[graph.node(node_id).stage] = dict(result.outputs)
                metrics.update(result.metrics)
        failure = _failure(graph, [outcomes[n] for n in order])
        if into is not None and not failure:
            _place_artifacts(store, lock, reproduced, into)
    comparisons: list[OutputComparison] = []
    for stage_name in lock.stages:
        for output, entry in sorted(record["stages"][stage_name]["outputs"].items()):
            fresh = reproduced.get(stage_name, {}).get(output)
            comparisons.append(OutputComparison(stage_name, output, entry, fresh.to_dict() if fresh else None))
    metric_report = compare_metrics(registry.metrics_of([version.id])[version.id], metrics, rtol)
    verdict = decide(comparisons, metric_report, _metrics_outputs(lock), failure)
    report = ReproductionReport(
        version.ref,
        verdict,
        comparisons,
        metric_report,
        time.monotonic() - started,
        sum(float(s.get("seconds", 0)) for s in record["stages"].values()),
        failure,
    )
    details = {"differing": report.to_dict()["differing"], "rtol": rtol, "failure": failure}
    registry.record_reproduction(version, verdict, details, actor)
    return report


@dataclass(frozen=True)
class StoredSources:
    """Where a reproduction's stages read from: what the version recorded, every piece
    checked to be whole in the store before anything runs."""

    workspace: Workspace
    keys: Mapping[str, str]  # node → its recorded action key
    code_entries: Mapping[str, Entry]  # node → its code snapshot
    data_entries: Mapping[str, Entry]  # digest → a data snapshot, or another spec's artifact
    env_file: Path | None

    def key(self, node: Node, upstream_digest: UpstreamDigest, isolation: str) -> tuple[str, dict[str, Any]]:
        return self.keys[node.id], {}

    def code(self, node: Node) -> Entry:
        return self.code_entries[node.id]

    def data(self, node: Node, source: DataInput) -> Entry:
        return self.data_entries[str(source.entry["digest"])]

    def environment_file(self, node: Node) -> Path:
        assert self.env_file is not None
        return self.env_file

    def log(self, node: Node) -> Path:
        return self.workspace.logs_dir / "reproduce" / node.spec_name / f"{node.stage}.log"


def _stored_sources(
    workspace: Workspace,
    version: ModelVersion,
    graph: BuildGraph,
    order: list[str],
    env_file: Path | None,
    lease: Lease,
) -> StoredSources:
    """A missing or corrupt piece is an error now, before any stage runs; a whole one is leased."""
    store, record = workspace.store, version.record
    keys: dict[str, str] = {}
    code_entries: dict[str, Entry] = {}
    data_entries: dict[str, Entry] = {}
    with lease.holding():
        for node_id in order:
            node = graph.node(node_id)
            recorded = record["stages"][node.stage]
            keys[node_id] = str(recorded["key"])
            what = f"the code snapshot of stage {node.stage}"
            code_entries[node_id] = _complete_entry(store, version, recorded["code"], what)
            for source in node.stage_lock.inputs.values():
                if isinstance(source, FromData):
                    entry = _data_entry(store, version, node.lock, record, source.data)
                    data_entries[entry.digest] = entry
        lease.add([*code_entries.values(), *data_entries.values()])
    return StoredSources(workspace, keys, code_entries, data_entries, env_file)


def _prepare_environment(tasks: Tasks, version: ModelVersion, order: list[str], offline: bool) -> None:
    """The environment, created before any stage runs: every stage of a lock shares it."""
    if not order:
        return
    try:
        tasks.environment(tasks.graph.node(order[0]))
    except ModelspecError as exc:
        hint = "run `modelspec reproduce` once without --offline to fill uv's cache" if offline else exc.hint
        raise type(exc)(f"cannot re-create the environment of {version.ref}: {exc.message}", hint=hint) from None


def _failure(graph: BuildGraph, outcomes: list[NodeOutcome]) -> str:
    """Why the reproduction is incomplete: the first stage that failed (or, when it was
    stopped from outside, the first that never ran); '' when every stage ran."""
    for outcome in outcomes:
        if outcome.state is NodeState.FAILED:
            return f"stage {graph.node(outcome.node).stage} failed: {outcome.reason}"
    for outcome in outcomes:
        if outcome.state is not NodeState.RAN:
            return f"stage {graph.node(outcome.node).stage} did not run: {outcome.reason}"
    return ""


def compare_metrics(
    recorded: Mapping[str, float], fresh: Mapping[str, float], rtol: float
) -> dict[str, dict[str, Any]]:
    result = {}
    for key in sorted(set(recorded) | set(fresh)):
        old, new = recorded.get(key), fresh.get(key)
        within = old is not None and new is not None and abs(new - old) <= rtol * abs(old)
        result[key] = {"recorded": old, "reproduced": new, "within": within}
    return result


def decide(
    outputs: list[OutputComparison],
    metrics: Mapping[str, Mapping[str, Any]],
    metrics_outputs: set[tuple[str, str]],
    failure: str,
) -> str:
    """`identical`, `within tolerance` (only metrics files differ, each metric within
    tolerance) or `different`. Pure: the verdict of the comparisons it is given."""
    if failure:
        return DIFFERENT
    differing = [o for o in outputs if not o.identical]
    if not differing:
        return IDENTICAL
    only_metrics = all((o.stage, o.output) in metrics_outputs for o in differing)
    if only_metrics and metrics and all(m["within"] for m in metrics.values()):
        return WITHIN
    return DIFFERENT


def _metrics_outputs(lock: Lock) -> set[tuple[str, str]]:
    return {(name, stage.metrics) for name, stage in lock.stages.items() if stage.metrics}


def _sandbox_for(version: ModelVersion) -> Sandbox:
    from .sandbox.bwrap import BubblewrapSandbox, bwrap_path, bwrap_unavailable

    if version.hermetic:
        if bwrap_path() is None:
            why, fix = bwrap_unavailable()
            raise SandboxUnavailableError(
                f"{version.ref} was built in the bubblewrap sandbox; reproducing it needs bubblewrap too, but {why}",
                hint=fix,
            )
        return BubblewrapSandbox()
    return ProcessSandbox()


def _environment_file(workspace: Workspace, version: ModelVersion, lock: Lock) -> Path | None:
    """The file the version's environment is created from: its uv lock file from the store,
    or its nix file, which must not have changed since."""
    pinned = lock.environment
    if pinned is None:
        return None
    if pinned["kind"] == "nix":
        from .store.objects import digest_path

        nix_file = workspace.root / str(pinned["file"])
        if not nix_file.is_file() or digest_path(nix_file.parent).digest != pinned.get("dir_digest"):
            raise MissingPieceError(
                f"{version.ref}'s nix environment is built from {pinned['file']}, which changed since",
                hint="check out the commit it was built from, or keep its nix environment (modelspec env list)",
            )
        return nix_file
    return Path(_need_path(workspace.store, version, str(pinned["file_digest"]), "the environment's lock file"))


def _data_entry(store: LocalStore, version: ModelVersion, lock: Lock, record: Mapping[str, Any], name: str) -> Entry:
    """The data `name` as the version read it: a snapshot, a registered artifact, or the
    artifact another spec's version gave it."""
    data = lock.data[name]
    if isinstance(data, PathData):
        return _complete_entry(store, version, data.to_dict(), f"the data snapshot {name!r}")
    if isinstance(data, RegisteredData):
        return _complete_entry(store, version, data.to_dict(), f"the input {name!r} from {data.registered}")
    upstream = record["upstream_artifacts"][name]
    return _complete_entry(store, version, upstream, f"the input {name!r} from spec {data.spec!r}")


def _complete_entry(store: LocalStore, version: ModelVersion, entry: Mapping[str, Any], what: str) -> Entry:
    value = Entry.from_dict(dict(entry))
    if not complete(store, value):
        raise _missing(version, what, value.digest)
    for digest in store.tree_objects(value):
        _need_path(store, version, digest, what)
    return value


def _need(store: LocalStore, version: ModelVersion, digest: str, what: str) -> bytes:
    return Path(_need_path(store, version, digest, what)).read_bytes()


def _need_path(store: LocalStore, version: ModelVersion, digest: str, what: str) -> str:
    # A LocalStore's: the verified object's path (verified once per process), and its quarantine.
    try:
        return str(store.checked_path(digest))
    except CorruptObjectError:
        raise CorruptObjectError(
            f"{what} of {version.ref} ({digest}) is corrupt; it was quarantined in {store.quarantine_dir}",
            hint="`modelspec verify` lists every corrupt object; rebuild the spec to recreate it if you can",
        ) from None
    except StoreError:
        raise _missing(version, what, digest) from None


def _missing(version: ModelVersion, what: str, digest: str) -> MissingPieceError:
    if version.status != "active":
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(version.status_time or 0))
        gone = f"{what} of {version.ref} is gone" if what else f"{version.ref}'s artifacts and inputs are gone"
        return MissingPieceError(
            f"{gone}: the version was {version.status} by retention ({version.status_reason}) on {when}",
            hint=revival_hint(version.ref, version.commit, version.record.get("spec", "")),
        )
    return MissingPieceError(
        f"{what} of {version.ref} ({digest}) is missing from the store",
        hint="run `modelspec verify`; if the workspace was cleaned by hand, rebuild the spec",
    )


def _place_artifacts(store: ObjectStore, lock: Lock, reproduced: Mapping[str, Mapping[str, Entry]], into: Path) -> None:
    for ref in lock.artifacts:
        stage, output = split_output_ref(ref)
        dest = into / stage / lock.stages[stage].outputs[output]
        if not dest.exists():
            store.restore(reproduced[stage][output], dest, link=False)
    (into / "lock.json").write_bytes(canonical_json(lock.to_dict()) + b"\n")
