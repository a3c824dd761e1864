"""The parts of a lock, as typed values: what each `data:` source of a spec was pinned to, and
what each stage was pinned to (`StageLock`).

Three kinds, told apart once (`lock_data`), each round-tripping the exact JSON the lock holds
(`to_dict(from_dict(d)) == d`), so lock files, their digests and the registry's records do
not change. The snapshot fields (`type`, `digest`, `size`) stay a plain mapping: the store's
`Entry` lives in a layer above the spec's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PathData:
    """A file or directory of the repository, pinned by its snapshot's entry (empty when the
    lock only checked the path, reading no bytes)."""

    path: str
    entry: Mapping[str, Any]

    @property
    def digest(self) -> str:
        return str(self.entry["digest"])

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, **self.entry}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> PathData:
        return cls(str(document["path"]), {k: v for k, v in document.items() if k != "path"})


@dataclass(frozen=True)
class RegisteredData:
    """The artifact `output` of the registered version `registered` (`NAME@VERSION`), chosen
    by a range or through `alias`; `entry` is the artifact's, `basename` its file name."""

    registered: str
    content_id: str
    output: str
    basename: str
    entry: Mapping[str, Any]
    alias: str | None = None

    @property
    def digest(self) -> str:
        return str(self.entry["digest"])

    @property
    def ref(self) -> str:
        return f"{self.registered}:{self.output}"

    def to_dict(self) -> dict[str, Any]:
        via = {"alias": self.alias} if self.alias is not None else {}
        head = {"registered": self.registered, "content_id": self.content_id, "output": self.output}
        return {**head, "basename": self.basename, **via, **self.entry}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> RegisteredData:
        named = ("registered", "content_id", "output", "basename", "alias")
        return cls(
            registered=str(document["registered"]),
            content_id=str(document["content_id"]),
            output=str(document["output"]),
            basename=str(document["basename"]),
            entry={k: v for k, v in document.items() if k not in named},
            alias=str(document["alias"]) if "alias" in document else None,
        )


@dataclass(frozen=True)
class SpecOutputData:
    """The artifact `output` of another spec of the workspace, built in the same build (its
    digest is known only then, so the lock does not hold it)."""

    spec: str
    output: str

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "output": self.output}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> SpecOutputData:
        return cls(str(document["spec"]), str(document["output"]))


LockData = PathData | RegisteredData | SpecOutputData


def lock_data(document: Mapping[str, Any]) -> LockData:
    """The typed value of one data entry of a lock (or of a version's record, which holds the
    same entries)."""
    if "path" in document:
        return PathData.from_dict(document)
    if "registered" in document:
        return RegisteredData.from_dict(document)
    return SpecOutputData.from_dict(document)


@dataclass(frozen=True)
class FromStage:
    """A stage input read from the output `output` of the spec's stage `stage`."""

    stage: str
    output: str

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "output": self.output}


@dataclass(frozen=True)
class FromData:
    """A stage input read from the spec's data entry `data`."""

    data: str

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data}


StageInput = FromStage | FromData


def stage_input(document: Mapping[str, Any]) -> StageInput:
    """The typed value of one input of a stage lock (`{stage, output}` or `{data}`)."""
    if "stage" in document:
        return FromStage(str(document["stage"]), str(document["output"]))
    return FromData(str(document["data"]))


@dataclass(frozen=True)
class StageLock:
    """One stage of a lock: its command, the code it reads (paths, and their digest at the
    locked commit), the config keys it reads (`params`, selected from the composed config),
    its inputs, outputs, metrics output and resource limits. Round-trips the lock's JSON."""

    argv: tuple[str, ...]
    shell: bool
    code_paths: tuple[str, ...]
    code_digest: str
    params: Mapping[str, Any]
    inputs: Mapping[str, StageInput]
    outputs: Mapping[str, str]  # output name → path under out/
    metrics: str | None = None
    limits: Mapping[str, Any] | None = None  # not in the action key: they decide whether a run may finish
    resources: Mapping[str, Any] | None = None  # not in the action key either: where it may run (a cluster)

    @property
    def code(self) -> dict[str, Any]:
        return {"paths": list(self.code_paths), "digest": self.code_digest}

    def to_dict(self) -> dict[str, Any]:
        document = {
            "argv": list(self.argv),
            "shell": self.shell,
            "code": self.code,
            "params": dict(self.params),
            "inputs": {name: source.to_dict() for name, source in self.inputs.items()},
            "outputs": dict(self.outputs),
            "metrics": self.metrics,
        }
        if self.limits:
            document["limits"] = dict(self.limits)
        if self.resources:
            document["resources"] = dict(self.resources)
        return document

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> StageLock:
        return cls(
            argv=tuple(document["argv"]),
            shell=bool(document["shell"]),
            code_paths=tuple(document["code"]["paths"]),
            code_digest=str(document["code"]["digest"]),
            params=document["params"],
            inputs={name: stage_input(source) for name, source in document["inputs"].items()},
            outputs=document["outputs"],
            metrics=document.get("metrics"),
            limits=document.get("limits"),
            resources=document.get("resources"),
        )
