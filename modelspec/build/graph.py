"""The build graph: every stage of every spec reachable from the targets, as plain dicts of nodes and edges.

    fraud:featurize ──▶ fraud:train ──▶ fraud:evaluate
           └──────────────────────────────────▲

An edge points from the stage that produces an output to the stage that reads it. A spec
whose data names another spec (`{spec: features, output: table}`) pulls that spec's
stages into the graph; the other spec is found beside it as `<name>.yaml`.
"""

from __future__ import annotations

import functools
import heapq
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..digest import canonical_json, digest_json
from ..errors import Problem, SpecError, UsageError
from ..resolve.lock import ResolveContext, resolve_spec
from ..sandbox.layout import Command
from ..spec.load import load_spec
from ..spec.lockdata import FromStage, PathData, RegisteredData, StageInput, StageLock
from ..spec.model import Lock, Spec, parse_overrides, split_output_ref
from .keys import stage_command

if TYPE_CHECKING:
    import networkx as nx

    from ..resolve.gitcode import CodeFile


@dataclass(frozen=True, slots=True)
class DataInput:
    """A snapshot: of a file or directory of the workspace (`path`), or the artifact of a
    registered version (no path: it is in the store already)."""

    basename: str
    entry: dict[str, Any]
    path: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamInput:
    """An output of another node."""

    node: str
    output: str
    basename: str


@dataclass(frozen=True)
class Node:
    """One stage of one lock. Its spec, when the graph was loaded from one, is in
    `BuildGraph.specs`; a graph from a stored lock has none."""

    id: str
    lock: Lock
    stage: str
    inputs: dict[str, DataInput | UpstreamInput] = field(default_factory=dict)

    @property
    def spec_name(self) -> str:
        return self.lock.name

    @property
    def stage_lock(self) -> StageLock:
        return self.lock.stages[self.stage]

    @functools.cached_property
    def command(self) -> Command:
        """The command its key holds (the same for every key a build computes for it)."""
        return stage_command(self.stage_lock, {name: source.basename for name, source in self.inputs.items()})


@dataclass
class ResolvedSpec:
    spec: Spec
    lock: Lock
    code_files: list[CodeFile]
    overrides: tuple[str, ...] = ()  # the command-line overrides applied to it, scopes removed

    @functools.cached_property
    def lock_json(self) -> bytes:
        """The lock as canonical JSON: the object stored with each version."""
        return canonical_json(self.lock.to_dict())


@dataclass
class BuildGraph:
    """Nodes and edges as plain dicts: building and walking it must not cost a no-op build
    the ~0.2 s that importing networkx takes. `to_networkx()` gives the same graph to
    callers that want networkx's algorithms (and error paths use them)."""

    nodes_by_id: dict[str, Node]
    successors: dict[str, list[str]]
    predecessors: dict[str, list[str]]
    specs: dict[str, ResolvedSpec]  # empty for a graph from a stored lock
    targets: list[str]  # spec names given on the command line

    @property
    def cache_index(self) -> str:
        """The name of the action-cache index kept for builds of exactly these specs."""
        return digest_json(sorted(self.specs))

    def node(self, node_id: str) -> Node:
        return self.nodes_by_id[node_id]

    def order(self) -> list[str]:
        """Topological order, ties broken by name so plans print the same every time."""
        return topological_order(self.successors, self.predecessors)

    def nodes(self) -> Iterator[Node]:
        for node_id in self.order():
            yield self.node(node_id)

    def descendants(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        pending = list(self.successors[node_id])
        while pending:
            node = pending.pop()
            if node not in seen:
                seen.add(node)
                pending.extend(self.successors[node])
        return seen

    def to_networkx(self) -> nx.DiGraph:
        import networkx as nx

        dag = nx.DiGraph()
        for node_id, node in self.nodes_by_id.items():
            dag.add_node(node_id, node=node)
        dag.add_edges_from((u, v) for u, vs in self.successors.items() for v in vs)
        return dag


def topological_order(successors: dict[str, list[str]], predecessors: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm with a heap: the lexicographically smallest ready node comes first."""
    waiting = {node: len(parents) for node, parents in predecessors.items()}
    ready = [node for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for child in successors[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    return order


def load_specs(paths: list[Path], cache_dir: Path | None = None) -> dict[str, Spec]:
    """Load the targets and every spec their data names, checking for spec-level cycles."""
    specs: dict[str, Spec] = {}
    problems: list[Problem] = []
    by_path: dict[Path, Spec] = {}
    pending = [Path(p).absolute() for p in paths]
    edges: list[tuple[str, str]] = []
    while pending:
        path = pending.pop(0)
        if path in by_path:
            continue
        try:
            spec = load_spec(path, cache_dir)
        except SpecError as exc:
            problems += exc.problems
            continue
        if spec.name in specs and specs[spec.name].path != spec.path:
            problems.append(
                spec.document.problem(("name",), f"spec name {spec.name!r} is also used by {specs[spec.name].shown}")
            )
            continue
        by_path[path] = spec
        specs[spec.name] = spec
        for name, source in spec.data.items():
            if source.spec is None or source.selector is not None:
                continue
            other = spec.path.parent / f"{source.spec}.yaml"
            if not other.is_file():
                problems.append(
                    spec.document.problem(
                        ("data", name, "spec"), f"no spec {source.spec!r} beside this one ({other.name} not found)"
                    )
                )
                continue
            edges.append((source.spec, spec.name))
            pending.append(other)
    if edges and not problems:
        problems += _spec_cycles(specs, edges)
    if problems:
        raise SpecError(problems)
    return specs


def _spec_cycles(specs: dict[str, Spec], edges: list[tuple[str, str]]) -> list[Problem]:
    import networkx as nx

    graph = nx.DiGraph(edges)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return []
    names = [u for u, _v in cycle]
    first = specs[names[-1]] if names[-1] in specs else next(iter(specs.values()))
    text = " → ".join([*names, names[0]])
    data_key = next((k for k, s in first.data.items() if s.spec == names[0]), "")
    return [first.document.problem(("data", data_key, "spec"), f"specs depend on each other in a cycle: {text}")]


def build_graph(paths: list[Path], overrides: list[str], ctx: ResolveContext) -> BuildGraph:
    """Load, resolve and connect every spec. An override applies to every target spec, or,
    scoped as `NAME:KEY=VALUE`, to the spec NAME of the build only."""
    specs = load_specs(paths, ctx.cache_dir)
    targets = [s.name for s in specs.values() if any(Path(p).absolute() == s.path for p in paths)]
    parsed = parse_overrides(overrides)
    for override in parsed:
        if override.scope is not None and override.scope not in specs:
            raise UsageError(
                f"command-line override {override.position} {override.given!r} is scoped to {override.scope!r}, "
                f"which is no spec of this build (specs: {', '.join(sorted(specs))})"
            )
    problems: list[Problem] = []
    resolved: dict[str, ResolvedSpec] = {}
    for spec in specs.values():
        applying = [o for o in parsed if o.scope == spec.name or (o.scope is None and spec.name in targets)]
        try:
            lock, files = resolve_spec(spec, applying, ctx)
        except SpecError as exc:
            problems += exc.problems
            continue
        resolved[spec.name] = ResolvedSpec(spec, lock, files, tuple(o.text for o in applying))
    if problems:
        shared = len(targets) > 1 and any(o.scope is None for o in parsed)
        hint = "an override without a scope applies to every spec given; scope it to one as NAME:KEY=VALUE"
        raise SpecError(problems, hint=hint if shared else "")
    nodes: dict[str, Node] = {}
    for item in resolved.values():
        for stage_name, stage in item.lock.stages.items():
            inputs = {}
            for input_id, source in stage.inputs.items():
                upstream = _input_source(item, input_id, source, resolved, problems)
                if upstream is not None:
                    inputs[input_id] = upstream
            node = Node(item.spec.node_id(stage_name), item.lock, stage_name, inputs)
            nodes[node.id] = node
    if problems:
        raise SpecError(problems)
    graph = _connect(nodes, resolved, targets)
    if len(graph.order()) < len(nodes):
        _raise_node_cycle(graph)
    return graph


def lock_graph(lock: Lock, upstream_artifacts: Mapping[str, Mapping[str, Any]]) -> BuildGraph:
    """The graph of one stored lock, for a reproduction: its stages only. Data comes from the
    lock, and another spec's artifact as the version recorded it (`upstream_artifacts`, by
    data name): that spec is not run again. A stored lock was checked when it was built,
    so it has no cycle."""
    nodes: dict[str, Node] = {}
    for stage_name, stage in lock.stages.items():
        inputs: dict[str, DataInput | UpstreamInput] = {}
        for input_id, source in stage.inputs.items():
            if isinstance(source, FromStage):
                path = lock.stages[source.stage].outputs[source.output]
                inputs[input_id] = UpstreamInput(f"{lock.name}:{source.stage}", source.output, Path(path).name)
                continue
            data = lock.data[source.data]
            if isinstance(data, PathData):
                inputs[input_id] = DataInput(Path(data.path).name, data.to_dict(), data.path)
            elif isinstance(data, RegisteredData):
                inputs[input_id] = DataInput(data.basename, data.to_dict())
            else:
                upstream = upstream_artifacts[source.data]
                inputs[input_id] = DataInput(str(upstream["basename"]), dict(upstream))
        nodes[f"{lock.name}:{stage_name}"] = Node(f"{lock.name}:{stage_name}", lock, stage_name, inputs)
    return _connect(nodes, {}, [lock.name])


def _connect(nodes: dict[str, Node], specs: dict[str, ResolvedSpec], targets: list[str]) -> BuildGraph:
    """The graph of `nodes`: an edge from each node to every node that reads its outputs."""
    successors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    predecessors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for node in nodes.values():
        for upstream_id in sorted({s.node for s in node.inputs.values() if isinstance(s, UpstreamInput)}):
            successors[upstream_id].append(node.id)
            predecessors[node.id].append(upstream_id)
    return BuildGraph(nodes, successors, predecessors, specs, targets)


def _raise_node_cycle(graph: BuildGraph) -> None:
    import networkx as nx

    cycle = nx.find_cycle(graph.to_networkx())
    first = graph.node(cycle[0][0])
    text = " → ".join([*(u for u, _ in cycle), cycle[0][0]])
    document = graph.specs[first.spec_name].spec.document
    raise SpecError([document.problem(("stages", first.stage), f"dependency cycle: {text}")])


def _input_source(
    item: ResolvedSpec,
    input_id: str,
    source: StageInput,
    resolved: dict[str, ResolvedSpec],
    problems: list[Problem],
) -> DataInput | UpstreamInput | None:
    spec, lock = item.spec, item.lock
    if isinstance(source, FromStage):
        path = lock.stages[source.stage].outputs[source.output]
        return UpstreamInput(spec.node_id(source.stage), source.output, posixpath.basename(path))
    data = lock.data[source.data]
    if isinstance(data, PathData):
        return DataInput(posixpath.basename(data.path.rstrip("/")), data.to_dict(), data.path)
    if isinstance(data, RegisteredData):
        return DataInput(data.basename, data.to_dict())
    other = resolved[data.spec]
    ref = _artifact_ref(other.lock, data.output)
    if ref is None:
        choices = ", ".join(other.lock.artifacts)
        problems.append(
            spec.document.problem(
                ("data", source.data, "output"),
                f"{data.output!r} is not an artifact of spec {other.spec.name!r} (artifacts: {choices})",
            )
        )
        return None
    stage, output = split_output_ref(ref)
    path = other.lock.stages[stage].outputs[output]
    return UpstreamInput(other.spec.node_id(stage), output, posixpath.basename(path))


def _artifact_ref(lock: Lock, output: str) -> str | None:
    if output in lock.artifacts:
        return output
    matches = [ref for ref in lock.artifacts if split_output_ref(ref)[1] == output]
    return matches[0] if len(matches) == 1 else None
