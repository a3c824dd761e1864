"""The data profile of each tabular input of a version (a CSV or Parquet file), taken once
per data digest and kept as a small object in the store: `modelspec drift` compares
versions by their profiles alone, so it works after their data was garbage-collected.
And the spec's `drift:` gate, judged from those profiles."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..digest import canonical_json, hex_of
from ..drift.compare import DATASET_SHARE, compare
from ..drift.profile import is_tabular, profile_file
from ..spec.gates import Gate, GateResult
from ..spec.lockdata import PathData
from ..store.owner import temp_prefix
from ..store.protocol import ObjectStore
from ..store.statcache import StatCache
from ..store.workspace import Workspace
from .graph import ResolvedSpec

if TYPE_CHECKING:  # SQLAlchemy is imported only when a build actually registers something
    from ..registry.gates import Check
    from ..registry.registry import ModelVersion, Registry


def data_profiles(workspace: Workspace, item: ResolvedSpec, statcache: StatCache) -> dict[str, str]:
    """Input name → the digest of its profile, for each tabular file input of the spec."""
    found = {}
    for name, data in sorted(item.lock.data.items()):
        if isinstance(data, PathData) and data.entry.get("type") == "file" and is_tabular(data.path):
            found[name] = profile_digest(workspace, item.spec.repo_root, data, statcache)
    return found


def profile_digest(workspace: Workspace, repo_root: Path, data: PathData, statcache: StatCache) -> str:
    """The profile of the locked bytes, from the index of profiles by data digest when it
    was taken before (`.modelspec/profiles/`)."""
    store = workspace.store
    index = workspace.home / "profiles" / hex_of(data.digest)
    try:
        known = index.read_text().strip()
        if store.has(known):
            return known
    except (FileNotFoundError, ValueError):
        pass
    path, temporary = _locked_bytes(workspace, repo_root, data, statcache)
    try:
        profile = profile_file(path, data.path)
    finally:
        if temporary:
            path.unlink(missing_ok=True)
    digest = store.put_bytes(canonical_json(profile))
    store.write_file(index, digest.encode())
    return digest


def _locked_bytes(workspace: Workspace, repo_root: Path, data: PathData, statcache: StatCache) -> tuple[Path, bool]:
    """A path holding exactly the locked bytes: the working file while it still has them
    (its digest known to the stat cache, so nothing is read twice), else a temporary copy
    of the snapshot (True)."""
    path = repo_root / data.path
    try:
        if statcache.digest(path) == data.digest:
            return path, False
    except OSError:
        pass
    store = workspace.store
    handle, temp = tempfile.mkstemp(prefix=f"{temp_prefix(store.tmp)}profile-", dir=store.tmp)
    with os.fdopen(handle, "wb") as out, store.open(data.digest) as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            out.write(chunk)
    return Path(temp), True


def drift_results(store: ObjectStore, registry: Registry, version: ModelVersion, gates: Iterable[Gate]) -> list[Check]:
    """The gates, each drift gate replaced by its result (judged from data profiles); the
    metric gates are evaluated by the registry, against its baselines, in one transaction."""
    return [judge_drift(store, registry, version, gate) if gate.kind == "drift" else gate for gate in gates]


def judge_drift(store: ObjectStore, registry: Registry, version: ModelVersion, gate: Gate) -> GateResult:
    """A drift gate: failed when an input's data drifted (a dataset drift) from that of the
    version `gate.vs` serves. Without that version, or a profile of the same input, there is
    nothing to compare with, and it passes, saying so."""
    from ..registry.registry import primary_target

    mine = dict(version.record.get("profiles") or {})
    if not mine:
        return GateResult(gate, False, None, why="no data profile: no input of this version is a CSV or Parquet file")
    served = registry.alias_targets(version.name, str(gate.vs))
    if not served:
        return GateResult(gate, True, None, why=f"no baseline: no version is {gate.vs}")
    base = primary_target(served)
    theirs = dict(base.record.get("profiles") or {})
    reports = []
    for name in sorted(set(mine) & set(theirs)):
        reference, current = _profile(store, theirs[name]), _profile(store, mine[name])
        if "columns" in reference and "columns" in current:  # else one was not profiled (no pyarrow)
            labels = (base.ref, version.ref, name)
            reports.append(compare(reference, current, labels, gate.ignore, gate.threshold or DATASET_SHARE))
    if not reports:
        why = f"no baseline: {base.ref} has no profile of these inputs"
        return GateResult(gate, True, None, baseline_ref=base.ref, why=why)
    worst = max(reports, key=lambda r: r.share)
    said = "; ".join(
        f"{r.input}: {len(r.drifted)} of {len(r.compared)} columns drifted ({r.share:.0%})"
        + (f": {', '.join(c.column for c in r.drifted)}" if r.drifted else "")
        for r in reports
    )
    passed = not any(r.dataset_drift for r in reports)
    return GateResult(gate, passed, round(worst.share, 6), baseline_ref=base.ref, why=f"{said} vs {base.ref}")


def _profile(store: ObjectStore, digest: str) -> dict[str, Any]:
    profile: dict[str, Any] = json.loads(store.read_bytes(digest))
    return profile
