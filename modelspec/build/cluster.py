"""The client's side of a cluster build: stages that must run go to a Dask cluster.

The scheduler's walk, `-j`, fail-fast, `--keep-going` and the cache are unchanged: a
cache hit is still settled in the build's own thread and never reaches the cluster (a
no-op build does not even connect). A stage that must run is sent as a `StageTask` (digests,
never bytes) with `key = action key @ remote` and `pure=False`, so two builds that submit
the same action to the same remote while it runs share one run. Its inputs go to the remote first (only those it
lacks); the worker answers with its outputs already on the remote, and they are fetched
into the local store, verified, so the rest of the build (registration, checkout) finds
them there as after a local run.

`dask` is imported only here and only when a stage is about to go to a cluster: a build
without `executor:` never loads it.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..digest import digest_json, hex_of
from ..errors import UsageError
from ..events import Event, Reporter
from ..store.blobs import RemoteConfig
from ..store.files import write_atomic
from ..store.objects import LocalStore
from ..store.traces import ActionResult
from ..store.workspace import Workspace
from .executor import CONNECT_TIMEOUT, ExecutorURL, version_mismatches
from .rebuilder import NodeOutcome
from .runner import StageFailure
from .stagetask import TOPIC, StageTask, TaskReply

if TYPE_CHECKING:  # the remote's modules load only for a build that uses a cluster
    from ..store.remote_cache import Remote, RemoteLease

HINT = "give `--executor local` to build on this machine"


def open_cluster(
    url: ExecutorURL,
    workspace: Workspace,
    reporter: Reporter,
    cancel: threading.Event,
    *,
    record: bool = True,
) -> Cluster:
    """The cluster `url` names, not connected yet. Workers read and write through the
    workspace's remote, so a cluster without one is refused now."""
    if workspace.settings.get("remote") is None:
        raise UsageError(
            f"executor {url.text} needs a remote that the workers reach: they get inputs and leave outputs there",
            hint="add one to modelspec.yaml (`remote: s3://bucket/prefix`, or `remote: file:///shared/dir` on a "
            "shared filesystem), or " + HINT,
        )
    config = RemoteConfig.from_setting(workspace.settings["remote"])
    assert config is not None
    from ..store.remote_cache import require_remote

    remote = require_remote(workspace.settings, workspace.home, workspace.root)
    return Cluster(url, config, remote, workspace.store, reporter, cancel, record=record)


class Cluster:
    """One build's use of a Dask cluster: connected on the first stage that must run."""

    def __init__(
        self,
        url: ExecutorURL,
        config: RemoteConfig,
        remote: Remote,
        local: LocalStore,
        reporter: Reporter,
        cancel: threading.Event,
        *,
        record: bool = True,
    ) -> None:
        self.url = url
        self.config = config  # what workers open: the same remote
        self.record = record  # write remote action-cache entries (a reproduction does not)
        self.remote = remote
        self.remote_tag = hex_of(digest_json(asdict(config)))[:16]
        self.local = local
        self.reporter = reporter
        self.cancel = cancel
        self.cancel_name = f"modelspec-cancel-{uuid.uuid4().hex}"  # + key: each stage's cancel event
        self.workers: dict[str, str] = {}  # node → the worker that ran it (last)
        self.retried: dict[str, str] = {}  # node → the worker that was lost while running it
        self._starts: dict[str, list[str]] = {}  # key → the workers that started it, in order
        self._nodes: dict[str, str] = {}  # key → node, for the keys this build submitted
        self._on_remote: set[str] = set()
        self._lock = threading.Lock()  # held only for moments: the client's event thread takes it
        self._connect_lock = threading.Lock()
        self._client: Any = None
        self._workers_asked: tuple[float, Mapping[str, Any]] = (-1e9, {})
        self._workers_lock = threading.Lock()
        self._signalled: list[str] = []  # the cancel events this build set
        self._refused: UsageError | None = None  # why connecting failed: every stage is told the same
        self._lease: RemoteLease | None = None

    # -- connecting ----------------------------------------------------------------------

    def client(self) -> Any:
        with self._connect_lock:  # not `_lock`: connecting waits for the client's event thread
            if self._refused is not None:
                raise self._refused
            if self._client is None:
                try:
                    self._client = self._connect()
                except UsageError as exc:
                    self._refused = exc
                    raise
                from ..store.remote_cache import RemoteLease

                self._lease = RemoteLease(self.remote.blobs)
            return self._client

    def _connect(self) -> Any:
        try:
            from distributed import Client
        except ImportError:
            raise UsageError(
                f"executor {self.url.text} needs Dask, which is not installed",
                hint="pip install 'modelspec[dask]', or " + HINT,
            ) from None
        try:
            # Refused at once when nothing listens (Dask's own connect retries until its timeout).
            host, port = self.url.address.removeprefix("tcp://").rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=10).close()
            client = Client(self.url.address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise UsageError(
                f"cannot reach the Dask scheduler at {self.url.text}: {exc}",
                hint="start it (`dask scheduler`, then `dask worker HOST:PORT` on each machine), or " + HINT,
            ) from None
        try:
            versions: Any = client.get_versions(packages=["modelspec"])  # a dict: the client is synchronous
            problems = version_mismatches(versions)
            if problems:
                raise UsageError(
                    f"the Dask cluster at {self.url.text} does not match this machine: " + "; ".join(problems),
                    hint="install the same Python, modelspec and Dask on the workers (pip install 'modelspec[dask]'),"
                    " or " + HINT,
                )
            client.subscribe_topic(TOPIC, self._on_start)
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        with self._connect_lock:
            client, self._client = self._client, None
        if client is None:
            return
        try:
            from distributed import Event as DaskEvent

            for name in self._signalled:  # the scheduler forgets them
                DaskEvent(name, client=client).clear()
            client.close()
        finally:
            if self._lease is not None:
                self._lease.release()

    # -- running one stage ---------------------------------------------------------------

    def run(self, task: StageTask, log: Path) -> ActionResult | StageFailure:
        """Run the task on the cluster; its outputs end up in the local store, its log at `log`."""
        client = self.client()
        self._send_inputs(task.objects)
        from .worker import run_stage_task

        with self._lock:
            self._nodes[task.key] = task.node
        future = client.submit(
            run_stage_task,
            task.to_dict(),
            key=self.dask_key(task.key),
            pure=False,
            resources=dict(task.resources) or None,
        )
        try:
            reply = self._wait(future, task)
        finally:
            future.release()
        return self._outcome(task, reply, log)

    def dask_key(self, key: str) -> str:
        """The task's Dask key: the action key, and the remote its result is on. Two builds
        that share a remote share a run; a build with another remote must not be handed a
        result whose objects are elsewhere."""
        return f"{key}@{self.remote_tag}"

    def _send_inputs(self, objects: tuple[str, ...]) -> None:
        wanted = [d for d in objects if d not in self._on_remote]
        if not wanted:
            return
        assert self._lease is not None
        self._lease.add(wanted)  # kept by a remote gc while the build runs
        self.remote.store.upload(self.local, wanted, hold=self._lease.add)
        with self._lock:
            self._on_remote.update(wanted)

    def _wait(self, future: Any, task: StageTask) -> TaskReply:
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        deadline = time.monotonic() + self.url.wait
        warned = False
        while not done.wait(0.1):
            started = task.key in self._starts
            if self.cancel.is_set():
                return self._interrupt(future, task, started)
            if not started:
                lacking = self._unplaceable(task.resources)
                if lacking and not warned:
                    self.reporter(Event("warning", task.node, {"message": f"{task.node} waits: {lacking}"}))
                    warned = True
                if lacking and time.monotonic() > deadline:
                    future.cancel()
                    return TaskReply("", reason=f"cannot be placed on {self.url.text}: {lacking}")
        return self._reply(future, task)

    def _interrupt(self, future: Any, task: StageTask, started: bool) -> TaskReply:
        """Stop the stage on its worker (its cancel event, which the worker waits on), unless
        another build wants it too: then only this build stops waiting (a Dask future's
        `cancel` keeps a task that other clients want)."""
        shared = started and self._wanted_elsewhere(self.dask_key(task.key))
        if started and not shared:
            from distributed import Event as DaskEvent

            DaskEvent(task.cancel, client=self.client()).set()
            with self._lock:
                self._signalled.append(task.cancel)
        future.cancel()
        why = "interrupted" + (" (it goes on for another build that wants it)" if shared else "")
        return TaskReply(self.workers.get(task.node, ""), reason=why)

    def _wanted_elsewhere(self, key: str) -> bool:
        """Does another client (another build) want this key too?"""

        def wanters(dask_scheduler: Any) -> int:  # runs on the scheduler, which needs no modelspec
            state = dask_scheduler.tasks.get(key)
            return len(state.who_wants or ()) if state is not None else 0

        try:
            return int(self.client().run_on_scheduler(wanters)) > 1
        except Exception:  # an old or locked-down scheduler: stop it, as for a build of its own
            return False

    def _reply(self, future: Any, task: StageTask) -> TaskReply:
        from distributed.scheduler import KilledWorker

        worker = self.workers.get(task.node, "")
        try:
            return TaskReply.from_dict(future.result())
        except KilledWorker:
            lost = len(self._starts.get(task.key, []))
            return TaskReply(worker, reason=f"its worker died every time it ran ({lost} workers lost running it)")
        except Exception as exc:  # the task itself raised: a bug, or a worker without modelspec
            return TaskReply(worker, reason=f"on worker {worker or '?'}: {type(exc).__name__}: {exc}")

    def _workers(self) -> Mapping[str, Any]:
        """The cluster's workers and what they offer, asked at most once a second (every
        waiting stage looks)."""
        client = self.client()
        # Not under `_lock`: the client's event thread takes that one (`_on_start`), and this
        # call waits for that thread.
        with self._workers_lock:
            if time.monotonic() - self._workers_asked[0] > 1.0:
                self._workers_asked = (time.monotonic(), client.scheduler_info(n_workers=-1)["workers"])
            return self._workers_asked[1]

    def _unplaceable(self, resources: Mapping[str, float]) -> str:
        """'' when some worker offers the resources, else what none offers."""
        workers = self._workers()
        if not workers:
            return "no worker is connected to the scheduler; start some (`dask worker HOST:PORT`)"
        for info in workers.values():
            offered = info.get("resources") or {}
            if all(offered.get(name, 0) >= amount for name, amount in resources.items()):
                return ""
        asked = ", ".join(f"{name}={amount:g}" for name, amount in sorted(resources.items()))
        offered_text = "; ".join(
            f"{w}: {', '.join(f'{k}={v:g}' for k, v in sorted((i.get('resources') or {}).items())) or 'none'}"
            for w, i in sorted(workers.items())
        )
        return (
            f"no worker offers {asked} (the {len(workers)} workers offer: {offered_text or 'nothing'}); "
            f'start one with `dask worker ... --resources "{asked.replace(", ", " ")}"`'
        )

    def _on_start(self, event: tuple[float, Mapping[str, Any]]) -> None:
        """A worker says it starts a stage (in the client's event thread)."""
        message = event[1]
        key, worker = str(message["key"]), str(message["worker"])
        with self._lock:
            node = self._nodes.get(key)
            if node is None:
                return  # another build's stage
            starts = self._starts.setdefault(key, [])
            starts.append(worker)
            self.workers[node] = worker
        if len(starts) > 1:
            self.retried[node] = starts[-2]
            self.reporter(
                Event(
                    "warning",
                    node,
                    {"message": f"{node}: worker {starts[-2]} was lost while running it; running it again on {worker}"},
                )
            )
        self.reporter(Event("stage-start", node, {"key": key, "worker": worker}))

    def placed(self, outcome: NodeOutcome) -> NodeOutcome:
        """The outcome with the worker that ran it, and the one lost before it, if any."""
        worker = self.workers.get(outcome.node, "")
        lost = self.retried.get(outcome.node)
        reason = outcome.reason
        if lost:
            reason = f"{reason}; " if reason else ""
            reason += f"retried on {worker or 'another worker'} after worker {lost} was lost"
        return dataclasses.replace(outcome, worker=worker, reason=reason)

    def _outcome(self, task: StageTask, reply: TaskReply, log: Path) -> ActionResult | StageFailure:
        if reply.worker:
            self.workers[task.node] = reply.worker
        log.parent.mkdir(parents=True, exist_ok=True)
        if reply.result is None:
            kept = None
            if reply.log is not None:
                self.remote.store.download(self.local, [reply.log])
                write_atomic(log, self.local.read_bytes(reply.log))
                kept = log
            return StageFailure(task.node, reply.reason, kept, reply.log_tail, reply.started, reply.ended)
        result = ActionResult.from_dict(reply.result)
        self.remote.store.download(self.local, reply.objects)
        write_atomic(log, self.local.read_bytes(result.log))
        return result
