"""The scheduler on bare graphs, driven by an injected executor: no store, no process, no I/O.

a ──▶ b ──▶ d
└───▶ c ──▲        e (independent)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest

from modelspec.build.graph import BuildGraph
from modelspec.build.rebuilder import NodeOutcome, NodeState
from modelspec.build.scheduler import Execute, schedule

EDGES = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": [], "e": []}


def bare_graph(edges: Mapping[str, list[str]] = EDGES) -> BuildGraph:
    predecessors: dict[str, list[str]] = {node: [] for node in edges}
    for parent, children in edges.items():
        for child in children:
            predecessors[child].append(parent)
    return BuildGraph({}, {n: list(c) for n, c in edges.items()}, predecessors, {}, [])


class SynchronousExecutor(Executor):
    """Runs each task as it is submitted, in the caller's thread, and remembers the order."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted.append(args[0])
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def executing(failing: frozenset[str] = frozenset(), seen: dict[str, set[str]] | None = None) -> Execute:
    def execute(node: str, parents: Mapping[str, NodeOutcome]) -> NodeOutcome:
        if seen is not None:
            seen[node] = set(parents)
        assert all(o.state is NodeState.RAN for o in parents.values()), "a node started before its parents ran"
        if node in failing:
            return NodeOutcome(node, NodeState.FAILED, reason="boom")
        return NodeOutcome(node, NodeState.RAN)

    return execute


def run(graph: BuildGraph, execute: Execute, executor: Executor, **options: Any) -> dict[str, NodeOutcome]:
    options.setdefault("jobs", 1)  # one at a time: a synchronous executor's order is then the graph's
    options.setdefault("keep_going", False)
    options.setdefault("cancel", threading.Event())
    return schedule(graph, graph.order(), execute, executor=executor, **options)


def states(outcomes: Mapping[str, NodeOutcome]) -> dict[str, str]:
    return {node: outcome.state.value for node, outcome in sorted(outcomes.items())}


def test_every_node_runs_once_after_its_parents_and_sees_only_their_outcomes() -> None:
    graph, executor, seen = bare_graph(), SynchronousExecutor(), dict[str, set[str]]()
    outcomes = run(graph, executing(seen=seen), executor)
    assert states(outcomes) == dict.fromkeys("abcde", "ran")
    assert executor.submitted == ["a", "b", "c", "d", "e"]  # the graph's order, ties by name
    assert seen == {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}, "e": set()}


def test_a_failure_skips_its_descendants_and_stops_the_run() -> None:
    executor = SynchronousExecutor()
    outcomes = run(bare_graph(), executing(frozenset("b")), executor)
    assert states(outcomes) == {"a": "ran", "b": "failed", "c": "skipped", "d": "skipped", "e": "skipped"}
    assert outcomes["d"].reason == "depends on failed b"
    assert outcomes["c"].reason == outcomes["e"].reason == "not started: the build stopped"
    assert executor.submitted == ["a", "b"]


def test_keep_going_runs_everything_that_does_not_depend_on_the_failure() -> None:
    outcomes = run(bare_graph(), executing(frozenset("b")), SynchronousExecutor(), keep_going=True)
    assert states(outcomes) == {"a": "ran", "b": "failed", "c": "ran", "d": "skipped", "e": "ran"}
    assert outcomes["d"].reason == "depends on failed b"


def test_a_cancelled_run_starts_nothing() -> None:
    cancel = threading.Event()
    cancel.set()
    executor = SynchronousExecutor()
    outcomes = run(bare_graph(), executing(), executor, cancel=cancel)
    assert executor.submitted == [] and set(states(outcomes).values()) == {"skipped"}


def test_an_error_in_a_task_cancels_the_run_and_is_raised() -> None:
    def execute(node: str, parents: Mapping[str, NodeOutcome]) -> NodeOutcome:
        if node == "c":
            raise RuntimeError("the executor lost its worker")
        return NodeOutcome(node, NodeState.RAN)

    cancel = threading.Event()
    with pytest.raises(RuntimeError, match="lost its worker"):
        run(bare_graph(), execute, SynchronousExecutor(), cancel=cancel)
    assert cancel.is_set()  # what still runs is told to stop


def test_at_most_jobs_nodes_run_at_once_and_an_injected_executor_stays_open() -> None:
    graph = bare_graph({f"n{i}": [] for i in range(6)})
    lock, running, most = threading.Lock(), [0], [0]
    release = threading.Barrier(2, timeout=5)  # two at once, never a third

    def execute(node: str, parents: Mapping[str, NodeOutcome]) -> NodeOutcome:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait()
        with lock:
            running[0] -= 1
        return NodeOutcome(node, NodeState.RAN)

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = run(graph, execute, pool, jobs=2)
        assert pool.submit(lambda: 1).result() == 1  # the scheduler did not shut it down
    assert set(states(outcomes).values()) == {"ran"} and most[0] == 2


def test_ready_cache_hits_are_settled_before_a_job_is_awaited_inside_one_settling_block() -> None:
    """With every job busy, a node that `settle` answers does not wait for one: its hits are
    settled while the stages that must run run (here before b starts, on one job)."""
    settled: list[str] = []
    inside = [0]
    blocks = [0]

    class Settling:
        def __enter__(self) -> None:
            inside[0] += 1
            blocks[0] += 1

        def __exit__(self, *exc: object) -> None:
            inside[0] -= 1

    def settle(node: str, parents: Mapping[str, NodeOutcome]) -> NodeOutcome | None:
        assert inside[0] == 1, "settled outside a settling block"
        if node in ("c", "e"):
            settled.append(node)
            return NodeOutcome(node, NodeState.CACHED)
        return None

    def execute(node: str, parents: Mapping[str, NodeOutcome]) -> NodeOutcome:
        if node == "b":
            assert settled == ["e", "c"], settled  # e was ready from the start, c with b
        return NodeOutcome(node, NodeState.RAN)

    with ThreadPoolExecutor(max_workers=1) as pool:
        outcomes = run(bare_graph(), execute, pool, settle=settle, settling=Settling)
    assert states(outcomes) == {"a": "ran", "b": "ran", "c": "cached", "d": "ran", "e": "cached"}
    assert blocks[0] == 3  # at the start, after a, after b and c: one block each, not one per node
