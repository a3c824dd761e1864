"""The scheduler: a topological walk that hands every ready node to a pool of workers.

Independent ready nodes run in parallel (up to `jobs`). When a node fails, its
descendants are skipped; other nodes stop being started unless `keep_going`. On
interruption the running nodes are cancelled through `cancel` and waited for, so no
half-written result remains. The executor is injected: tests pass plain functions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from .graph import BuildGraph
from .rebuilder import NodeOutcome, NodeState

Execute = Callable[[str, dict[str, NodeOutcome]], NodeOutcome]


def schedule(
    graph: BuildGraph,
    order: list[str],
    execute: Execute,
    *,
    jobs: int,
    keep_going: bool,
    cancel: threading.Event,
) -> dict[str, NodeOutcome]:
    """Run every node of `dag` once its parents succeeded; returns every node's outcome."""
    rank = {node: i for i, node in enumerate(order)}
    waiting = {node: len(graph.predecessors[node]) for node in order}
    ready = [node for node in order if waiting[node] == 0]
    outcomes: dict[str, NodeOutcome] = {}
    stop = False
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="stage") as pool:
        running: dict[Future[NodeOutcome], str] = {}
        try:
            while ready or running:
                while ready and len(running) < max(1, jobs) and not stop and not cancel.is_set():
                    node = ready.pop(0)
                    running[pool.submit(execute, node, outcomes)] = node
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: rank[running[f]]):
                    node = running.pop(future)
                    outcome = future.result()
                    outcomes[node] = outcome
                    if outcome.state is NodeState.FAILED:
                        _skip_descendants(graph, node, outcomes)
                        stop = stop or not keep_going
                        continue
                    for child in graph.successors[node]:
                        waiting[child] -= 1
                        if waiting[child] == 0 and child not in outcomes:
                            ready.append(child)
                    ready.sort(key=rank.__getitem__)
        except BaseException:
            cancel.set()
            wait(running)
            raise
    for node in order:
        if node not in outcomes:
            outcomes[node] = NodeOutcome(node, NodeState.SKIPPED, reason="not started: the build stopped")
    return outcomes


def _skip_descendants(graph: BuildGraph, failed: str, outcomes: dict[str, NodeOutcome]) -> None:
    for node in graph.descendants(failed):
        if node not in outcomes:
            outcomes[node] = NodeOutcome(node, NodeState.SKIPPED, reason=f"depends on failed {failed}")
