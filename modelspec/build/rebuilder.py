"""The rebuilder: whether a node runs at all, given its action key (constructive traces).

`CachingRebuilder` looks the key up, and otherwise runs the node under a per-key lock so
that two builds of one workspace run it once: the second waits, then hits the cache.
`ForcingRebuilder` runs every node it is given: `--force` (refreshing the cache) and
`reproduce` (leaving it alone).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..digest import hex_of
from ..env.environment import file_lock
from ..store.leases import Lease
from ..store.objects import Entry
from ..store.protocol import ObjectStore
from ..store.traces import ActionCache, ActionResult
from .runner import StageFailure
from .snapshots import complete


class NodeState(enum.Enum):
    CACHED = "cached"
    RAN = "ran"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class NodeOutcome:
    node: str
    state: NodeState
    key: str = ""
    result: ActionResult | None = None
    failure: StageFailure | None = None
    reason: str = ""
    worker: str = ""  # the cluster worker that ran it ('' when it ran here or was not run)


Run = Callable[[], ActionResult | StageFailure]


class Rebuilder(Protocol):
    def lookup(self, key: str) -> ActionResult | None:
        """A result that can stand for running the node, if there is one (leased)."""
        ...

    def build(self, node: str, key: str, run: Run) -> NodeOutcome: ...

    def present(self, entries: Iterable[Entry]) -> None:
        """Every object of the entries in the local store: a result this rebuilder answered
        with may name objects held on a remote only, fetched here when a stage reads them."""
        ...


class CachingRebuilder:
    def __init__(
        self,
        cache: ActionCache,
        store: ObjectStore,
        locks_dir: Path,
        lease: Lease | None = None,
        elsewhere: Container[str] = (),
    ) -> None:
        self.cache = cache
        self.store = store
        self.locks_dir = locks_dir
        self.lease = lease
        self.elsewhere = elsewhere  # objects held on the remote, fetched by `present` (build/remote.py)

    def lookup(self, key: str) -> ActionResult | None:
        """A cached result whose outputs are all still in the store or `elsewhere` (and now leased)."""
        with self.lease.holding() if self.lease else contextlib.nullcontext():
            result = self.cache.get(key)
            if result is None or not all(complete(self.store, e, self.elsewhere) for e in result.outputs.values()):
                return None
            if self.lease:
                self.lease.add(result.outputs.values())
            return result

    def build(self, node: str, key: str, run: Run) -> NodeOutcome:
        # The scheduler asked `lookup` already (`settle`) and found nothing: look again only
        # under the key's lock, where another build may have made it while we waited.
        with file_lock(self.locks_dir / f"{hex_of(key)}.lock"):
            hit = self.lookup(key)
            if hit is not None:
                return NodeOutcome(node, NodeState.CACHED, key, hit)
            return run_once(node, key, run, self.cache)

    def present(self, entries: Iterable[Entry]) -> None:
        pass  # what it answers with is in the store (a remote's rebuilder wraps it otherwise)


class ForcingRebuilder:
    """Runs every node it is given, never a cache hit. With a cache (`build --force`) it
    refreshes it, one build at a time per key; without one (`reproduce`, which checks the
    recorded results and must never replace them) it leaves the cache alone."""

    def __init__(self, cache: ActionCache | None = None, locks_dir: Path | None = None) -> None:
        self.cache = cache
        self.locks_dir = locks_dir

    def lookup(self, key: str) -> ActionResult | None:
        return None

    def build(self, node: str, key: str, run: Run) -> NodeOutcome:
        if self.cache is None or self.locks_dir is None:
            return run_once(node, key, run, None)
        with file_lock(self.locks_dir / f"{hex_of(key)}.lock"):
            return run_once(node, key, run, self.cache)

    def present(self, entries: Iterable[Entry]) -> None:
        pass  # it answers with what ran here


def run_once(node: str, key: str, run: Run, cache: ActionCache | None) -> NodeOutcome:
    outcome = run()
    if isinstance(outcome, StageFailure):
        return NodeOutcome(node, NodeState.FAILED, key, failure=outcome, reason=outcome.reason)
    if cache is not None:
        cache.put(outcome)  # only now: every output is already in the store
    return NodeOutcome(node, NodeState.RAN, key, outcome)
