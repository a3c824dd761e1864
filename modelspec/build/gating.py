"""A build's quality gates: judged against the registry after each build (a failed one makes
the version rejected), and, on a no-op build, not judged again when nothing they depend on
could have changed, so that the build need not open the registry (importing SQLAlchemy alone
costs ~0.3 s).

A verdict depends on the gates, the version (its metrics and profiles never change) and
what the registry says about the baselines (which version an alias serves). A local
registry is written only through this workspace, and each write moves the store's record of
its head (`registry/head.py`): an unchanged head means an unchanged registry. A shared
registry (`registry:` URL) can change behind the head, so there the gates are always judged.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..digest import digest_json
from ..spec.gates import GateVerdict
from ..spec.model import Spec
from ..store.workspace import Workspace
from .loading import registry_url
from .profiles import drift_results
from .registration import actor

if TYPE_CHECKING:
    from ..registry.registry import Registry


def known_verdict(workspace: Workspace, ref: str, spec: Spec) -> GateVerdict | None:
    """The verdict this build would get, when the last judgement of the same gates of the
    same version saw the registry as it still is; else None (judge them)."""
    try:
        known: dict[str, Any] = json.loads(_memo(workspace, spec).read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    if known.get("basis") != _basis(workspace, ref, spec):
        return None
    try:
        return GateVerdict.from_dict(known["verdict"])
    except (KeyError, TypeError, ValueError):
        return None


def judge_gates(workspace: Workspace, registry: Registry, ref: str, spec: Spec) -> GateVerdict:
    """The spec's gates against version `ref` (just registered, or found registered): a
    failed gate makes it rejected. Gates are not in the lock, so not in the content id."""
    version = registry.resolve(ref)
    checks = drift_results(workspace.store, registry, version, spec.gates)
    found = registry.judge_gates(version, checks, actor(spec.repo_root), always=False)
    basis = _basis(workspace, ref, spec)  # the head as this judgement left it
    if basis is not None:
        memo = {"basis": basis, "verdict": found.to_dict()}
        workspace.store.write_file(_memo(workspace, spec), json.dumps(memo, sort_keys=True).encode())
    return found


def _basis(workspace: Workspace, ref: str, spec: Spec) -> dict[str, Any] | None:
    """What a verdict was judged from; None for a shared registry, whose head this store
    does not follow."""
    from ..registry.head import HEAD_FILE

    if registry_url(workspace):
        return None
    try:
        head = (workspace.home / HEAD_FILE).read_text()
    except FileNotFoundError:
        return None
    return {"version": ref, "gates": digest_json([g.to_dict() for g in spec.gates]), "head": head}


def _memo(workspace: Workspace, spec: Spec) -> Any:
    return workspace.home / "gates" / f"{spec.name}.json"
