"""The build's one seam with a remote: a rebuilder around the local one.

After a local miss (inside the local rebuilder's per-key lock, so two builds of a workspace
ask once), the remote action cache is asked before the stage runs: a hit whose objects are
all on the remote is a cache hit (the stage does not run, its environment is not even
created), and its files stay on the remote (store/held.py) until something here reads them:
a stage that runs fetches its inputs (`present`), and the build fetches its versions'
artifacts at its end (unless `--no-download`). A build whose stages all hit the remote
downloads only the artifacts; every object is verified on the way in. A result run here is uploaded as
the build goes: its objects first (created only if absent), the action-cache entry last,
under a remote lease so that a concurrent remote gc keeps what the entry is about to name.

A remote that cannot be reached never fails a build: it is a warning, and a miss.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import StoreError
from ..events import Event, Reporter
from ..store.held import HeldOnRemote, held_on_remote
from ..store.leases import Lease
from ..store.objects import Entry, LocalStore
from ..store.traces import ActionResult
from ..store.workspace import Workspace
from .rebuilder import NodeOutcome, NodeState, Rebuilder, Run
from .runner import StageFailure
from .snapshots import complete

if TYPE_CHECKING:
    from ..store.remote_cache import Remote

FROM_REMOTE = "from the remote cache"


@dataclass(frozen=True)
class BuildRemote:
    """The workspace's remote as one build uses it."""

    remote: Remote
    held: HeldOnRemote  # objects left on the remote by this workspace's earlier hits
    fetch: bool  # ask its action cache after a local miss
    push: bool  # upload what ran here
    jobs: int = 8


def build_remote(workspace: Workspace, *, fetch: bool, push: bool) -> BuildRemote | None:
    """The workspace's remote, if it has one and the build uses it."""
    if not (fetch or push) or workspace.settings.get("remote") is None:
        return None
    from ..store.remote_cache import open_remote  # the remote's modules: only a build that has one

    remote = open_remote(workspace.settings, workspace.home)
    if remote is None:
        return None
    held = held_on_remote(workspace.settings, workspace.home)
    assert held is not None  # the same `remote:` setting
    return BuildRemote(remote, held, fetch, push)


def with_remote(
    rebuilder: Rebuilder, remote: BuildRemote | None, local: LocalStore, lease: Lease, reporter: Reporter
) -> Rebuilder:
    """The rebuilder, asking the remote (if the build uses one) after a local miss."""
    return rebuilder if remote is None else RemoteRebuilder(rebuilder, remote, local, lease, reporter)


class RemoteRebuilder:
    def __init__(
        self, inner: Rebuilder, remote: BuildRemote, local: LocalStore, lease: Lease, reporter: Reporter
    ) -> None:
        self.inner = inner
        self.remote = remote.remote
        self.held = remote.held
        self.local = local
        self.lease = lease
        self.reporter = reporter
        self.fetch = remote.fetch
        self.push = remote.push
        self.jobs = remote.jobs
        self._warned = threading.Event()

    def lookup(self, key: str) -> ActionResult | None:
        # The local cache only (objects held on the remote count: the inner one is told of
        # them): the remote's cache is asked in `build`.
        return self.inner.lookup(key)

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
        """The remote's result for the key, leased, its files left on the remote (recorded as
        held there) until a stage or the end of the build needs them; only its trees'
        documents are fetched, so that what they hold can be listed. None on a miss, an entry
        whose objects are gone, or a remote that fails."""
        try:
            entry = self.remote.cache.lookup(key, self.jobs)  # every object it names is there
            if entry is None:
                return None
            self._fetch_trees([e.digest for e in entry.result.outputs.values() if e.type == "tree"])
        except StoreError as exc:
            self._warn(f"the remote cache was not used for {key[:19]}: {exc.message}")
            return None
        self.held.add(entry.objects)  # before the local cache names them (see store/held.py)
        result = entry.result
        with self.lease.holding():
            if not all(complete(self.local, e, self.held) for e in result.outputs.values()):
                return None  # a tree swept by a local gc since: run the stage
            self.lease.add([*result.outputs.values(), Entry("file", result.log, 0)])
        return result

    def _fetch_trees(self, trees: list[str]) -> None:
        """The tree documents (small), level by level, so that what a tree holds can be listed."""
        while trees:
            self.remote.store.download(self.local, trees, jobs=self.jobs)
            trees = [str(c["digest"]) for t in trees for c in self.local.read_tree(t).values() if c["type"] == "tree"]

    def present(self, entries: Iterable[Entry]) -> None:
        """Fetch what the entries need and the local store lacks, each object verified."""
        entries = list(entries)
        missing = [e.digest for e in entries if not self.local.has(e.digest)]
        try:
            self.remote.store.download(self.local, missing, jobs=self.jobs)
            held = [d for e in entries if e.type == "tree" for d in self.local.tree_objects(e)]
            self.remote.store.download(self.local, held, jobs=self.jobs)
        except StoreError as exc:
            raise StoreError(
                f"an object left on the remote {self.remote.url} cannot be fetched: {exc.message}",
                hint="build again with --no-remote: the stages that made it run here",
            ) from None
        self.inner.present(entries)

    def upload(self, result: ActionResult) -> None:
        """Objects first, the entry last: a push killed between them leaves no entry."""
        objects = [d for entry in result.outputs.values() for d in self.local.tree_objects(entry)]
        objects.append(result.log)
        from ..store.remote_cache import RemoteLease

        try:
            with RemoteLease(self.remote.blobs) as remote_lease:
                remote_lease.add(objects)
                self.remote.store.upload(self.local, objects, jobs=self.jobs, hold=remote_lease.add)
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
