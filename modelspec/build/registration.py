"""After a successful build: the workspace's build record of each spec, and its version in
the registry, with everything a later `reproduce` needs already in the store."""

from __future__ import annotations

import getpass
import json
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..attest.statement import data_dependency
from ..digest import canonical_json, short
from ..errors import ModelspecError, UsageError
from ..flat import flatten
from ..resolve import gitcode
from ..spec.lockdata import PathData, RegisteredData
from ..spec.model import split_output_ref
from ..store.workspace import Workspace
from .graph import BuildGraph, DataInput
from .plan import LastBuild
from .profiles import data_profiles
from .provenance import RemoteRead, make_provenance
from .rebuilder import NodeOutcome
from .tasks import WorkspaceSources

if TYPE_CHECKING:  # SQLAlchemy is imported only when a build actually registers something
    from ..registry.registry import ModelVersion, Registry, Revival

BUILD_RECORD_FORMAT = 3


def read_build_record(workspace: Workspace, name: str) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads((workspace.builds_dir / f"{name}.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return record if record.get("format") == BUILD_RECORD_FORMAT else None


def build_record(
    workspace: Workspace,
    graph: BuildGraph,
    name: str,
    outcomes: Mapping[str, NodeOutcome],
    key_documents: Mapping[str, dict[str, Any]],
    content_id: str,
) -> dict[str, Any]:
    """What the spec's build produced: its lock (stored as an object), artifacts, metrics."""
    item = graph.specs[name]
    artifacts = {}
    for ref in item.lock.artifacts:
        stage, output = split_output_ref(ref)
        result = outcomes[item.spec.node_id(stage)].result
        assert result is not None
        artifacts[ref] = result.outputs[output].to_dict()
    metrics: dict[str, float] = {}
    nodes = {}
    for node_id, outcome in sorted(outcomes.items()):
        result = outcome.result
        assert result is not None
        metrics.update(result.metrics)
        nodes[node_id] = {
            "key": outcome.key,
            "key_document": key_documents[node_id],
            "log": result.log,
            "seconds": round(result.duration, 3),
            "hermetic": result.hermetic,
            "outputs": {name: entry.to_dict() for name, entry in sorted(result.outputs.items())},
        }
    return {
        "format": BUILD_RECORD_FORMAT,
        "name": name,
        "content_id": content_id,
        "lock": workspace.store.put_bytes(item.lock_json),
        "artifacts": artifacts,
        "metrics": metrics,
        "nodes": nodes,
        "hermetic": all(n["hermetic"] for n in nodes.values()),
        "overrides": list(item.overrides),  # so that a plan can say what it compares with
    }


def save_build_record(workspace: Workspace, name: str, record_json: bytes, registered: str, digest: str) -> None:
    """The record (`builds/NAME.json`, from its canonical JSON), then beside it what a next
    build compares with: the record's `digest` (of `record_json`) and the version it was
    registered as (`builds/NAME.registered`). The file adds when and as what it was
    registered to the record's JSON, not serialized again (a megabyte at 1,000 stages)."""
    stamp = canonical_json({"registered": registered, "finished": time.time()})
    stamped = record_json[:-1] + b"," + stamp[1:] if record_json != b"{}" else stamp
    workspace.store.write_file(workspace.builds_dir / f"{name}.json", stamped)
    summary = {"digest": digest, "registered": registered}
    workspace.store.write_file(workspace.builds_dir / f"{name}.registered", canonical_json(summary))


def unchanged_registration(workspace: Workspace, record: dict[str, Any], digest: str) -> str | None:
    """The version this exact build was registered as before, so a no-op build need not
    open the registry (importing SQLAlchemy alone costs ~0.3 s). Compared by `digest`
    (`digest_json(record)`) with the small summary beside the last record, not by reading
    the record (a megabyte per 1,000 stages); a workspace without a summary compares whole records."""
    try:
        summary = json.loads((workspace.builds_dir / f"{record['name']}.registered").read_bytes())
        if summary["digest"] == digest:
            return str(summary["registered"])
        return None
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    previous = read_build_record(workspace, record["name"])
    if previous is None or not previous.get("registered"):
        return None
    same = {k: v for k, v in previous.items() if k not in ("finished", "registered")} == record
    return str(previous["registered"]) if same else None


def register(
    workspace: Workspace,
    graph: BuildGraph,
    name: str,
    record: dict[str, Any],
    content_ids: Mapping[str, str],
    results: Mapping[str, NodeOutcome],
    registry: Registry,
    sources: WorkspaceSources,
    started: float | None = None,
    read_remote: RemoteRead | None = None,
) -> tuple[ModelVersion, bool, Revival | None]:
    """Register the build of `name`, after putting every reproduction input in the store,
    with its provenance (unless the registry already has this content)."""
    from ..registry.registry import VersionDraft
    from ..registry.versions import by_content

    item = graph.specs[name]
    lock = item.lock
    stages = {}
    for stage_name in lock.stages:
        node_id = item.spec.node_id(stage_name)
        node = graph.node(node_id)
        for source in node.inputs.values():
            if isinstance(source, DataInput):
                sources.data(node, source)
        code = sources.code(node)
        stages[stage_name] = {**record["nodes"][node_id], "code": code.to_dict()}
        stages[stage_name].pop("key_document")
    profiles = data_profiles(workspace, item, sources.statcache)
    if lock.environment is not None:
        env_file = item.spec.repo_root / str(lock.environment["file"])
        workspace.store.put_file(env_file, digest=str(lock.environment["file_digest"]))
    params: dict[str, Any] = {}
    for stage in lock.stages.values():
        params.update(flatten(stage.params))
    lineage = []
    upstream_dependencies = []  # provenance: the versions of other specs this build registered
    upstream_artifacts: dict[str, dict[str, Any]] = {}  # inputs from other specs, for reproduce
    for data_name, data in lock.data.items():
        if isinstance(data, PathData):
            lineage.append({"kind": "data", "name": data_name, "ref": data.path, "digest": data.digest})
        elif isinstance(data, RegisteredData):
            lineage.append(
                {
                    "kind": "version",
                    "name": data_name,
                    "ref": data.ref,
                    "digest": data.digest,
                    "upstream_content": data.content_id,
                }
            )
        else:
            upstream = graph.specs[data.spec]
            output = data.output
            output_ref = output if "." in output else _artifact_named(upstream.lock.artifacts, output)
            upstream_stage, output_name = split_output_ref(output_ref)
            result = results[upstream.spec.node_id(upstream_stage)].result
            assert result is not None
            artifact = result.outputs[output_name]
            basename = Path(upstream.lock.stages[upstream_stage].outputs[output_name]).name
            upstream_artifacts[data_name] = {**artifact.to_dict(), "basename": basename}
            lineage.append(
                {
                    "kind": "spec",
                    "name": data_name,
                    "ref": f"{data.spec}:{output_ref}",
                    "digest": artifact.digest,
                    "upstream_content": content_ids[data.spec],
                }
            )
            registered = registry.read(by_content, data.spec, content_ids[data.spec])
            uri = f"modelspec:{registered.ref if registered else data.spec}"
            upstream_dependencies.append(
                data_dependency(data_name, uri, artifact.digest, output=output_ref, contentId=content_ids[data.spec])
            )
    existing = registry.read(by_content, name, content_ids[name])
    provenance = None
    if existing is None:  # else the registry keeps the version it has, and that version's provenance
        facts = {
            "name": name,
            "spec_version": lock.version,
            "spec_path": lock.spec_path,
            "overrides": list(item.overrides),
            "content_id": content_ids[name],
            "lock": record["lock"],
            "hermetic": bool(record["hermetic"]),
            "commit": str(lock.code.get("commit", "")),
            "dirty": bool(lock.code.get("dirty")),
            "environment": dict(lock.environment) if lock.environment else None,
            "started": started or time.time(),
        }
        earlier = _earlier_envelope(registry, name)
        provenance = make_provenance(workspace, lock, record, facts, upstream_dependencies, read_remote, earlier)
    draft = VersionDraft(
        name=name,
        spec_version=lock.version,
        content_id=content_ids[name],
        lock=record["lock"],
        commit=str(lock.code.get("commit", "")),
        environment=str(lock.environment["digest"]) if lock.environment else None,
        hermetic=bool(record["hermetic"]),
        author=actor(item.spec.repo_root),
        host=socket.gethostname(),
        tool_version=__version__,
        record={
            "params": params,
            "data": {k: v.to_dict() for k, v in lock.data.items()},
            "upstream_artifacts": upstream_artifacts,
            "stages": stages,
            "environment": dict(lock.environment) if lock.environment else None,
            "dirty": bool(lock.code.get("dirty")),
            "spec": lock.spec_path,
            "retention": dict(item.spec.retention),
            "profiles": profiles,  # input name → its data profile's digest (tabular files)
            **({"provenance": provenance} if provenance else {}),  # the signed statement's envelope
        },
        artifacts=record["artifacts"],
        metrics=record["metrics"],
        lineage=lineage,
    )
    # Durable before the registry names them. (An object another build is writing at the same
    # time, found here already in the store, is made durable by that build when it ends.)
    workspace.store.sync()
    return registry.register(draft)


def _earlier_envelope(registry: Registry, name: str) -> str | None:
    """The provenance envelope of the model's latest version, if it has one."""
    try:
        latest = registry.resolve(f"{name}@latest")
    except UsageError:  # the model's first version
        return None
    provenance = latest.record.get("provenance")
    return str(provenance["envelope"]) if provenance else None


def differing_outputs(version: ModelVersion, record: dict[str, Any]) -> list[str]:
    """`stage.output (registered X, built Y)` for each output of this build whose bytes differ
    from those of `version`, registered before for the same inputs."""
    registered_stages = version.record.get("stages", {})
    differ = []
    for node_id, node in sorted(record["nodes"].items()):
        stage = node_id.partition(":")[2]
        registered = registered_stages.get(stage, {}).get("outputs", {})
        for output, entry in sorted(node["outputs"].items()):
            before = registered.get(output)
            if before is not None and before["digest"] != entry["digest"]:
                was, now = short(before["digest"]), short(entry["digest"])
                differ.append(f"{stage}.{output} (registered {was}, built {now})")
    return differ


def actor(repo: Path) -> str:
    """Who acts: the git user of the repository, else the OS user."""
    try:
        name = gitcode.commit_author(repo)
    except ModelspecError:
        name = ""
    return name or getpass.getuser()


def _artifact_named(artifacts: tuple[str, ...], output: str) -> str:
    return next(ref for ref in artifacts if split_output_ref(ref)[1] == output)


class LastBuilds(Mapping[str, LastBuild]):
    """What the last build of each spec saw, which a plan compares with: a record is read
    (a megabyte per 1,000 stages) only when a node of its spec will run."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._read: dict[str, LastBuild | None] = {}

    def __getitem__(self, name: str) -> LastBuild:
        if name not in self._read:
            self._read[name] = _last_build(self.workspace, name)
        found = self._read[name]
        if found is None:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(n for n in self._read if self._read[n] is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _last_build(workspace: Workspace, name: str) -> LastBuild | None:
    record = read_build_record(workspace, name)
    if record is None:
        return None
    documents = {node: info.get("key_document", {}) for node, info in record.get("nodes", {}).items()}
    overrides = record.get("overrides")  # absent from the records of older versions
    return LastBuild(documents, None if overrides is None else tuple(overrides))
