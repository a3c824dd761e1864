"""Retention policies and the retention plan: which versions keep their artifacts, and why.

`plan_retention` is pure: given every version's facts, the policies and the time, it
returns the versions to retire (each with the reason) and the kept ones with the rules
that keep them. A version is kept if any rule keeps it; a retired version keeps its
metadata forever, only its bytes go (gc.py does that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..registry.facts import VersionFacts
from ..units import parse_duration

RULE_KEYS = ("keep_last", "keep_best", "max_age", "keep_aliased", "min_keep")


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int | None = None
    keep_best: Mapping[str, Any] | None = None  # {metric, count, direction}
    max_age: float | None = None  # seconds
    keep_aliased: bool = True
    min_keep: int = 0

    @property
    def declared(self) -> bool:
        """Without any deletion rule, nothing is ever retired."""
        return self.keep_last is not None or self.keep_best is not None or self.max_age is not None

    @classmethod
    def from_dict(cls, rules: Mapping[str, Any]) -> RetentionPolicy:
        max_age = rules.get("max_age")
        return cls(
            keep_last=rules.get("keep_last"),
            keep_best=rules.get("keep_best"),
            max_age=parse_duration(max_age) if max_age is not None else None,
            keep_aliased=bool(rules.get("keep_aliased", True)),
            min_keep=int(rules.get("min_keep", 0)),
        )


def merge_rules(defaults: Mapping[str, Any], spec_rules: Mapping[str, Any]) -> dict[str, Any]:
    """Workspace defaults, overridden rule by rule by the spec's `retention:`."""
    merged = {k: v for k, v in defaults.items() if k in RULE_KEYS}
    merged.update({k: v for k, v in spec_rules.items() if k in RULE_KEYS})
    return merged


@dataclass
class RetentionPlan:
    keep: dict[int, list[str]] = field(default_factory=dict)  # version id → rules that keep it
    retire: dict[int, str] = field(default_factory=dict)  # version id → why it goes
    refs: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "keep": {self.refs[i]: rules for i, rules in sorted(self.keep.items())},
            "retire": {self.refs[i]: reason for i, reason in sorted(self.retire.items())},
        }


def plan_retention(
    versions_by_model: Mapping[str, list[VersionFacts]], policies: Mapping[str, RetentionPolicy], now: float
) -> RetentionPlan:
    plan = RetentionPlan()
    for name, versions in versions_by_model.items():
        policy = policies.get(name, RetentionPolicy())
        active = [v for v in versions if v.status == "active"]
        for version in versions:
            plan.refs[version.id] = version.ref
        for version_id, rules in _keepers(active, policy, now).items():
            if rules:
                plan.keep[version_id] = rules
            else:
                plan.retire[version_id] = _why_not(policy)
    return plan


def _keepers(active: list[VersionFacts], policy: RetentionPolicy, now: float) -> dict[int, list[str]]:
    rules: dict[int, list[str]] = {v.id: [] for v in active}
    newest_first = sorted(active, key=lambda v: (v.created, v.id), reverse=True)
    if not policy.declared:
        for v in active:
            rules[v.id].append("no retention policy")
        return rules
    if policy.keep_last is not None:
        for v in newest_first[: policy.keep_last]:
            rules[v.id].append(f"keep_last {policy.keep_last}")
    if policy.keep_best is not None:
        metric = str(policy.keep_best["metric"])
        count = int(policy.keep_best.get("count", 1))
        lowest = policy.keep_best.get("direction", "max") == "min"
        scored = [v for v in active if metric in v.metrics]
        scored.sort(key=lambda v: (v.metrics[metric] if lowest else -v.metrics[metric], -v.created))
        for v in scored[:count]:
            rules[v.id].append(f"keep_best {count} by {metric}")
    if policy.max_age is not None:
        for v in active:
            if now - v.created <= policy.max_age:
                rules[v.id].append("max_age")
    for v in active:
        # What an alias serves now is never retired (deploy-config names its files); the
        # policy's keep_aliased decides only about previous targets (what a rollback needs).
        rules[v.id] += [f"alias {a}" for a in v.aliases]
        if policy.keep_aliased:
            rules[v.id] += [f"previous target of alias {a}" for a in v.previous_aliases]
    for v in active:
        if v.pinned:
            rules[v.id].append("pinned")
    for v in newest_first[: policy.min_keep]:
        if not rules[v.id]:
            rules[v.id].append(f"min_keep {policy.min_keep}")
    return rules


def _why_not(policy: RetentionPolicy) -> str:
    parts = []
    if policy.keep_last is not None:
        parts.append(f"not among the last {policy.keep_last}")
    if policy.keep_best is not None:
        parts.append(f"not among the best {policy.keep_best.get('count', 1)} by {policy.keep_best['metric']}")
    if policy.max_age is not None:
        parts.append("older than max_age")
    parts.append("not aliased" if policy.keep_aliased else "no alias points to it")
    parts.append("not pinned")
    return ", ".join(parts)
