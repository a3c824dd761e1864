"""The audit log as `audit` shows it: its events and, when asked, its verification — the
chain checked against itself and against its anchors (the latest signed checkpoint here,
and the one a push left on the remote), which a log rewritten with its chain recomputed
does not agree with."""

from __future__ import annotations

from typing import Any

from .registry.anchor import anchor_problems
from .registry.registry import Registry
from .store.workspace import Workspace


def audit_log(registry: Registry, workspace: Workspace, verify: bool, limit: int | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"events": registry.events(limit)}
    if verify:
        from .attest.keys import trusted_keys
        from .store.remote_cache import open_remote  # only here: the read commands need no remote

        problems = registry.audit_problems()
        remote = open_remote(workspace.settings, workspace.home)
        trusted = trusted_keys(workspace.settings)
        found, disagree = anchor_problems(registry, workspace.store, workspace.home, trusted, remote)
        problems += disagree
        result["checkpoint"] = found.to_dict() if found else None
        result["ok"] = not problems
        result["problem"] = "; ".join(problems)
        result["problems"] = problems
    return result
