"""The scheduler: a topological walk that hands every ready node to an executor.

Independent ready nodes run in parallel (up to `jobs` at once). When a node fails, its
descendants are skipped; other nodes stop being started unless `keep_going`. On
interruption the running nodes are cancelled through `cancel` and waited for, so no
half-written result remains.

The executor is injected: a `concurrent.futures.Executor` (a thread pool of `jobs` workers
unless one is given; a synchronous one in tests). A Dask cluster is not one of these: its
workers share nothing with this process, so `Tasks` sends them digests (`cluster.py`)
from the threads of this pool, which only wait. It is handed
`execute(node, parents)`, where `parents` holds the outcomes of the node's parents only,
so a remote worker needs nothing else from this process. A node that `settle` can answer
at once (a cache hit) is answered in the scheduler's own thread and never reaches the
executor: a build that changes little hands little to it, and settles its hits while its
few stages run.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from .rebuilder import NodeOutcome, NodeState

Execute = Callable[[str, Mapping[str, NodeOutcome]], NodeOutcome]
Settle = Callable[[str, Mapping[str, NodeOutcome]], NodeOutcome | None]


class Dag(Protocol):
    """All the scheduler reads of a graph (a `BuildGraph` is one)."""

    @property
    def successors(self) -> Mapping[str, list[str]]: ...

    @property
    def predecessors(self) -> Mapping[str, list[str]]: ...

    def descendants(self, node_id: str) -> set[str]: ...


def schedule(
    graph: Dag,
    order: list[str],
    execute: Execute,
    *,
    jobs: int,
    keep_going: bool,
    cancel: threading.Event,
    executor: Executor | None = None,
    settle: Settle | None = None,
    settling: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> dict[str, NodeOutcome]:
    """Run every node of `graph` once its parents succeeded; returns every node's outcome.
    An executor that is given stays open: its owner shuts it down. `settle` may answer a
    ready node without running it (None: it must run); it is asked as soon as a node is
    ready, also while every job is busy, inside one `settling` block per run of ready nodes."""
    jobs = max(1, jobs)
    rank = {node: i for i, node in enumerate(order)}
    waiting = {node: len(graph.predecessors[node]) for node in order}
    ready = [(rank[node], node) for node in order if waiting[node] == 0]  # a heap: the first in order first
    to_run: list[tuple[int, str]] = []  # ready nodes `settle` could not answer, waiting for a job
    outcomes: dict[str, NodeOutcome] = {}
    stop = False
    owned = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="stage") if executor is None else None
    with owned or nullcontext():
        pool = owned or executor
        assert pool is not None
        running: dict[Future[NodeOutcome], str] = {}

        def parents_of(node: str) -> dict[str, NodeOutcome]:
            return {p: outcomes[p] for p in graph.predecessors[node]}

        def finish(node: str, outcome: NodeOutcome) -> None:
            nonlocal stop
            outcomes[node] = outcome
            if outcome.state is NodeState.FAILED:
                _skip_descendants(graph, node, outcomes)
                stop = stop or not keep_going
                return
            for child in graph.successors[node]:
                waiting[child] -= 1
                if waiting[child] == 0 and child not in outcomes:
                    heapq.heappush(ready, (rank[child], child))

        try:
            while ready or to_run or running:
                with settling() if ready else nullcontext():
                    while ready and not stop and not cancel.is_set():
                        item = heapq.heappop(ready)
                        settled = settle(item[1], parents_of(item[1])) if settle is not None else None
                        if settled is not None:
                            finish(item[1], settled)  # may make more nodes ready: settled in this loop
                        else:
                            heapq.heappush(to_run, item)
                while to_run and len(running) < jobs and not stop and not cancel.is_set():
                    _rank, node = heapq.heappop(to_run)
                    running[pool.submit(execute, node, parents_of(node))] = node
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: rank[running[f]]):
                    finish(running.pop(future), future.result())
        except BaseException:
            cancel.set()
            wait(running)
            raise
    for node in order:
        if node not in outcomes:
            outcomes[node] = NodeOutcome(node, NodeState.SKIPPED, reason="not started: the build stopped")
    return outcomes


def _skip_descendants(graph: Dag, failed: str, outcomes: dict[str, NodeOutcome]) -> None:
    for node in graph.descendants(failed):
        if node not in outcomes:
            outcomes[node] = NodeOutcome(node, NodeState.SKIPPED, reason=f"depends on failed {failed}")
