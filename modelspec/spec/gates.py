"""Quality gates: what a spec's `gates:` say and how a version's metrics meet them. Pure.

A gate holds a metric to an absolute `threshold`, or to a change against the metric of the
version an alias serves (`vs:` with `min_abs_change` / `min_rel_change`), or both. The
change is an *improvement*: `value - baseline` when higher is better, `baseline - value`
when lower is, so `min_abs_change: -0.005` reads "no worse than the baseline by more than
0.005" in either direction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import Problem
from .yamlsource import Document

CHANGES = ("min_abs_change", "min_rel_change")
REJECTED = "failed"  # the verdict that makes a version rejected
# A difference of two floats is rounded (0.795 - 0.8 is -0.005000000000000004): a value
# exactly at a gate's boundary passes, within this relative tolerance.
_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Gate:
    metric: str  # for a drift gate, `data`
    direction: str  # higher | lower
    threshold: float | None = None  # for a drift gate, the share of drifted columns that fails it
    vs: str | None = None
    min_abs_change: float | None = None
    min_rel_change: float | None = None
    kind: str = "metric"  # metric | drift (the spec's `drift:`, judged from data profiles)
    ignore: tuple[str, ...] = ()  # a drift gate's columns not compared

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Gate:
        return cls(
            str(data["metric"]),
            str(data["direction"]),
            threshold=data.get("threshold"),
            vs=data.get("vs"),
            min_abs_change=data.get("min_abs_change"),
            min_rel_change=data.get("min_rel_change"),
            kind=str(data.get("kind", "metric")),
            ignore=tuple(data.get("ignore", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        found = {k: v for k, v in asdict(self).items() if v is not None and k not in ("kind", "ignore")}
        return found if self.kind == "metric" else {**found, "kind": self.kind, "ignore": list(self.ignore)}

    def describe(self) -> str:
        """`auc ≥ 0.8`, `auc vs production: change ≥ -0.005`, as a person reads a gate."""
        if self.kind == "drift":
            return f"no data drift vs {self.vs} (dataset drift at {self.threshold:.0%} of the columns)"
        sign = "≥" if self.direction == "higher" else "≤"
        said = [f"{self.metric} {sign} {self.threshold:g}"] if self.threshold is not None else []
        if self.vs is not None:
            limits = []
            if self.min_abs_change is not None:
                limits.append(f"change ≥ {self.min_abs_change:+g}")
            if self.min_rel_change is not None:
                limits.append(f"relative change ≥ {self.min_rel_change:+.2%}")
            said.append(f"{self.metric} vs {self.vs}: {', '.join(limits)} ({self.direction} is better)")
        return "; ".join(said)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The version an alias served when a gate was evaluated (its primary target)."""

    ref: str
    metrics: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: Gate
    passed: bool
    value: float | None  # None: the version did not record the metric
    baseline: float | None = None  # the baseline's value of the metric, when compared
    baseline_ref: str | None = None
    why: str = ""  # the comparison in words: `0.7925 < 0.8`, `no baseline: …`

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate.to_dict(),
            "shown": self.gate.describe(),
            "passed": self.passed,
            "value": self.value,
            "baseline": self.baseline,
            "baseline_version": self.baseline_ref,
            "why": self.why,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(
            Gate.from_dict(data["gate"]),
            bool(data["passed"]),
            data.get("value"),
            data.get("baseline"),
            data.get("baseline_version"),
            str(data.get("why", "")),
        )


@dataclass(frozen=True)
class GateVerdict:
    """A version's gates judged: the verdict it now has, and whether this judgement was
    recorded (a build records one only when the results differ from the newest verdict's)."""

    ref: str
    verdict: str  # passed | failed | overridden (a failure a forced promotion accepted)
    results: tuple[GateResult, ...]
    recorded: bool

    @property
    def rejected(self) -> bool:
        return self.verdict == REJECTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.ref,
            "verdict": self.verdict,
            "rejected": self.rejected,
            "recorded": self.recorded,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], recorded: bool = False) -> GateVerdict:
        results = tuple(GateResult.from_dict(r) for r in data["results"])
        return cls(str(data["version"]), str(data["verdict"]), results, recorded)


def verdict(results: Iterable[GateResult]) -> str:
    """`passed` when every gate passed, else `failed`."""
    return "passed" if all(r.passed for r in results) else "failed"


def evaluate(
    gates: Iterable[Gate | GateResult], metrics: Mapping[str, float], baselines: Mapping[str, Baseline | None]
) -> list[GateResult]:
    """Each gate against a version's `metrics` and, for `vs: ALIAS`, `baselines[ALIAS]` (None:
    the alias serves no version yet); a gate judged already (a drift gate's result) is kept
    as it is. A metric the version did not record fails its gate; a
    baseline that is missing, or lacks the metric, has nothing to compare with: the change
    part passes and says so (the first version must be able to reach production)."""
    return [
        gate if isinstance(gate, GateResult) else _evaluate(gate, metrics, baselines.get(gate.vs) if gate.vs else None)
        for gate in gates
    ]


def _evaluate(gate: Gate, metrics: Mapping[str, float], baseline: Baseline | None) -> GateResult:
    if gate.kind != "metric":  # judged from data profiles by the caller, who did not
        return GateResult(gate, False, None, why=f"a {gate.kind} gate cannot be judged from metrics")
    value = metrics.get(gate.metric)
    if value is None:
        recorded = ", ".join(sorted(metrics)) or "none"
        return GateResult(gate, False, None, why=f"{gate.metric} was not recorded (metrics: {recorded})")
    checks: list[tuple[bool, str]] = []
    if gate.threshold is not None:
        checks.append(_threshold(gate, value))
    base = None
    if gate.vs is not None:
        base = baseline.metrics.get(gate.metric) if baseline is not None else None
        if baseline is None:
            checks.append((True, f"no baseline: no version is {gate.vs}"))
        elif base is None:
            checks.append((True, f"no baseline: {baseline.ref} ({gate.vs}) did not record {gate.metric}"))
        else:
            checks += _changes(gate, value, base, baseline.ref)
    passed = all(ok for ok, _ in checks)
    shown = [text for ok, text in checks if not ok] or [text for _, text in checks]
    return GateResult(gate, passed, value, base, baseline.ref if baseline else None, "; ".join(shown))


def _threshold(gate: Gate, value: float) -> tuple[bool, str]:
    assert gate.threshold is not None
    if gate.direction == "higher":
        ok = value >= gate.threshold
        return ok, f"{value:.6g} {'≥' if ok else '<'} {gate.threshold:g}"
    ok = value <= gate.threshold
    return ok, f"{value:.6g} {'≤' if ok else '>'} {gate.threshold:g}"


def improvement(direction: str, value: float, base: float) -> float:
    return value - base if direction == "higher" else base - value


def _changes(gate: Gate, value: float, base: float, ref: str) -> list[tuple[bool, str]]:
    gain = improvement(gate.direction, value, base)
    checks = []
    if gate.min_abs_change is not None:
        ok = _at_least(gain, gate.min_abs_change)
        word = "≥" if ok else "<"
        checks.append((ok, f"change {gain:+.6g} {word} {gate.min_abs_change:+g} vs {ref} ({base:.6g})"))
    if gate.min_rel_change is not None:
        relative = gain / abs(base) if base else (0.0 if gain == 0 else math.copysign(math.inf, gain))
        ok = _at_least(relative, gate.min_rel_change)
        word = "≥" if ok else "<"
        checks.append((ok, f"relative change {relative:+.3%} {word} {gate.min_rel_change:+.3%} vs {ref} ({base:.6g})"))
    return checks


def _at_least(x: float, limit: float) -> bool:
    return x >= limit or math.isclose(x, limit, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE)


# -- the spec's `gates:` -----------------------------------------------------------------------


def gate_problems(document: Document, data: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say about `gates:`: each needs something to compare with, a
    `vs:` needs a change and a change a `vs:`, and a gate needs a stage that records metrics."""
    gates = data.get("gates")
    if not isinstance(gates, list):
        return []
    stages: dict[str, Any] = data["stages"] if isinstance(data.get("stages"), dict) else {}
    records_metrics = any(isinstance(s, dict) and s.get("metrics") for s in stages.values())
    problems = []
    for i, gate in enumerate(gates):
        if not isinstance(gate, dict):
            continue
        where: tuple[str | int, ...] = ("gates", i)
        changes = [key for key in CHANGES if key in gate]
        if "threshold" not in gate and "vs" not in gate:
            problems.append(
                document.problem(where, "a gate needs a threshold, or vs: ALIAS with min_abs_change or min_rel_change")
            )
        elif "vs" in gate and not changes:
            problems.append(
                document.problem(
                    (*where, "vs"),
                    f"vs: {gate['vs']} needs min_abs_change or min_rel_change (the change allowed against it)",
                )
            )
        if "vs" not in gate:
            problems += [
                document.problem((*where, key), f"{key} compares with a baseline: add vs: ALIAS (e.g. production)")
                for key in changes
            ]
        if gate.get("vs") == "latest":
            problems.append(document.problem((*where, "vs"), "latest is not an alias: name one (e.g. production)"))
        if not records_metrics and isinstance(gate.get("metric"), str) and stages:
            problems.append(
                document.problem(
                    (*where, "metric"),
                    f"no stage records metrics, so {gate['metric']!r} can never pass: "
                    "add metrics: OUTPUT to the stage that writes it",
                )
            )
    return problems


def gates_of(data: Mapping[str, Any]) -> tuple[Gate, ...]:
    """The spec's `gates:`, then its `drift:` as a gate."""
    found = [Gate.from_dict(g) for g in data.get("gates") or ()]
    drift = data.get("drift")
    if isinstance(drift, dict):
        share, ignore = float(drift.get("share", 0.5)), tuple(drift.get("ignore", ()))
        found.append(Gate("data", "lower", share, str(drift.get("vs", "production")), kind="drift", ignore=ignore))
    return tuple(found)


def drift_problems(document: Document, data: Mapping[str, Any]) -> list[Problem]:
    """A `drift:` gate needs a data input whose profile it can compare: a CSV or Parquet file."""
    if not isinstance(data.get("drift"), dict):
        return []
    sources: dict[str, Any] = data["data"] if isinstance(data.get("data"), dict) else {}
    paths = [s.get("path") for s in sources.values() if isinstance(s, dict)]
    if any(isinstance(p, str) and p.lower().endswith((".csv", ".parquet")) for p in paths):
        return []
    return [document.problem(("drift",), "drift compares data profiles, and no data input is a .csv or .parquet file")]
