"""The worker's side of a cluster build: one `StageTask` run on a machine of its own.

A Dask worker calls `run_stage_task` with a task's plain dict. The worker has its own
"machine": a home (`MODELSPEC_WORKER_HOME`, else a folder in the Dask worker's local
directory) with its own object store and environment cache; it never sees the client's
workspace. It fetches the task's objects by digest from the remote, creates the
environment from the lock, runs the stage in the sandbox the key was computed for, uploads
the outputs and the log (created only if absent) and writes the remote action-cache entry
last. A failure is an answer (`TaskReply` with a reason and the log's tail), never raised.

The stage's cancel event is a Dask `Event` (one per build and stage): a thread waits on it
and sets the `threading.Event` the sandbox polls, so Ctrl-C on the client stops the stage
here (a Dask future's own `cancel()` cannot stop a running subprocess). The same thread
stops a stage that no client wants any more (its build was killed).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from ..digest import hex_of
from ..env.environment import Environment, ensure_environment
from ..errors import ModelspecError
from ..sandbox.process import ProcessSandbox, Sandbox
from ..store.blobs import open_blobs
from ..store.files import Remover
from ..store.objects import LocalStore
from ..store.remote import RemoteStore
from ..store.remote_cache import RemoteActionCache, RemoteLease
from ..store.remote_packs import cache_dir as pack_cache
from ..store.traces import ActionResult
from .runner import LOG_TAIL_LINES, RunContext, StageFailure, StageJob, run_node
from .stagetask import TOPIC, StageTask, TaskReply

_stores: dict[Path, LocalStore] = {}
_stores_lock = threading.Lock()
_remover = Remover()  # work directories, removed behind the stages (the next need not wait)


def run_stage_task(document: dict[str, Any]) -> dict[str, Any]:
    """Run one stage on this worker; the `TaskReply` as a dict."""
    task = StageTask.from_dict(document)
    worker = _announce(task)
    started = time.time()
    home = worker_home()
    store = _store(home)
    remote = RemoteStore(open_blobs(task.remote), pack_cache(home, task.remote))
    cancel = threading.Event()
    stop_watching = _watch_cancel(task, cancel)
    log = home / "logs" / f"{hex_of(task.key)}.log"
    try:
        remote.download(store, task.objects)
        sandbox = _sandbox(task.isolation, worker)
        environment = _environment(task, store, home)
        job = StageJob(
            node=task.node,
            stage=task.stage,
            code=task.code,
            inputs=task.inputs,
            environment=environment,
            source_date_epoch=task.source_date_epoch,
            log=log,
            limits=task.limits,
        )
        outcome = run_node(job, task.key, RunContext(store, sandbox, cancel, _remover.remove))
        if isinstance(outcome, StageFailure):
            return _failed(worker, remote, store, outcome).to_dict()
        objects = _publish(task, remote, store, outcome)
        return TaskReply(
            worker, result=outcome.to_dict(), started=outcome.started, ended=outcome.ended, objects=objects
        ).to_dict()
    except ModelspecError as exc:
        reason = f"on worker {worker}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        return TaskReply(worker, reason=reason, started=started, ended=time.time()).to_dict()
    finally:
        stop_watching()


def worker_home() -> Path:
    """This worker's own store and environments: `MODELSPEC_WORKER_HOME`, else beside Dask's
    own scratch for the worker."""
    configured = os.environ.get("MODELSPEC_WORKER_HOME")
    if configured:
        return Path(configured)
    from distributed import get_worker

    return Path(get_worker().local_directory) / "modelspec"


def _store(home: Path) -> LocalStore:
    """One store per home in this process, so what it verified once is not hashed again."""
    with _stores_lock:
        if home not in _stores:
            _stores[home] = LocalStore(home)
            _stores[home].clean_temp()
        return _stores[home]


def _announce(task: StageTask) -> str:
    """This worker's address, told to the client (its progress shows who runs what, and a
    second start of the same key says the first worker was lost)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return "local"  # called outside a Dask worker (a test's direct call)
    worker.log_event(TOPIC, {"key": task.key, "node": task.node, "worker": worker.address})
    return str(worker.address)


def _watch_cancel(task: StageTask, cancel: threading.Event) -> Any:
    """Set `cancel` when the build's Dask event is set, or when no client wants the task any
    more (its build was killed, or cancelled it); returns what stops the watching."""
    try:
        from distributed import Event, get_client, get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return lambda: None
    done = threading.Event()
    event = Event(task.cancel, client=get_client())  # made here: the watching thread is not the task's
    key = worker.get_current_task()  # its Dask key (the action key and the remote)

    def wanted() -> bool:
        state = worker.state.tasks.get(key)
        return state is not None and state.state not in ("cancelled", "released", "forgotten")

    def watch() -> None:
        while not done.is_set():
            try:
                if event.wait(timeout=0.5) or not wanted():
                    cancel.set()
                    return
            except Exception:  # the scheduler went away: the stage finishes on its own
                return

    thread = threading.Thread(target=watch, name="modelspec-cancel", daemon=True)
    thread.start()
    return done.set


def _sandbox(isolation: str, worker: str) -> Sandbox:
    """The sandbox the action key was computed for; a worker without it cannot run the stage."""
    if isolation != "bwrap":
        return ProcessSandbox()
    from ..errors import SandboxUnavailableError
    from ..sandbox.bwrap import BubblewrapSandbox, bwrap_path, bwrap_unavailable

    if bwrap_path() is None:
        why, fix = bwrap_unavailable()
        raise SandboxUnavailableError(f"the stage runs in bubblewrap but {why}", hint=f"{fix} on that worker")
    return BubblewrapSandbox()


def _environment(task: StageTask, store: LocalStore, home: Path) -> Environment | None:
    pinned = task.environment
    if pinned is None:
        return None
    env_file = store.path_of(str(pinned["file_digest"]))  # fetched with the task's objects
    return ensure_environment(pinned, env_file, home / "envs", store)


def _publish(task: StageTask, remote: RemoteStore, store: LocalStore, result: ActionResult) -> tuple[str, ...]:
    """Outputs and log onto the remote (only those it lacks), then the entry, last; their objects."""
    objects = [d for entry in result.outputs.values() for d in store.tree_objects(entry)]
    objects.append(result.log)
    with RemoteLease(remote.blobs) as lease:
        lease.add(objects)
        remote.upload(store, objects, hold=lease.add)
        if task.record:
            RemoteActionCache(remote).put(result, objects)
    return tuple(objects)


def _failed(worker: str, remote: RemoteStore, store: LocalStore, failure: StageFailure) -> TaskReply:
    """The failure, its log on the remote so that the client can keep it beside its own."""
    log = None
    if failure.log_path is not None and failure.log_path.exists():
        log = store.put_file(failure.log_path)
        remote.upload(store, [log])
    tail = "\n".join(failure.log_tail.splitlines()[-LOG_TAIL_LINES:])
    return TaskReply(
        worker, reason=failure.reason, log_tail=tail, log=log, started=failure.started, ended=failure.ended
    )
