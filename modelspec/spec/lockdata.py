"""The data entries of a lock, as typed values: what each `data:` source of a spec was pinned to.

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
