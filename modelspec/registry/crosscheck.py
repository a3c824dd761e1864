"""`verify --all`'s comparison of the registry with the store: each version's rows must say
what its lock and metrics objects in the store say. A registry whose rows were rewritten,
or that was swapped for another one with a consistent audit chain, is named, not trusted."""

from __future__ import annotations

import json
from typing import Any

from ..errors import StoreError, UsageError
from ..flat import flatten_metrics
from ..spec.refs import parse_version
from ..store.protocol import ObjectStore
from .registry import ModelVersion, Registry


def registry_problems(registry: Registry, store: ObjectStore) -> list[str]:
    """One sentence per disagreement between a version's rows and its objects."""
    versions = [*registry.versions_by_status("active"), *registry.versions_by_status("retired")]
    metrics = registry.metrics_of([v.id for v in versions])
    problems: list[str] = []
    for version in sorted(versions, key=lambda v: v.id):
        problems += _version_problems(version, metrics[version.id], store)
    return problems


def _version_problems(version: ModelVersion, metrics: dict[str, float], store: ObjectStore) -> list[str]:
    try:
        lock: dict[str, Any] = json.loads(store.read_bytes(version.lock))
    except (StoreError, ValueError) as exc:
        return [f"{version.ref}: its lock {version.lock} cannot be read from the store ({exc})"]
    problems = []
    environment = (lock.get("environment") or {}).get("digest")
    recorded = {
        "name": (version.name, lock.get("name")),
        "commit": (version.commit, str((lock.get("code") or {}).get("commit", ""))),
        "environment": (version.environment, environment),
    }
    for what, (row, in_lock) in recorded.items():
        if row != in_lock:
            problems.append(f"{version.ref}: the registry says {what} {row!r}, its lock says {in_lock!r}")
    if not _version_fits(version.version, str(lock.get("version", ""))):
        in_lock = lock.get("version")
        problems.append(f"{version.ref}: the registry's version does not fit its lock's version {in_lock!r}")
    if version.status == "active":  # a retired version's outputs were removed on purpose
        problems += _metrics_problems(version, lock, metrics, store)
    return problems


def _version_fits(version: str, in_lock: str) -> bool:
    try:
        major, minor, patch = parse_version(in_lock)
    except UsageError:
        return False
    return version == f"{major}.{minor}.{patch}" if patch is not None else version.startswith(f"{major}.{minor}.")


def _metrics_problems(
    version: ModelVersion, lock: dict[str, Any], metrics: dict[str, float], store: ObjectStore
) -> list[str]:
    found: dict[str, float] = {}
    where: dict[str, str] = {}
    for stage, info in sorted(lock.get("stages", {}).items()):
        output = info.get("metrics")
        if not output:
            continue
        entry = version.record.get("stages", {}).get(stage, {}).get("outputs", {}).get(output)
        if entry is None:
            return [f"{version.ref}: its record names no metrics output {stage}.{output}"]
        try:
            document = json.loads(store.read_bytes(entry["digest"]))
        except (StoreError, ValueError) as exc:
            return [f"{version.ref}: its metrics output {stage}.{output} cannot be read from the store ({exc})"]
        flat = flatten_metrics(document) if isinstance(document, dict) else {}
        found.update(flat)
        where.update({key: f"{stage}.{output}" for key in flat})
    problems = []
    for key in sorted(set(found) | set(metrics)):
        if found.get(key) != metrics.get(key):
            source = where.get(key, "its metrics outputs")
            problems.append(
                f"{version.ref}: metric {key} is {metrics.get(key)} in the registry but {found.get(key)} in {source}"
            )
    return problems
