"""Keys for the nodes of a build graph, and the reasons, in words, that a node must run.

Pure apart from the lookups it is given: the plan of `modelspec plan` and the keys the
build computes as each node becomes ready come from the same `node_key`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..digest import digest_json
from ..flat import flatten
from ..spec.model import Lock
from ..store.traces import ActionResult
from .graph import BuildGraph, DataInput, Node, UpstreamInput
from .keys import InputDigest, action_key, host_platform, key_document


@dataclass(frozen=True)
class PlannedNode:
    node: str
    key: str
    cached: bool
    reasons: list[str] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "key": self.key,
            "status": "cached" if self.cached else "will run",
            "reasons": self.reasons,
        }


@dataclass(frozen=True)
class LastBuild:
    """What a spec's last build saw: each node's key document, and the command-line
    overrides it was built with (None when not recorded)."""

    documents: Mapping[str, Mapping[str, Any]]
    overrides: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Isolation:
    """Which sandbox each spec's stages get: its hermetic policy (or the command line's) and
    whether bubblewrap is installed decide it. The key holds the result, never the policy."""

    override: str | None = None
    bwrap: bool = True

    def policy(self, lock: Lock) -> str:
        return self.override or lock.hermetic

    def used(self, lock: Lock) -> str:
        """"bwrap" or "none" (`strict` without bubblewrap never runs: the build refuses it)."""
        return "bwrap" if self.policy(lock) != "off" and self.bwrap else "none"


def node_key(
    node: Node, upstream_digest: Callable[[UpstreamInput], str], isolation: str
) -> tuple[str, dict[str, Any]]:
    inputs = {}
    for input_id, source in node.inputs.items():
        if isinstance(source, DataInput):
            inputs[input_id] = InputDigest(source.basename, str(source.entry["digest"]))
        else:
            inputs[input_id] = InputDigest(source.basename, upstream_digest(source))
    environment = node.lock.environment
    document = key_document(
        node.stage_lock,
        inputs,
        str(environment["digest"]) if environment else None,
        host_platform(environment.get("python") if environment else None),
        isolation,
        node.command,
    )
    return action_key(document), document


def plan_build(
    graph: BuildGraph,
    lookup: Callable[[str], ActionResult | None],
    last: Mapping[str, LastBuild],
    isolation: Isolation = Isolation(),
) -> list[PlannedNode]:
    """Every node in order with its key, whether the action cache has it, and why not:
    what changed since the spec's last build, which the first reason names.

    An upstream node that will run contributes `pending:<its key>` to its dependents'
    keys: their real keys are known only once its outputs are.
    """
    planned: dict[str, PlannedNode] = {}
    results: dict[str, ActionResult] = {}

    def upstream_digest(source: UpstreamInput) -> str:
        result = results.get(source.node)
        if result is not None:
            return result.outputs[source.output].digest
        return f"pending:{planned[source.node].key}"

    for node in graph.nodes():
        key, document = node_key(node, upstream_digest, isolation.used(node.lock))
        hit = lookup(key)
        if hit is not None:
            results[node.id] = hit
            planned[node.id] = PlannedNode(node.id, key, True, [], document)
        else:
            build = last.get(node.spec_name)
            before = build.documents.get(node.id) if build is not None else None
            reasons = explain(before, document)
            if build is not None and before is not None and reasons != [NOT_CACHED]:
                reasons.insert(0, since_last_build(build.overrides, graph.specs[node.spec_name].overrides))
            planned[node.id] = PlannedNode(node.id, key, False, reasons, document)
    return list(planned.values())


def since_last_build(before: tuple[str, ...] | None, now: tuple[str, ...]) -> str:
    """The first reason: what the changes are relative to, so that a change the user did
    not make today (the last build's override, gone now) is never shown unexplained."""
    if before is None or before == now == ():
        return "since the last build"
    if before == now:
        return f"since the last build, with the same {_overrides(now)}"
    if not before:
        return "since the last build, which had no overrides"
    return f"since the last build, which had the {_overrides(before)}"


def _overrides(overrides: tuple[str, ...]) -> str:
    return f"override{'s' if len(overrides) > 1 else ''} {' '.join(overrides)}"


def content_ids(graph: BuildGraph, isolation: Isolation = Isolation()) -> dict[str, str]:
    """Each spec's content id: input-addressed (DESIGN.md §4.5), so the same inputs always
    name the same version. Upstream stages contribute their own input-addressed ids, not
    their outputs, so the id is known before anything runs."""
    addressed: dict[str, str] = {}
    for node in graph.nodes():
        key, _ = node_key(node, lambda s: f"node:{addressed[s.node]}", isolation.used(node.lock))
        addressed[node.id] = key
    ids = {}
    for name, item in graph.specs.items():
        document: dict[str, Any] = {
            "format": 1,
            "name": name,
            "stages": {s: addressed[item.spec.node_id(s)] for s in item.lock.stages},
        }
        if item.lock.code.get("dirty"):
            # Built from uncommitted files: a version of its own, so that committing them and
            # building again registers a clean version (its stages cached) rather than finding this one.
            document["dirty"] = True
        ids[name] = digest_json(document)
    return ids


def explain(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """Why a key differs from the one of the last build, in words."""
    if before is None:
        return ["never built"]
    reasons = []
    for name in sorted(set(before.get("inputs", {})) | set(after["inputs"])):
        old, new = before.get("inputs", {}).get(name), after["inputs"].get(name)
        if old is None:
            reasons.append(f"new input {name}")
        elif new is None:
            reasons.append(f"input {name} removed")
        elif old != new:
            upstream = "upstream output will be rebuilt" if str(new[1]).startswith("pending:") else "changed"
            reasons.append(f"input {name} {upstream}")
    old_config, new_config = flatten(before.get("config", {})), flatten(after["config"])
    for key in sorted(set(old_config) | set(new_config)):
        if old_config.get(key, _MISSING) != new_config.get(key, _MISSING):
            reasons.append(
                f"config key {key}: {_show(old_config.get(key, _MISSING))} → {_show(new_config.get(key, _MISSING))}"
            )
    labels = {
        "code": "code of its declared paths changed",
        "environment": "environment lock changed",
        "platform": "platform changed",
        "outputs": "declared outputs changed",
        "format": "key format changed",
    }
    for field_name, text in labels.items():
        if before.get(field_name) != after.get(field_name):
            reasons.append(text)
    if "isolation" in before and before["isolation"] != after["isolation"]:
        reasons.append(f"sandbox changed: {_ISOLATION[before['isolation']]} → {_ISOLATION[after['isolation']]}")
    if before.get("argv") != after["argv"] and not any(r.startswith(("input", "config")) for r in reasons):
        reasons.append("command changed")
    return reasons or [NOT_CACHED]


_MISSING = object()
_ISOLATION = {"bwrap": "bubblewrap", "none": "no sandbox"}
NOT_CACHED = "not in the action cache (removed, or built elsewhere)"


def _show(value: Any) -> str:
    return "(unset)" if value is _MISSING else repr(value)
