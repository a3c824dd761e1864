"""Quality gates in-process: the evaluation (absolute, against an alias, direction, missing
metric or baseline), as properties where natural; and in a real SQLite registry, verdicts
recorded and audited, rejected versions refused by promote until a forced, audited
override, and tampering with a verdict found by `audit --verify`, on SQLite and PostgreSQL. Metrics over versions:
deltas, aliases, rejections, the sparkline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelspec.errors import UsageError
from modelspec.quality import metric_history, sparkline
from modelspec.registry.gates import latest
from modelspec.registry.registry import Registry, VersionDraft
from modelspec.spec.gates import Baseline, Gate, evaluate, improvement, verdict

AUC_08 = Gate("auc", "higher", threshold=0.8)
LATENCY_50 = Gate("latency_ms", "lower", threshold=50)
NO_WORSE = Gate("auc", "higher", vs="production", min_abs_change=-0.005)


def test_an_absolute_threshold_in_each_direction() -> None:
    results = evaluate([AUC_08, LATENCY_50], {"auc": 0.79, "latency_ms": 50}, {})
    assert [(r.passed, r.value, r.why) for r in results] == [(False, 0.79, "0.79 < 0.8"), (True, 50, "50 ≤ 50")]
    assert verdict(results) == "failed"
    assert verdict(evaluate([AUC_08], {"auc": 0.8}, {})) == "passed"  # the boundary passes


def test_a_change_against_an_alias_is_an_improvement_in_the_gates_direction() -> None:
    prod = {"production": Baseline("m@1.0.0", {"auc": 0.85, "latency_ms": 40})}
    worse_by_a_little = evaluate([NO_WORSE], {"auc": 0.846}, prod)[0]
    assert worse_by_a_little.passed and worse_by_a_little.baseline == 0.85
    assert worse_by_a_little.baseline_ref == "m@1.0.0"
    assert not evaluate([NO_WORSE], {"auc": 0.84}, prod)[0].passed
    # Exactly the allowed change passes, though 0.845 - 0.85 is not exactly -0.005 in floats.
    assert evaluate([NO_WORSE], {"auc": 0.845}, prod)[0].passed
    faster = Gate("latency_ms", "lower", vs="production", min_rel_change=0.1)  # at least 10% lower
    assert evaluate([faster], {"latency_ms": 36}, prod)[0].passed
    slower = evaluate([faster], {"latency_ms": 37}, prod)[0]
    assert not slower.passed and "relative change +7.500% < +10.000%" in slower.why


def test_a_missing_metric_fails_and_a_missing_baseline_passes_saying_so() -> None:
    missing = evaluate([AUC_08], {"f1": 0.5}, {})[0]
    assert not missing.passed and missing.value is None
    assert missing.why == "auc was not recorded (metrics: f1)"
    no_alias = evaluate([NO_WORSE], {"auc": 0.5}, {"production": None})[0]
    assert no_alias.passed and no_alias.why == "no baseline: no version is production"
    no_metric = evaluate([NO_WORSE], {"auc": 0.5}, {"production": Baseline("m@1.0.0", {"f1": 0.4})})[0]
    assert no_metric.passed and no_metric.why == "no baseline: m@1.0.0 (production) did not record auc"
    both = Gate("auc", "higher", threshold=0.8, vs="production", min_abs_change=0)
    assert not evaluate([both], {"auc": 0.5}, {"production": None})[0].passed  # the threshold still holds


def test_a_gate_round_trips_through_its_recorded_form() -> None:
    for gate in (AUC_08, LATENCY_50, NO_WORSE, Gate("a", "lower", 1.0, "staging", 0.1, -0.2)):
        assert Gate.from_dict(gate.to_dict()) == gate
        result = evaluate([gate], {"a": 0.5, "auc": 0.9, "latency_ms": 3}, {})[0]
        assert type(result).from_dict(result.to_dict()) == result


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(value=finite, threshold=finite)
def test_directions_mirror_each_other(value: float, threshold: float) -> None:
    """Higher-is-better on x is lower-is-better on -x."""
    up = evaluate([Gate("m", "higher", threshold=threshold)], {"m": value}, {})[0].passed
    down = evaluate([Gate("m", "lower", threshold=-threshold)], {"m": -value}, {})[0].passed
    assert up == down == (value >= threshold)


@given(value=finite, base=finite, limit=st.floats(min_value=-10, max_value=10))
def test_a_change_passes_exactly_when_the_improvement_reaches_it(value: float, base: float, limit: float) -> None:
    for direction in ("higher", "lower"):
        gate = Gate("m", direction, vs="p", min_abs_change=limit)
        result = evaluate([gate], {"m": value}, {"p": Baseline("x@1.0.0", {"m": base})})[0]
        gain = improvement(direction, value, base)
        if abs(gain - limit) > 1e-6 * max(1.0, abs(limit)):  # away from the rounding boundary
            assert result.passed == (gain >= limit)
    same = evaluate([Gate("m", "higher", vs="p", min_abs_change=0)], {"m": base}, {"p": Baseline("x@1", {"m": base})})
    assert same[0].passed  # a version is never worse than itself


# -- in the registry ---------------------------------------------------------------------------


def draft(cid: str, auc: float) -> VersionDraft:
    return VersionDraft(
        name="m",
        spec_version="1.0",
        content_id="blake3:" + (cid + "0" * 64)[:64],
        lock="blake3:" + "1" * 64,
        commit="c" * 40,
        environment=None,
        hermetic=True,
        author="ana",
        host="h",
        tool_version="0.1.0",
        record={"params": {}, "data": {}, "stages": {}, "environment": None, "dirty": False},
        artifacts={},
        metrics={"auc": auc},
    )


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    """A new registry on SQLite, then on PostgreSQL: the gates' queries are dialect-neutral."""
    found = Registry(registry_url)
    yield found
    found.close()


def test_verdicts_are_recorded_and_a_rejected_version_needs_a_forced_promotion(registry: Registry) -> None:
    gates = [AUC_08, NO_WORSE]
    good = registry.register(draft("a1", 0.85))[0]
    assert registry.judge_gates(good, gates, "ana", always=False).verdict == "passed"
    registry.promote("m@1.0.0", "production", "ana")
    bad = registry.register(draft("a2", 0.83))[0]
    judged = registry.judge_gates(bad, gates, "ana", always=False)
    assert (judged.verdict, judged.rejected, [r.passed for r in judged.results]) == ("failed", True, [True, False])
    # The same results again record nothing: a rebuild adds no noise to the log.
    events = len(registry.events())
    assert not registry.judge_gates(bad, gates, "ana", always=False).recorded
    assert len(registry.events()) == events
    with pytest.raises(UsageError, match=r"m@1.0.1 was rejected by its quality gates \(auc: change -0.02") as refused:
        registry.promote("m@1.0.1", "production", "bo")
    assert "--force --reason" in (refused.value.hint or "")
    assert registry.promote("m@1.0.1", "staging", "bo", force_reason="a hotfix") == [["1.0.1", 1.0]]
    found = registry.read(latest, [bad.id])[bad.id]
    assert (found["verdict"], found["actor"]) == ("overridden", "bo")
    assert found["details"]["reason"] == "a hotfix" and found["details"]["alias"] == "staging"
    override = registry.events()[-2]
    assert (override["kind"], override["subject"], override["payload"]["verdict"]) == ("gate", "m@1.0.1", "overridden")
    # The override stands through a rebuild judging the same results; `gate` judges afresh.
    assert registry.judge_gates(bad, gates, "ana", always=False).verdict == "overridden"
    assert registry.judge_gates(bad, gates, "ana", always=True).verdict == "failed"
    assert registry.verify_audit() == ""


def test_an_edited_verdict_is_found_by_audit_verify(registry: Registry) -> None:
    version = registry.register(draft("a1", 0.7))[0]
    registry.judge_gates(version, [AUC_08], "ana", always=False)
    with registry.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE gate_results SET verdict = 'passed'")
    problems = registry.verify_audit()
    assert "gate results: m@1.0.0 gate verdict 1: verdict 'passed' in the table, 'failed' in the log" in problems
    with registry.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM gate_results")
    assert "gate verdict 1 (failed by ana) is missing from the table" in registry.verify_audit()


# -- metrics over versions ---------------------------------------------------------------------


def test_a_sparkline_scales_between_min_and_max_and_samples_long_series() -> None:
    assert sparkline([0.0, 0.5, 1.0, None, 1.0]) == "▁▅█ █"
    assert sparkline([3, 3]) == "▄▄" and sparkline([None]) == ""
    long = sparkline([float(i) for i in range(1000)])
    assert len(long) == 60 and long[0] == "▁" and long[-1] == "█"


def test_metric_history_has_deltas_aliases_and_rejections(registry: Registry, tmp_path: Path) -> None:
    from modelspec.catalog import Catalog
    from modelspec.store.workspace import Workspace

    for cid, auc in (("a1", 0.8), ("a2", 0.85), ("a3", 0.7)):
        registry.register(draft(cid, auc))
    registry.promote("m@1.0.1", "production", "ana")
    registry.judge_gates(registry.resolve("m@1.0.2"), [AUC_08], "ana", always=False)
    catalog = Catalog(Workspace(root=tmp_path, home=tmp_path / ".modelspec"), registry)
    history = metric_history(catalog, "m")
    assert [(p.version, p.status, p.aliases, dict(p.deltas)) for p in history.points] == [
        ("1.0.0", "active", (), {}),
        ("1.0.1", "active", ("production",), {"auc": pytest.approx(0.05)}),
        ("1.0.2", "rejected", (), {"auc": pytest.approx(-0.15)}),
    ]
    assert history.summary("auc") == {"count": 3, "min": 0.7, "max": 0.85, "last": 0.7, "sparkline": "▆█▁"}
    # --since keeps the delta from the version before the cut.
    later = metric_history(catalog, "m", "auc", since=registry.resolve("m@1.0.2").created)
    assert [(p.version, dict(p.deltas)) for p in later.points] == [("1.0.2", {"auc": pytest.approx(-0.15)})]
    with pytest.raises(UsageError, match="no version of m has a metric 'acu'; did you mean 'auc'"):
        metric_history(catalog, "m", "acu")
    with pytest.raises(UsageError, match="no model named 'x'"):
        metric_history(catalog, "x")


def test_verdicts_survive_a_copy_to_postgresql_and_new_ones_follow_them(tmp_path: Path, postgres_url: str) -> None:
    """`registry copy` keeps every verdict's id; the copy's sequence must hand out the next."""
    source = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        version = source.register(draft("a1", 0.7))[0]
        source.judge_gates(version, [AUC_08], "ana", always=False)
        source.promote("m@1.0.0", "production", "bo", force_reason="the only model we have")
        info, problems = source.copy_to(postgres_url)
        assert problems == [] and info["counts"]["gate_results"] == 2
    finally:
        source.close()
    copy = Registry(postgres_url)
    try:
        version = copy.resolve("m@1.0.0")
        assert copy.read(latest, [version.id])[version.id]["verdict"] == "overridden"
        assert copy.judge_gates(version, [AUC_08], "cy", always=True).verdict == "failed"  # a third row, id 3
        assert copy.verify_audit() == ""
    finally:
        copy.close()
