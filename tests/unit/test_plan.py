"""`plan_build` on a bare graph: no repository, no store, no workspace, only the lookups it
is given (what build/plan.py advertises: pure apart from its lookups).

The pipeline, one spec `x`:

    raw ──▶ prep ──▶ train
     └────▶ report
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelspec.build.graph import BuildGraph, DataInput, Node, ResolvedSpec, UpstreamInput
from modelspec.build.plan import NOT_CACHED, Isolation, LastBuild, PlannedNode, plan_build
from modelspec.digest import digest_bytes
from modelspec.spec.lockdata import StageLock
from modelspec.spec.model import Lock, Spec
from modelspec.spec.yamlsource import Document
from modelspec.store.objects import Entry
from modelspec.store.traces import ActionResult

RAW = digest_bytes(b"a,b\n1,2\n")
CODE = {"prep": digest_bytes(b"prep code"), "train": digest_bytes(b"train code"), "report": digest_bytes(b"report")}
CONFIG = {"prep": {"prep": {"rows": 10}}, "train": {"train": {"lr": 0.1}}, "report": {}}


def stage_lock(stage: str, inputs: dict[str, Any], output: str, config: Mapping[str, Any]) -> StageLock:
    reads = " ".join(f"${{inputs.{name}}}" for name in inputs)
    document = {
        "argv": ["cat", *reads.split(), f"${{outputs.{output}}}"],
        "shell": False,
        "code": {"paths": [f"src/{stage}"], "digest": CODE[stage]},
        "params": dict(config),
        "inputs": inputs,
        "outputs": {output: f"{stage}.out"},
        "metrics": None,
    }
    return StageLock.from_dict(document)


def make_graph(
    config: Mapping[str, Mapping[str, Any]] = CONFIG,
    *,
    raw: str = RAW,
    hermetic: str = "auto",
    overrides: tuple[str, ...] = (),
) -> BuildGraph:
    """The pipeline as the loader would connect it, from values only (paths lead nowhere)."""
    stages = {
        "prep": stage_lock("prep", {"raw": {"data": "raw"}}, "out", config["prep"]),
        "train": stage_lock("train", {"prep.out": {"stage": "prep", "output": "out"}}, "model", config["train"]),
        "report": stage_lock("report", {"raw": {"data": "raw"}}, "out", config["report"]),
    }
    spec = Spec(
        path=Path("/nowhere/specs/x.yaml"),
        shown="specs/x.yaml",
        name="x",
        version="1.0",
        description="",
        repo_root=Path("/nowhere"),
        ref="HEAD",
        data={},
        config=None,
        environment=None,
        hermetic=hermetic,
        stages={},
        artifacts=("train.model",),
        retention={},
        document=Document("specs/x.yaml", {}),
    )
    lock = Lock("x", "1.0", "specs/x.yaml", {}, {}, {}, None, hermetic, stages, ("train.model",))
    data = DataInput("raw.csv", {"type": "file", "digest": raw, "size": 8}, "data/raw.csv")
    nodes = {
        "x:prep": Node("x:prep", lock, "prep", {"raw": data}),
        "x:train": Node("x:train", lock, "train", {"prep.out": UpstreamInput("x:prep", "out", "prep.out")}),
        "x:report": Node("x:report", lock, "report", {"raw": data}),
    }
    successors = {"x:prep": ["x:train"], "x:train": [], "x:report": []}
    predecessors = {"x:prep": [], "x:train": ["x:prep"], "x:report": []}
    return BuildGraph(nodes, successors, predecessors, {"x": ResolvedSpec(spec, lock, [], overrides)}, ["x"])


def nothing_cached(_key: str) -> ActionResult | None:
    return None


def result(node: str, key: str, outputs: Mapping[str, str]) -> ActionResult:
    entries = {name: Entry("file", digest, 1) for name, digest in outputs.items()}
    return ActionResult(key, node, entries, digest_bytes(b"log"), 0, 0.0, 1.0, False)


def by_node(planned: list[PlannedNode]) -> dict[str, PlannedNode]:
    return {p.node: p for p in planned}


def last_build_of(planned: list[PlannedNode], overrides: tuple[str, ...] | None = ()) -> dict[str, LastBuild]:
    return {"x": LastBuild({p.node: p.document for p in planned}, overrides)}


def changed_config(stage: str, subtree: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {**CONFIG, stage: subtree}


def test_a_graph_never_built_runs_everything_in_order_with_distinct_keys() -> None:
    planned = plan_build(make_graph(), nothing_cached, {})
    assert [p.node for p in planned] == ["x:prep", "x:report", "x:train"]  # topological, ties by name
    assert all(not p.cached and p.reasons == ["never built"] for p in planned)
    assert len({p.key for p in planned}) == 3
    assert all(p.key.startswith("blake3:") for p in planned)


def test_the_plan_is_deterministic() -> None:
    assert plan_build(make_graph(), nothing_cached, {}) == plan_build(make_graph(), nothing_cached, {})


def test_a_node_that_will_run_stands_in_for_its_output_with_its_key() -> None:
    nodes = by_node(plan_build(make_graph(), nothing_cached, {}))
    basename, digest = nodes["x:train"].document["inputs"]["prep.out"]
    assert basename == "prep.out"
    assert digest == f"pending:{nodes['x:prep'].key}"


def test_the_lookup_is_asked_once_per_node_for_exactly_the_planned_keys() -> None:
    asked: list[str] = []

    def lookup(key: str) -> ActionResult | None:
        asked.append(key)
        return None

    planned = plan_build(make_graph(), lookup, {})
    assert asked == [p.key for p in planned]


def test_a_cached_node_contributes_its_output_digest_to_its_dependents() -> None:
    first = by_node(plan_build(make_graph(), nothing_cached, {}))
    prep_output = digest_bytes(b"prepared rows")
    cache = {first["x:prep"].key: result("x:prep", first["x:prep"].key, {"out": prep_output})}
    planned = by_node(plan_build(make_graph(), cache.get, {}))
    assert planned["x:prep"].cached and planned["x:prep"].reasons == []
    assert planned["x:train"].document["inputs"]["prep.out"] == ["prep.out", prep_output]
    assert planned["x:train"].key != first["x:train"].key  # the real digest, not the pending key


def test_early_cutoff_an_upstream_change_with_the_same_output_leaves_the_dependent_key_alone() -> None:
    """prep's key changes with its config, but if its rebuilt output has the same bytes,
    train's key (which holds prep's output digest, not prep's key) does not change."""
    same_output = digest_bytes(b"prepared rows")
    before = by_node(plan_build(make_graph(), nothing_cached, {}))
    edited = make_graph(changed_config("prep", {"prep": {"rows": 20}}))
    after = by_node(plan_build(edited, nothing_cached, {}))
    assert after["x:prep"].key != before["x:prep"].key

    def outputs_of_prep(keys: set[str]) -> dict[str, ActionResult]:
        return {key: result("x:prep", key, {"out": same_output}) for key in keys}

    cache_before = outputs_of_prep({before["x:prep"].key})
    cache_after = outputs_of_prep({after["x:prep"].key})
    train_before = by_node(plan_build(make_graph(), cache_before.get, {}))["x:train"]
    train_after = by_node(plan_build(edited, cache_after.get, {}))["x:train"]
    assert train_before.key == train_after.key


def test_a_config_change_is_explained_since_the_last_build() -> None:
    first = plan_build(make_graph(), nothing_cached, {})
    edited = make_graph(changed_config("train", {"train": {"lr": 0.05}}))
    nodes = by_node(plan_build(edited, nothing_cached, last_build_of(first)))
    assert nodes["x:train"].reasons == ["since the last build", "config key train.lr: 0.1 → 0.05"]
    assert nodes["x:prep"].reasons == [NOT_CACHED]  # same key as last time, yet not in the cache


def test_changed_data_is_explained_for_each_reader_and_runs_downstream() -> None:
    first = plan_build(make_graph(), nothing_cached, {})
    nodes = by_node(plan_build(make_graph(raw=digest_bytes(b"other rows")), nothing_cached, last_build_of(first)))
    assert nodes["x:prep"].reasons == ["since the last build", "input raw changed"]
    assert nodes["x:report"].reasons == ["since the last build", "input raw changed"]
    assert nodes["x:train"].reasons == ["since the last build", "input prep.out upstream output will be rebuilt"]


def test_the_first_reason_names_the_overrides_of_the_last_build() -> None:
    first = plan_build(make_graph(), nothing_cached, {})
    edited = make_graph(changed_config("train", {"train": {"lr": 0.05}}))
    last = last_build_of(first, overrides=("train.lr=0.1",))
    nodes = by_node(plan_build(edited, nothing_cached, last))
    assert nodes["x:train"].reasons[0] == "since the last build, which had the override train.lr=0.1"
    same = make_graph(changed_config("train", {"train": {"lr": 0.05}}), overrides=("train.lr=0.05",))
    nodes = by_node(plan_build(same, nothing_cached, last_build_of(first, overrides=("train.lr=0.05",))))
    assert nodes["x:train"].reasons[0] == "since the last build, with the same override train.lr=0.05"


def test_the_sandbox_used_not_the_policy_asked_for_is_in_the_key() -> None:
    strict = plan_build(make_graph(hermetic="strict"), nothing_cached, {}, Isolation(bwrap=True))
    auto = plan_build(make_graph(hermetic="auto"), nothing_cached, {}, Isolation(bwrap=True))
    assert [p.key for p in strict] == [p.key for p in auto]  # both run in bubblewrap
    unsandboxed = plan_build(make_graph(hermetic="auto"), nothing_cached, last_build_of(auto), Isolation(bwrap=False))
    assert all(p.key not in {a.key for a in auto} for p in unsandboxed)
    prep = by_node(unsandboxed)["x:prep"]
    assert prep.reasons == ["since the last build", "sandbox changed: bubblewrap → no sandbox"]
    overridden = plan_build(make_graph(hermetic="auto"), nothing_cached, {}, Isolation("off", bwrap=True))
    assert [p.key for p in overridden] == [p.key for p in unsandboxed]


def test_a_spec_with_no_last_build_entry_for_a_node_says_never_built() -> None:
    first = plan_build(make_graph(), nothing_cached, {})
    partial = {"x": LastBuild({p.node: p.document for p in first if p.node != "x:report"}, ())}
    nodes = by_node(plan_build(make_graph(raw=digest_bytes(b"other")), nothing_cached, partial))
    assert nodes["x:report"].reasons == ["never built"]


def test_planned_nodes_serialise_their_status() -> None:
    planned = plan_build(make_graph(), nothing_cached, {})
    assert planned[0].to_dict() == {"node": "x:prep", "key": planned[0].key, "status": "will run",
                                    "reasons": ["never built"]}
    cached = replace(planned[0], cached=True, reasons=[])
    assert cached.to_dict()["status"] == "cached"
