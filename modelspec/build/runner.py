"""Running one node: prepare a scratch directory, run the command in a sandbox, check and
ingest its outputs, and return the `ActionResult` (or a `StageFailure`, which is a value).

    <home>/tmp/<pid>-run-…/
        code/        code snapshot (from the store)    in/<id>/<basename>   inputs
        out/         the only place the stage writes   config.json          its params
        home/ tmp/   scratch                           log                  stdout + stderr
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..digest import canonical_json
from ..env.environment import Environment
from ..flat import flatten_metrics
from ..sandbox.bwrap import NETWORK_SYMPTOMS
from ..sandbox.limits import NO_LIMITS, Limits
from ..sandbox.process import RunRequest, Sandbox
from ..spec.lockdata import StageLock
from ..store.files import remove_path, write_atomic
from ..store.objects import Entry, LocalStore
from ..store.owner import temp_prefix
from ..store.traces import ActionResult

LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class StageFailure:
    node: str
    reason: str
    log_path: Path | None
    log_tail: str
    started: float
    ended: float


@dataclass
class RunContext:
    # A LocalStore: inputs are hardlinked into the sandbox and outputs moved in from its tmp/.
    store: LocalStore
    sandbox: Sandbox
    cancel: threading.Event
    # How the work directory goes once the outputs are in the store: a build hands it to a
    # background thread (`Remover`), so that the next stage does not wait for the disk.
    remove: Callable[[Path], None] = remove_path


@dataclass(frozen=True)
class StageJob:
    """Everything one run needs, already in the store: the runner reads nothing else."""

    node: str
    stage: StageLock
    code: Entry  # the code snapshot tree
    inputs: Mapping[str, tuple[str, Entry]]  # input id → (basename, entry)
    environment: Environment | None
    source_date_epoch: int
    log: Path
    limits: Limits = NO_LIMITS


def run_node(job: StageJob, key: str, ctx: RunContext) -> ActionResult | StageFailure:
    store = ctx.store
    workdir = Path(tempfile.mkdtemp(dir=store.tmp, prefix=f"{temp_prefix(store.tmp)}run-"))
    # The run logs to a file of its own beside its work directory, shown at `job.log` (a hard
    # link, so it can be followed while the stage runs). Two builds running the same stage at
    # once (with other overrides) wrote one file, and one removed it under the other, whose
    # stage then failed for want of its log, or would have stored the other's.
    log = workdir.with_name(f"{workdir.name}.log")
    shown = _show_log(log, job.log)
    started = time.time()
    stage = job.stage
    try:
        link = ctx.sandbox.protects_inputs
        store.restore(job.code, workdir / "code", link=link)
        (workdir / "in").mkdir()
        for input_id, (basename, entry) in job.inputs.items():
            store.restore(entry, workdir / "in" / input_id / basename, link=link)
        for name in ("out", "home", "tmp"):
            (workdir / name).mkdir()
        (workdir / "config.json").write_bytes(canonical_json(stage.params) + b"\n")
        request = RunRequest(
            argv=stage.argv,
            shell=stage.shell,
            inputs={i: basename for i, (basename, _entry) in job.inputs.items()},
            outputs=stage.outputs,
            params=stage.params,
            workdir=workdir,
            log=log,
            environment=job.environment,
            source_date_epoch=job.source_date_epoch,
            limits=job.limits,
        )
        outcome = ctx.sandbox.run(request, ctx.cancel)
        ended = time.time()
        if ctx.cancel.is_set():
            return _failure(job, log, "interrupted", started, ended)
        if outcome.exit_code != 0:
            reason = outcome.describe()
            limit = outcome.limit or _limit_in_log(job, log, ctx.sandbox.hermetic, workdir)
            if limit:
                setting = "timeout" if limit == "timeout" else f"limits.{limit}"
                reason = (
                    f"{_LIMIT_WORDS[limit]} (limit: {job.limits.describe(limit)}; raise the stage's `{setting}`"
                    f" or `limits.{limit}` in modelspec.yaml)"
                )
                _append(log, f"modelspec: {reason}\n")
            elif ctx.sandbox.hermetic and _mentions(log, *NETWORK_SYMPTOMS):
                reason += " (the sandbox has no network: a stage may only read its declared inputs)"
            elif _mentions(log, "No space left on device") or _nearly_full(workdir):
                reason += (
                    " (no space left on the store's filesystem: free space (`modelspec gc` can, even now), or move "
                    "it with MODELSPEC_HOME)"
                )
            return _failure(job, log, reason, started, ended)
        problem = check_outputs(workdir / "out", stage.outputs)
        if problem:
            _append(log, f"modelspec: {problem}\n")
            return _failure(job, log, problem, started, ended)
        metrics_error, metrics = _read_metrics(workdir / "out", stage)
        if metrics_error:
            _append(log, f"modelspec: {metrics_error}\n")
            return _failure(job, log, metrics_error, started, ended)
        outputs = {
            name: store.put_path(workdir / "out" / path, move=True) for name, path in sorted(stage.outputs.items())
        }
        return ActionResult(
            key=key,
            node=job.node,
            outputs=outputs,
            log=store.put_file(log),
            exit_code=0,
            started=started,
            ended=ended,
            hermetic=ctx.sandbox.hermetic,
            metrics=metrics,
        )
    finally:
        if not shown:  # no hard link here: a copy, once it is whole
            with contextlib.suppress(OSError):
                write_atomic(job.log, log.read_bytes(), store.tmp, durable=False)
        log.unlink(missing_ok=True)
        ctx.remove(workdir)


def _show_log(log: Path, shown: Path) -> bool:
    """Create the run's (empty) log and put it at `shown` in place of the last run's log, as
    a hard link; False when the filesystem refuses the link."""
    log.touch()
    shown.parent.mkdir(parents=True, exist_ok=True)
    link = log.with_name(f"{log.name}.shown")
    try:
        os.link(log, link)
        os.replace(link, shown)
    except OSError:
        link.unlink(missing_ok=True)
        return False
    return True


def check_outputs(out_dir: Path, declared: Mapping[str, str]) -> str:
    """'' if the output directory holds exactly the declared outputs, else what is wrong."""
    wanted = {os.path.normpath(p) for p in declared.values()}
    for name, path in sorted(declared.items()):
        full = out_dir / path
        if not os.path.abspath(full).startswith(os.path.abspath(out_dir) + os.sep):
            return f"declared output {name!r} ({path}) leaves the output directory"
        if not full.exists() and not full.is_symlink():
            return f"declared output {name!r} ({path}) was not created"
        if full.is_symlink():
            return f"output {name!r} ({path}) is a symlink; outputs must be files or directories"
    for root, dirs, files in os.walk(out_dir):
        for item in sorted(files + [d for d in dirs if Path(root, d).is_symlink()]):
            relative = os.path.relpath(os.path.join(root, item), out_dir)
            if not any(relative == w or relative.startswith(w + os.sep) for w in wanted):
                return f"undeclared file left in the output directory: {relative}"
        dirs[:] = [d for d in dirs if not Path(root, d).is_symlink()]
    return ""


_LIMIT_WORDS = {
    "timeout": "the stage ran out of time and was stopped",
    "memory": "the stage ran out of memory",
    "processes": "the stage tried to start more processes than allowed",
    "tmp": "the stage filled its /tmp",
}


def _limit_in_log(job: StageJob, log: Path, sandboxed: bool, workdir: Path) -> str | None:
    """The limit a failed command most likely hit, from what it printed (only the timeout and a
    pids cgroup are known for certain)."""
    limits = job.limits
    if limits.memory and _mentions(log, "MemoryError", "Cannot allocate memory", "bad_alloc"):
        return "memory"
    if limits.processes and _mentions(log, "Resource temporarily unavailable", "can't fork", "Cannot fork"):
        return "processes"
    if sandboxed and limits.tmp and _mentions(log, "No space left on device") and not _nearly_full(workdir):
        return "tmp"  # the sandbox's /tmp is a sized tmpfs, and the store's disk has room
    return None


def _read_metrics(out_dir: Path, stage: StageLock) -> tuple[str, dict[str, float]]:
    name = stage.metrics
    if not name:
        return "", {}
    path = out_dir / stage.outputs[name]
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"metrics output {name!r} is not a JSON file: {exc}", {}
    if not isinstance(document, dict):
        return f"metrics output {name!r} must hold a JSON object", {}
    flat = flatten_metrics(document)
    bad = sorted(key for key, value in flat.items() if not math.isfinite(value))
    if bad:
        listed = ", ".join(f"{key}={flat[key]}" for key in bad)
        return f"metrics output {name!r}: metrics must be finite numbers, got {listed}", {}
    return "", flat


def _failure(job: StageJob, log: Path, reason: str, started: float, ended: float) -> StageFailure:
    """The failure, naming `job.log` (where the run's `log` is shown)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    return StageFailure(job.node, reason, job.log, "\n".join(lines[-LOG_TAIL_LINES:]), started, ended)


def _nearly_full(folder: Path) -> bool:
    """A stage that fills the disk may not even manage to log why: look at the disk itself."""
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < (1 << 20)


def _mentions(log: Path, *texts: str) -> bool:
    """Does the stage's log say any of `texts`? (What a failure looks like, in its own words.)"""
    try:
        content = log.read_text(errors="replace")
    except FileNotFoundError:
        return False
    return any(text in content for text in texts)


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
