"""The rebuilder: whether a node runs at all, given its action key (constructive traces).

`CachingRebuilder` looks the key up, and otherwise runs the node under a per-key lock so
that two builds of one workspace run it once: the second waits, then hits the cache.
`ForcingRebuilder` (`--force`) runs every node it is given and refreshes the cache.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..digest import hex_of
from ..env.environment import file_lock
from ..store.leases import Lease
from ..store.objects import LocalStore
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


Run = Callable[[], ActionResult | StageFailure]


class CachingRebuilder:
    def __init__(self, cache: ActionCache, store: LocalStore, locks_dir: Path, lease: Lease | None = None) -> None:
        self.cache = cache
        self.store = store
        self.locks_dir = locks_dir
        self.lease = lease

    def lookup(self, key: str) -> ActionResult | None:
        """A cached result whose outputs are all still in the store (and now leased)."""
        with self.lease.holding() if self.lease else contextlib.nullcontext():
            result = self.cache.get(key)
            if result is None or not all(complete(self.store, e) for e in result.outputs.values()):
                return None
            if self.lease:
                self.lease.add(result.outputs.values())
            return result

    def build(self, node: str, key: str, run: Run) -> NodeOutcome:
        hit = self.lookup(key)
        if hit is not None:
            return NodeOutcome(node, NodeState.CACHED, key, hit)
        with file_lock(self.locks_dir / f"{hex_of(key)}.lock"):
            hit = self.lookup(key)  # another build may have made it while we waited
            if hit is not None:
                return NodeOutcome(node, NodeState.CACHED, key, hit)
            return self._run(node, key, run)

    def _run(self, node: str, key: str, run: Run) -> NodeOutcome:
        outcome = run()
        if isinstance(outcome, StageFailure):
            return NodeOutcome(node, NodeState.FAILED, key, failure=outcome, reason=outcome.reason)
        self.cache.put(outcome)  # only now: every output is already in the store
        return NodeOutcome(node, NodeState.RAN, key, outcome)


class ForcingRebuilder(CachingRebuilder):
    def build(self, node: str, key: str, run: Run) -> NodeOutcome:
        with file_lock(self.locks_dir / f"{hex_of(key)}.lock"):
            return self._run(node, key, run)
