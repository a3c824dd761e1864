"""What changed between two versions: code, data, config, environment and metrics.

Pure over the two locks, metric sets and environment lock texts it is given; the caller
supplies the changed code paths (from git) when the commits are still available.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

from ..flat import flatten

_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def packages_of(lock_text: str, file_name: str) -> dict[str, str]:
    """name → version from a hash-pinned requirements lock or a uv.lock."""
    if file_name.endswith("uv.lock"):
        document = tomllib.loads(lock_text)
        return {
            re.sub(r"[-_.]+", "-", p["name"]).lower(): str(p.get("version", "")) for p in document.get("package", [])
        }
    found = {}
    for line in lock_text.splitlines():
        match = _PINNED.match(line.strip())
        if match:
            found[_normal(match.group(1))] = match.group(2)
    return found


def _normal(name: str) -> str:
    """PEP 503: `Zope_Interface`, `zope.interface` and `zope-interface` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def diff_mappings(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """key → [old, new] for every key whose value differs (None for a missing side)."""
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }


def diff_versions(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    lock_a: Mapping[str, Any],
    lock_b: Mapping[str, Any],
    packages_a: Mapping[str, str],
    packages_b: Mapping[str, str],
    changed_paths: list[str] | None,
) -> dict[str, Any]:
    """`a`/`b` are the versions' dicts (with `metrics`); the locks are their lock documents."""
    stages_a, stages_b = lock_a["stages"], lock_b["stages"]
    code_changed = sorted(
        s
        for s in set(stages_a) | set(stages_b)
        if (stages_a.get(s) or {}).get("code", {}).get("digest")
        != (stages_b.get(s) or {}).get("code", {}).get("digest")
    )
    data = {
        name: {"from": (old or {}).get("digest"), "to": (new or {}).get("digest")}
        for name, (old, new) in diff_mappings(lock_a["data"], lock_b["data"]).items()
    }
    packages = diff_mappings(packages_a, packages_b)
    metrics_a, metrics_b = a.get("metrics", {}), b.get("metrics", {})
    return {
        "from": a["ref"],
        "to": b["ref"],
        "code": {
            "from": lock_a["code"].get("commit"),
            "to": lock_b["code"].get("commit"),
            "stages_changed": code_changed,
            "paths_changed": changed_paths,
        },
        "data": data,
        "config": diff_mappings(flatten(lock_a["config"]), flatten(lock_b["config"])),
        "environment": {
            "from": (lock_a.get("environment") or {}).get("digest"),
            "to": (lock_b.get("environment") or {}).get("digest"),
            "added": {k: new for k, (old, new) in packages.items() if old is None},
            "removed": {k: old for k, (old, new) in packages.items() if new is None},
            "changed": {k: [old, new] for k, (old, new) in packages.items() if old is not None and new is not None},
        },
        "metrics": {
            key: {
                "from": metrics_a.get(key),
                "to": metrics_b.get(key),
                "delta": _delta(metrics_a.get(key), metrics_b.get(key)),
            }
            for key in sorted(set(metrics_a) | set(metrics_b))
        },
    }


def _delta(old: float | None, new: float | None) -> float | None:
    return None if old is None or new is None else round(new - old, 12)
