"""Running one node: prepare a scratch directory, run the command in a sandbox, check and
ingest its outputs, and return the `ActionResult` (or a `StageFailure`, which is a value).

    <home>/tmp/<pid>-run-…/
        code/        code snapshot (from the store)    in/<id>/<basename>   inputs
        out/         the only place the stage writes   config.json          its params
        home/ tmp/   scratch                           log                  stdout + stderr
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .bwrap import mentions_network
from .digest import canonical_json
from .environments import Environment
from .graph import DataInput, Node, ResolvedSpec, UpstreamInput
from .sandbox import RunRequest, Sandbox
from .snapshots import code_snapshot, data_snapshot
from .statcache import StatCache
from .store import Entry, LocalStore, remove_path
from .traces import ActionResult
from .workspace import Workspace

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
    workspace: Workspace
    store: LocalStore
    statcache: StatCache
    sandbox: Sandbox
    cancel: threading.Event


def run_node(
    node: Node,
    key: str,
    resolved: ResolvedSpec,
    upstream: Mapping[str, ActionResult],
    environment: Environment | None,
    ctx: RunContext,
) -> ActionResult | StageFailure:
    store = ctx.store
    store.tmp.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=store.tmp, prefix=f"{os.getpid()}-run-"))
    log_path = ctx.workspace.logs_dir / node.spec.name / f"{node.stage}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    started = time.time()
    stage = node.stage_lock
    try:
        link = ctx.sandbox.protects_inputs
        store.restore(code_snapshot(resolved, stage["code"], ctx.workspace, store), workdir / "code", link=link)
        for input_id, source in node.inputs.items():
            entry = _input_entry(source, upstream, node.spec.repo_root, ctx)
            store.restore(entry, workdir / "in" / input_id / source.basename, link=link)
        for name in ("out", "home", "tmp"):
            (workdir / name).mkdir()
        (workdir / "config.json").write_bytes(canonical_json(stage["params"]) + b"\n")
        request = RunRequest(
            argv=stage["argv"],
            shell=stage["shell"],
            inputs={i: s.basename for i, s in node.inputs.items()},
            outputs=stage["outputs"],
            params=stage["params"],
            workdir=workdir,
            log=log_path,
            environment=environment,
            source_date_epoch=int(node.lock.code.get("time", 0)),
        )
        exit_code = ctx.sandbox.run(request, ctx.cancel)
        ended = time.time()
        if ctx.cancel.is_set():
            return _failure(node, "interrupted", log_path, started, ended)
        if exit_code != 0:
            reason = f"command exited with status {exit_code}"
            if ctx.sandbox.hermetic and mentions_network(log_path):
                reason += " (the sandbox has no network: a stage may only read its declared inputs)"
            return _failure(node, reason, log_path, started, ended)
        problem = check_outputs(workdir / "out", stage["outputs"])
        if problem:
            _append(log_path, f"modelspec: {problem}\n")
            return _failure(node, problem, log_path, started, ended)
        metrics_error, metrics = _read_metrics(workdir / "out", stage)
        if metrics_error:
            _append(log_path, f"modelspec: {metrics_error}\n")
            return _failure(node, metrics_error, log_path, started, ended)
        outputs = {
            name: store.put_path(workdir / "out" / path, move=True) for name, path in sorted(stage["outputs"].items())
        }
        log_digest = store.put_file(log_path)
        return ActionResult(
            key=key,
            node=node.id,
            outputs=outputs,
            log=log_digest,
            exit_code=0,
            started=started,
            ended=ended,
            hermetic=ctx.sandbox.hermetic,
            metrics=metrics,
        )
    finally:
        remove_path(workdir)


def _input_entry(
    source: DataInput | UpstreamInput, upstream: Mapping[str, ActionResult], repo_root: Path, ctx: RunContext
) -> Entry:
    if isinstance(source, UpstreamInput):
        return upstream[source.node].outputs[source.output]
    return data_snapshot(source, repo_root, ctx.store, ctx.statcache)


def check_outputs(out_dir: Path, declared: Mapping[str, str]) -> str:
    """'' if the output directory holds exactly the declared outputs, else what is wrong."""
    wanted = {os.path.normpath(p) for p in declared.values()}
    for name, path in sorted(declared.items()):
        full = out_dir / path
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


def _read_metrics(out_dir: Path, stage: Mapping[str, object]) -> tuple[str, dict[str, float]]:
    name = stage.get("metrics")
    if not name:
        return "", {}
    path = out_dir / str(stage["outputs"][name])  # type: ignore[index]
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"metrics output {name!r} is not a JSON file: {exc}", {}
    if not isinstance(document, dict):
        return f"metrics output {name!r} must hold a JSON object", {}
    flat: dict[str, float] = {}
    _flatten(document, "", flat)
    return "", flat


def _flatten(value: object, prefix: str, into: dict[str, float]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), into)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        into[prefix] = float(value)


def _failure(node: Node, reason: str, log_path: Path, started: float, ended: float) -> StageFailure:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    return StageFailure(node.id, reason, log_path, "\n".join(lines[-LOG_TAIL_LINES:]), started, ended)


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
