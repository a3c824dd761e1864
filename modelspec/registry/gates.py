"""The verdicts of a version's quality gates: each evaluation (at its build, by `modelspec
gate`) and each forced promotion that overrides a failure is a row of `gate_results` and a
`gate` event; the newest row is the version's verdict. A version whose verdict is `failed`
is *rejected*: promote and registered inputs refuse it until a forced promotion."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from ..errors import UsageError
from ..spec.gates import REJECTED, Baseline, Gate, GateResult, GateVerdict, evaluate, verdict
from . import tables as t
from .aliases import primary_target
from .audit import Write
from .queries import among, metrics_of, targets
from .versions import ModelVersion

Check = Gate | GateResult  # a gate to evaluate, or one judged already (a drift gate, from profiles)


def judge(w: Write, version: ModelVersion, gates: Iterable[Check], actor: str, always: bool) -> GateVerdict:
    """Evaluate `gates` against the version's recorded metrics and, for `vs: ALIAS`, the
    metrics of the version the alias serves now (its primary target), in one transaction.
    Recorded when `always` (`modelspec gate`), else only when the results differ from the
    newest verdict's: rebuilding the same content against the same baseline adds nothing to
    the log, and keeps a forced promotion's override."""
    gates = tuple(gates)
    metrics = metrics_of(w.conn, [version.id]).get(version.id, {})
    baselines: dict[str, Baseline | None] = {}
    for alias in sorted({g.vs for g in gates if isinstance(g, Gate) and g.vs}):
        served = targets(w.conn, version.name, alias)
        if served:
            primary = primary_target(served)
            baselines[alias] = Baseline(primary.ref, metrics_of(w.conn, [primary.id]).get(primary.id, {}))
        else:
            baselines[alias] = None
    results = tuple(evaluate(gates, metrics, baselines))
    shown = [r.to_dict() for r in results]
    newest = latest(w.conn, [version.id]).get(version.id)
    if not always and newest is not None and newest["details"].get("results") == json.loads(json.dumps(shown)):
        return GateVerdict(version.ref, newest["verdict"], results, recorded=False)
    found = verdict(results)
    record(w, version, found, {"results": shown}, actor)
    return GateVerdict(version.ref, found, results, recorded=True)


def record(w: Write, version: ModelVersion, verdict: str, details: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """Append a verdict (passed | failed | overridden) with its details; returns it as read back."""
    now = w.clock()
    text = json.dumps(details, sort_keys=True)
    w.conn.execute(
        sa.insert(t.gate_results).values(version_id=version.id, time=now, actor=actor, verdict=verdict, details=text)
    )
    w.event("gate", version.ref, actor, {"verdict": verdict, **details, "at": now})
    return {"verdict": verdict, "time": now, "actor": actor, "details": json.loads(text)}


def latest(conn: sa.Connection, version_ids: list[int]) -> dict[int, dict[str, Any]]:
    """version id → its newest verdict {verdict, time, actor, details}, for those evaluated."""
    g = t.gate_results.c
    found: dict[int, dict[str, Any]] = {}
    for ids in among(conn, g.version_id, version_ids):
        newest = sa.select(sa.func.max(g.id)).where(ids).group_by(g.version_id).scalar_subquery()
        for r in conn.execute(sa.select(t.gate_results).where(g.id.in_(newest))):
            found[r.version_id] = _shown(r)
    return found


def _shown(r: Any) -> dict[str, Any]:
    return {"verdict": r.verdict, "time": r.time, "actor": r.actor, "details": json.loads(r.details)}


def failed_gates(found: Mapping[str, Any]) -> str:
    """`auc: 0.71 < 0.8; …`: why a verdict failed, from its details."""
    return "; ".join(
        f"{r['gate']['metric']}: {r.get('why', '')}" for r in found["details"].get("results", []) if not r["passed"]
    )


def accept(w: Write, version: ModelVersion, alias: str, actor: str, force_reason: str | None) -> None:
    """Before promoting: a rejected version is refused, unless `force_reason` says why it
    ships anyway; then the override (who, why, to which alias) becomes its verdict."""
    found = latest(w.conn, [version.id]).get(version.id)
    if found is None or found["verdict"] != REJECTED:
        return
    if force_reason is None:
        raise rejected_error(version, found, "be promoted", alias)
    overridden = {"reason": force_reason, "alias": alias, "results": found["details"].get("results", [])}
    record(w, version, "overridden", overridden, actor)


def rejected_error(version: ModelVersion, found: Mapping[str, Any], doing: str, alias: str = "ALIAS") -> UsageError:
    return UsageError(
        f"{version.ref} was rejected by its quality gates ({failed_gates(found)}): it cannot {doing}",
        hint=f'promote it anyway with `modelspec promote {version.ref} {alias} --force --reason "…"` (audited), '
        f"or build a version that passes",
    )
