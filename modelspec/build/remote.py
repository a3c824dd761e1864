"""The build's one seam with a remote: a rebuilder around the local one.

After a local miss (inside the local rebuilder's per-key lock, so two builds of a workspace
ask once), the remote action cache is asked before the stage runs: a hit whose objects are
all on the remote is downloaded, every object verified on the way, and is a cache hit (the
stage does not run, its environment is not even created). A result run here is uploaded as
the build goes: its objects first (created only if absent), the action-cache entry last,
under a remote lease so that a concurrent remote gc keeps what the entry is about to name.

A remote that cannot be reached never fails a build: it is a warning, and a miss.
"""

from __future__ import annotations

import dataclasses
import threading

from ..errors import StoreError
from ..events import Event, Reporter
from ..store.leases import Lease
from ..store.objects import Entry, LocalStore
from ..store.remote_cache import Remote, RemoteLease, open_remote
from ..store.traces import ActionResult
from ..store.workspace import Workspace
from .rebuilder import NodeOutcome, NodeState, Rebuilder, Run
from .runner import StageFailure
from .snapshots import complete

FROM_REMOTE = "from the remote cache"


def with_remote(
    rebuilder: Rebuilder,
    workspace: Workspace,
    lease: Lease,
    reporter: Reporter,
    *,
    fetch: bool,
    push: bool,
    jobs: int = 8,
) -> Rebuilder:
    """The rebuilder, asking the workspace's remote (if it has one) after a local miss."""
    if not (fetch or push):
        return rebuilder
    remote = open_remote(workspace.settings, workspace.home)
    if remote is None:
        return rebuilder
    return RemoteRebuilder(rebuilder, remote, workspace.store, lease, reporter, fetch=fetch, push=push, jobs=jobs)


class RemoteRebuilder:
    def __init__(
        self,
        inner: Rebuilder,
        remote: Remote,
        local: LocalStore,
        lease: Lease,
        reporter: Reporter,
        *,
        fetch: bool,
        push: bool,
        jobs: int,
    ) -> None:
        self.inner = inner
        self.remote = remote
        self.local = local
        self.lease = lease
        self.reporter = reporter
        self.fetch = fetch
        self.push = push
        self.jobs = jobs
        self._warned = threading.Event()

    def lookup(self, key: str) -> ActionResult | None:
        return self.inner.lookup(key)  # the local cache only: the remote is asked in `build`

    def build(self, node: str, key: str, run: Run) -> NodeOutcome:
        fetched: list[ActionResult] = []

        def fetch_or_run() -> ActionResult | StageFailure:
            hit = self.fetched(key) if self.fetch else None
            if hit is not None:
                fetched.append(hit)
                return hit
            result = run()
            if isinstance(result, ActionResult) and self.push:
                self.upload(result)
            return result

        outcome = self.inner.build(node, key, fetch_or_run)
        if fetched and outcome.result is fetched[0]:
            return dataclasses.replace(outcome, state=NodeState.CACHED, reason=FROM_REMOTE)
        return outcome

    def fetched(self, key: str) -> ActionResult | None:
        """The remote's result for the key, its objects now in the local store and leased;
        None on a miss, an entry whose objects are gone, or a remote that fails."""
        try:
            entry = self.remote.cache.lookup(key, self.jobs)
            if entry is None:
                return None
            self.remote.store.download(self.local, entry.objects, jobs=self.jobs)
        except StoreError as exc:
            self._warn(f"the remote cache was not used for {key[:19]}: {exc.message}")
            return None
        result = entry.result
        with self.lease.holding():
            if not all(complete(self.local, e) for e in result.outputs.values()):
                return None  # swept by a local gc since: run the stage
            self.lease.add([*result.outputs.values(), Entry("file", result.log, 0)])
        return result

    def upload(self, result: ActionResult) -> None:
        """Objects first, the entry last: a push killed between them leaves no entry."""
        objects = [d for entry in result.outputs.values() for d in self.local.tree_objects(entry)]
        objects.append(result.log)
        try:
            with RemoteLease(self.remote.blobs) as remote_lease:
                remote_lease.add(objects)
                self.remote.store.upload(self.local, objects, jobs=self.jobs)
                created = self.remote.cache.put(result, objects)
            if created and self.remote.cache.others(result):
                self.reporter(
                    Event(
                        "warning",
                        result.node,
                        {
                            "message": f"{result.node} gave a different result from the one the remote holds for "
                            "the same inputs: it is not deterministic (both are kept; `modelspec verify --remote`)"
                        },
                    )
                )
        except StoreError as exc:
            self._warn(f"{result.node} was not uploaded to the remote: {exc.message}")

    def _warn(self, message: str) -> None:
        if not self._warned.is_set():  # once per build: a remote that is down fails every call
            self._warned.set()
            self.reporter(Event("warning", data={"message": message}))
