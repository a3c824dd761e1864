"""Exact reproduction of a registered version from what was recorded, not from the workspace.

Everything comes from the store: the lock, the code snapshot of each stage (so history
may have been rewritten since), the data snapshots, the environment's lock file. Every
stage runs afresh in the sandbox, ignoring the action cache, and each output's digest is
compared with the recorded one.

    identical          every output has its recorded digest              exit 0
    within tolerance   only metrics files differ, each metric within rtol exit 0, with a warning
    different          anything else                                     exit 1
"""

from __future__ import annotations

import graphlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .build.runner import RunContext, StageFailure, StageJob, run_node
from .build.snapshots import complete
from .digest import canonical_json
from .env.environment import Environment, ensure_environment
from .errors import CorruptObjectError, ModelspecError, SandboxUnavailableError, StoreError
from .events import Event, Reporter, ignore
from .registry.facts import revival_hint
from .registry.registry import ModelVersion, Registry, retired_error
from .sandbox.limits import effective_limits
from .sandbox.process import ProcessSandbox, Sandbox
from .spec.model import Lock, split_output_ref
from .store.objects import Entry, LocalStore
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
    reporter: Reporter = ignore,
    cancel: threading.Event | None = None,
) -> ReproductionReport:
    started = time.monotonic()
    store = workspace.store
    store.clean_temp()
    version = registry.resolve(ref)
    if version.status != "active":
        # Retired means gone for reproduce and export alike, even while gc's grace period
        # still holds some of its bytes: the answer must not depend on when gc last ran.
        raise retired_error(version)
    lock = Lock.from_dict(json.loads(_need(store, version, version.lock, "the lock").decode()))
    record = version.record
    sandbox = _sandbox_for(version)
    environment = _environment(workspace, version, lock, offline, reporter)
    ctx = RunContext(store, sandbox, cancel or threading.Event())
    reproduced: dict[str, dict[str, Entry]] = {}
    comparisons: list[OutputComparison] = []
    metrics: dict[str, float] = {}
    failure = ""
    for stage_name in _stage_order(lock):
        stage = lock.stages[stage_name]
        recorded = record["stages"][stage_name]
        job = StageJob(
            node=f"{lock.name}:{stage_name}",
            stage=stage,
            code=_complete_entry(store, version, recorded["code"], f"the code snapshot of stage {stage_name}"),
            inputs={i: _input(store, version, lock, record, src, reproduced) for i, src in stage["inputs"].items()},
            environment=environment,
            source_date_epoch=int(lock.code.get("time", 0)),
            log=workspace.logs_dir / "reproduce" / lock.name / f"{stage_name}.log",
            limits=effective_limits(stage.get("limits"), workspace.settings.get("limits")),
        )
        reporter(Event("stage-start", job.node, {"key": recorded["key"]}))
        result = run_node(job, recorded["key"], ctx)
        if isinstance(result, StageFailure):
            reporter(
                Event(
                    "stage-failed",
                    job.node,
                    {"reason": result.reason, "log_tail": result.log_tail, "log": str(result.log_path)},
                )
            )
            failure = f"stage {stage_name} failed: {result.reason}"
            break
        reporter(Event("stage-done", job.node, {"seconds": result.duration}))
        reproduced[stage_name] = dict(result.outputs)
        metrics.update(result.metrics)
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
    if into is not None and not failure:
        _place_artifacts(store, lock, reproduced, into)
    details = {"differing": report.to_dict()["differing"], "rtol": rtol, "failure": failure}
    registry.record_reproduction(version, verdict, details, actor)
    return report


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
    return {(name, stage["metrics"]) for name, stage in lock.stages.items() if stage.get("metrics")}


def _stage_order(lock: Lock) -> list[str]:
    dependencies = {
        name: {source["stage"] for source in stage["inputs"].values() if "stage" in source}
        for name, stage in lock.stages.items()
    }
    return list(graphlib.TopologicalSorter(dependencies).static_order())


def _sandbox_for(version: ModelVersion) -> Sandbox:
    from .sandbox.bwrap import BubblewrapSandbox, bwrap_path, bwrap_unavailable

    if version.hermetic:
        if bwrap_path() is None:
            why, fix = bwrap_unavailable()
            raise SandboxUnavailableError(
                f"{version.ref} was built in the bubblewrap sandbox; reproducing it needs bubblewrap too, "
                f"but {why}",
                hint=fix,
            )
        return BubblewrapSandbox()
    return ProcessSandbox()


def _environment(
    workspace: Workspace, version: ModelVersion, lock: Lock, offline: bool, reporter: Reporter
) -> Environment | None:
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
        env_file = nix_file
    else:
        env_file = Path(_need_path(workspace.store, version, str(pinned["file_digest"]), "the environment's lock file"))
    try:
        return ensure_environment(
            pinned, env_file, workspace.envs_dir, workspace.store, offline=offline, reporter=reporter
        )
    except ModelspecError as exc:
        hint = "run `modelspec reproduce` once without --offline to fill uv's cache" if offline else exc.hint
        raise type(exc)(f"cannot re-create the environment of {version.ref}: {exc.message}", hint=hint) from None


def _input(
    store: LocalStore,
    version: ModelVersion,
    lock: Lock,
    record: Mapping[str, Any],
    source: Mapping[str, Any],
    reproduced: Mapping[str, Mapping[str, Entry]],
) -> tuple[str, Entry]:
    if "stage" in source:
        path = lock.stages[source["stage"]]["outputs"][source["output"]]
        return Path(path).name, reproduced[source["stage"]][source["output"]]
    name = source["data"]
    data = lock.data[name]
    if "path" in data:
        return Path(data["path"]).name, _complete_entry(store, version, data, f"the data snapshot {name!r}")
    if "registered" in data:
        return str(data["basename"]), _complete_entry(
            store, version, data, f"the input {name!r} from {data['registered']}"
        )
    upstream = record["upstream_artifacts"][name]
    entry = _complete_entry(store, version, upstream, f"the input {name!r} from spec {data['spec']!r}")
    return str(upstream["basename"]), entry


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


def _place_artifacts(store: LocalStore, lock: Lock, reproduced: Mapping[str, Mapping[str, Entry]], into: Path) -> None:
    for ref in lock.artifacts:
        stage, output = split_output_ref(ref)
        dest = into / stage / lock.stages[stage]["outputs"][output]
        if not dest.exists():
            store.restore(reproduced[stage][output], dest, link=False)
    (into / "lock.json").write_bytes(canonical_json(lock.to_dict()) + b"\n")
