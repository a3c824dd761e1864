"""The spec and lock as frozen values; no I/O here.

Node ids read `fraud:train`; stage outputs are referred to as `train.model`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Location, Problem
from .gates import Gate
from .lockdata import LockData, StageLock, lock_data
from .yamlsource import Document

LOCK_FORMAT = 1
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True, slots=True)
class DataSource:
    """A named input of a spec: a path snapshot, another spec's artifact, or a registered one."""

    name: str
    path: str | None = None
    spec: str | None = None
    # After the `@` of a registered version: a range (`baseline@^2.0`) or an alias (`churn@production`).
    selector: str | None = None
    output: str | None = None
    allow: tuple[str, ...] = ()  # the marks a registered version may carry: dirty, unsandboxed


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    argv: tuple[str, ...]  # tokens, placeholders not yet interpolated
    shell: bool
    code: tuple[str, ...]
    inputs: tuple[str, ...]  # data names, or `stage.output` of the same spec
    params: tuple[str, ...]
    outputs: Mapping[str, str]
    metrics: str | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)  # `timeout:` and `limits:`, as written
    resources: Mapping[str, Any] = field(default_factory=dict)  # what a cluster worker must offer it


@dataclass(frozen=True, slots=True)
class ConfigSource:
    dir: str
    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EnvironmentSpec:
    python: str | None = None
    lock: str | None = None
    nix: str | None = None


@dataclass(frozen=True)
class Spec:
    """A validated spec. Paths are relative to `repo_root`; `document` locates errors."""

    path: Path
    shown: str
    name: str
    version: str
    description: str
    repo_root: Path
    ref: str
    data: Mapping[str, DataSource]
    config: ConfigSource | None
    environment: EnvironmentSpec | None
    hermetic: str
    stages: Mapping[str, Stage]
    artifacts: tuple[str, ...]
    retention: Mapping[str, Any]
    document: Document = field(compare=False, repr=False)
    schema_marker: Path | None = field(default=None, compare=False, repr=False)  # to record, once resolved
    gates: tuple[Gate, ...] = ()  # judged after the build; not in the lock, so not in the content id

    def node_id(self, stage: str) -> str:
        return f"{self.name}:{stage}"


@dataclass(frozen=True, slots=True)
class Override:
    """A config override from the command line: `train.seed=3` applies to every target
    spec, `churn:optimizer=slow` to the spec named churn only."""

    given: str  # as typed, scope included
    position: int  # 1-based among the command line's overrides
    text: str  # the Hydra override itself
    scope: str | None = None

    def problem(self, message: str) -> Problem:
        """A problem located on the command line rather than in a file."""
        return Problem(Location(f"command-line override {self.position} {self.given!r}"), "", message)


# `NAME:` before the first `=` scopes an override (a Hydra key never holds a colon).
_SCOPE = re.compile(r"^([a-z][a-z0-9_-]{0,63}):([^=]*(=.*)?)$", re.S)


def parse_overrides(given: list[str] | tuple[str, ...]) -> list[Override]:
    overrides = []
    for position, text in enumerate(given, 1):
        scoped = _SCOPE.match(text) if ":" in text.partition("=")[0] else None
        if scoped:
            overrides.append(Override(text, position, scoped[2], scoped[1]))
        else:
            overrides.append(Override(text, position, text))
    return overrides


def split_output_ref(ref: str) -> tuple[str, str]:
    """`train.model` → (`train`, `model`)."""
    stage, _, output = ref.partition(".")
    return stage, output


@dataclass(frozen=True)
class Lock:
    """The spec with every floating thing pinned; the document stored with each version."""

    name: str
    version: str
    spec_path: str
    code: Mapping[str, Any]
    data: Mapping[str, LockData]
    config: Mapping[str, Any]
    environment: Mapping[str, Any] | None
    hermetic: str
    stages: Mapping[str, StageLock]
    artifacts: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "lock_format": LOCK_FORMAT,
            "name": self.name,
            "version": self.version,
            "spec": self.spec_path,
            "code": dict(self.code),
            "data": {name: data.to_dict() for name, data in self.data.items()},
            "config": dict(self.config),
            "environment": dict(self.environment) if self.environment is not None else None,
            "hermetic": self.hermetic,
            "stages": {name: stage.to_dict() for name, stage in self.stages.items()},
            "artifacts": list(self.artifacts),
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Lock:
        if document.get("lock_format") != LOCK_FORMAT:
            raise ValueError(
                f"lock format {document.get('lock_format')!r} is not {LOCK_FORMAT}; "
                "run `modelspec lock SPEC` with this modelspec to rewrite it"
            )
        return cls(
            name=document["name"],
            version=document["version"],
            spec_path=document["spec"],
            code=document["code"],
            data={name: lock_data(data) for name, data in document["data"].items()},
            config=document["config"],
            environment=document["environment"],
            hermetic=document["hermetic"],
            stages={name: StageLock.from_dict(stage) for name, stage in document["stages"].items()},
            artifacts=tuple(document["artifacts"]),
        )
