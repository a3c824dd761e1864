"""What a cluster worker is sent to run one stage: digests, never bytes or workspace objects.

A `StageTask` is plain data (it round-trips through JSON): the action key, the stage as
its lock has it, the code snapshot and inputs as entries of the store, every object
digest they need, the environment's pinned lock entry, the limits, the sandbox the key was
computed for, the remote the worker reads and writes through, and the name of the build's
cancel event. The worker fetches the objects by digest from the remote, creates the
environment from the lock in its own cache, and runs the stage in its own sandbox.

What it sends back (`TaskReply`) is plain data too: the result (its outputs already on the
remote, its action-cache entry written last) or the failure, with the worker that ran it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..sandbox.limits import Limits
from ..spec.lockdata import StageLock
from ..store.blobs import RemoteConfig
from ..store.protocol import Entry
from ..units import parse_size

TOPIC = "modelspec-stage"  # the Dask event topic on which a worker says it starts a stage


# A stage's `resources:` as Dask worker resources (`dask worker --resources "GPU=1 MEMORY=8e9"`).
DASK_RESOURCES = {"cpus": "CPU", "memory": "MEMORY", "gpus": "GPU"}


def dask_resources(resources: Mapping[str, Any] | None) -> dict[str, float]:
    """`{cpus: 2, memory: 8GiB, gpus: 1}` → `{"CPU": 2, "MEMORY": 8589934592, "GPU": 1}`."""
    found: dict[str, float] = {}
    for name, value in (resources or {}).items():
        found[DASK_RESOURCES[name]] = float(parse_size(value)) if name == "memory" else float(value)
    return found


@dataclass(frozen=True)
class StageTask:
    key: str
    node: str
    stage: StageLock
    code: Entry
    inputs: Mapping[str, tuple[str, Entry]]  # input id → (basename, entry)
    objects: tuple[str, ...]  # every object the code, the inputs and the environment file need
    environment: Mapping[str, Any] | None  # the lock's pinned `environment` entry
    source_date_epoch: int
    limits: Limits
    isolation: str  # the sandbox the key was computed for: "bwrap" or "none"
    remote: RemoteConfig
    cancel: str  # the name of the build's Dask event that stops its stages
    record: bool = True  # write the remote action-cache entry (a reproduction does not)
    resources: Mapping[str, float] = field(default_factory=dict)  # Dask resources it asks for

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "node": self.node,
            "stage": self.stage.to_dict(),
            "code": self.code.to_dict(),
            "inputs": {i: [basename, entry.to_dict()] for i, (basename, entry) in self.inputs.items()},
            "objects": list(self.objects),
            "environment": dict(self.environment) if self.environment is not None else None,
            "source_date_epoch": self.source_date_epoch,
            "limits": asdict(self.limits),
            "isolation": self.isolation,
            "remote": asdict(self.remote),
            "cancel": self.cancel,
            "record": self.record,
            "resources": dict(self.resources),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageTask:
        return cls(
            key=d["key"],
            node=d["node"],
            stage=StageLock.from_dict(d["stage"]),
            code=Entry.from_dict(d["code"]),
            inputs={i: (str(basename), Entry.from_dict(entry)) for i, (basename, entry) in d["inputs"].items()},
            objects=tuple(d["objects"]),
            environment=d["environment"],
            source_date_epoch=int(d["source_date_epoch"]),
            limits=Limits(**d["limits"]),
            isolation=d["isolation"],
            remote=RemoteConfig(**d["remote"]),
            cancel=d["cancel"],
            record=bool(d["record"]),
            resources=dict(d["resources"]),
        )


@dataclass(frozen=True)
class TaskReply:
    """A worker's answer: `result` (an ActionResult's dict) or `reason` and the log's tail."""

    worker: str
    result: Mapping[str, Any] | None = None
    reason: str = ""
    log_tail: str = ""
    log: str | None = None  # the log object's digest on the remote, when there is one
    objects: tuple[str, ...] = ()  # every object of the result, on the remote
    started: float = 0.0
    ended: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "objects": list(self.objects)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskReply:
        return cls(**{**d, "objects": tuple(d.get("objects", ()))})
