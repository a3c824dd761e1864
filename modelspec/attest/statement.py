"""The provenance of a version: an in-toto Statement v1 whose predicate is SLSA Provenance v1.

Pure: the caller hands in what the build knew (pinned inputs, artifacts hashed, logs) and
gets the statement as a dict. What each field holds:

- `subject`: every artifact file, named by its path in an export (`stage/declared/path`,
  and below it for a directory), with `sha256` and `blake3` of its bytes;
- `buildDefinition.buildType` = BUILD_TYPE, whose parameters are
  - `externalParameters`: what a person chose: the spec file, the model's name and version
    line, the command-line overrides;
  - `internalParameters`: what modelspec derived: the lock's digest, the content id, the
    hermetic mode, the environment's digest, and each artifact's store entry;
  - `resolvedDependencies`: the source at its commit (`gitCommit`), each data input
    (a snapshot, or an upstream version as `modelspec:NAME@VERSION`), the environment lock;
- `runDetails`: the builder (BUILDER_ID, modelspec's version), the content id as the
  invocation id, start and finish times, and byproducts: each stage's log and the metrics.

Digests are lowercase hex under their algorithm's name, as in-toto's DigestSet has them.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..digest import digest_json, hex_of

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://modelspec.dev/buildtypes/spec-build/v1"
BUILDER_ID = "https://modelspec.dev/builder/local/v1"


@dataclass(frozen=True)
class Subject:
    name: str  # the file's path in an export
    sha256: str  # hex
    blake3: str  # hex

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {"sha256": self.sha256, "blake3": self.blake3}}


@dataclass(frozen=True)
class BuildFacts:
    """What a registration knows about the build it records."""

    name: str
    spec_version: str
    spec_path: str
    overrides: Sequence[str]
    content_id: str
    lock: str  # the lock object's digest
    hermetic: bool
    commit: str
    dirty: bool
    environment: Mapping[str, Any] | None  # the lock's environment (digest, kind, file, file_digest)
    data: Sequence[dict[str, Any]]  # resolved dependencies of the data inputs (see `data_dependency`)
    artifacts: Mapping[str, Mapping[str, Any]]  # ref → store entry, with its export path
    logs: Mapping[str, str]  # stage → log digest
    metrics: Mapping[str, float]
    tool_version: str
    started: float
    finished: float


def blake3_set(digest: str) -> dict[str, str]:
    return {"blake3": hex_of(digest)}


def data_dependency(name: str, uri: str, digest: str | None, **annotations: Any) -> dict[str, Any]:
    """A resolved dependency for one data input (`digest` None: the lock only checked the path)."""
    found: dict[str, Any] = {"name": f"data:{name}", "uri": uri}
    if digest:
        found["digest"] = blake3_set(digest)
    if annotations:
        found["annotations"] = annotations
    return found


def statement(facts: BuildFacts, subjects: Sequence[Subject]) -> dict[str, Any]:
    dependencies: list[dict[str, Any]] = []
    if facts.commit:
        source = {"name": "source", "uri": f"git+commit:{facts.commit}", "digest": {"gitCommit": facts.commit}}
        if facts.dirty:
            source["annotations"] = {"dirty": True}  # built from working files that differ from it
        dependencies.append(source)
    dependencies.extend(facts.data)
    if facts.environment:
        env = facts.environment
        annotations = {"kind": env.get("kind"), "digest": env["digest"]}
        found: dict[str, Any] = {"name": "environment", "annotations": annotations}
        if env.get("file_digest"):
            found.update(uri=f"file:{env.get('file')}", digest=blake3_set(str(env["file_digest"])))
        else:
            found.update(digest=blake3_set(str(env["digest"])))
        dependencies.append(found)
    byproducts = [{"name": f"log:{stage}", "digest": blake3_set(log)} for stage, log in sorted(facts.logs.items())]
    byproducts.append(
        {"name": "metrics", "digest": blake3_set(digest_json(dict(facts.metrics))), "annotations": dict(facts.metrics)}
    )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [s.to_dict() for s in sorted(subjects, key=lambda s: s.name)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "spec": facts.spec_path,
                    "name": facts.name,
                    "version": facts.spec_version,
                    "overrides": list(facts.overrides),
                },
                "internalParameters": {
                    "lock": facts.lock,
                    "contentId": facts.content_id,
                    "hermetic": facts.hermetic,
                    "environment": facts.environment["digest"] if facts.environment else None,
                    "artifacts": {ref: dict(entry) for ref, entry in sorted(facts.artifacts.items())},
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"modelspec": facts.tool_version}},
                "metadata": {
                    "invocationId": facts.content_id,
                    "startedOn": rfc3339(facts.started),
                    "finishedOn": rfc3339(facts.finished),
                },
                "byproducts": byproducts,
            },
        },
    }


def rfc3339(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
