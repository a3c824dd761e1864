"""The retention plan is pure: each rule alone, combined, and the edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelspec.errors import UsageError
from modelspec.registry.facts import VersionFacts
from modelspec.retention.policy import RetentionPolicy, merge_rules, parse_duration, plan_retention

DAY = 86400.0
NOW = 100 * DAY


def versions(count: int = 6, **overrides: dict[int, dict]) -> list[VersionFacts]:
    """Version i was created i days ago... newest last: v1 is oldest; auc rises then falls."""
    aucs = [0.70, 0.90, 0.80, 0.85, 0.60, 0.75, 0.65, 0.95, 0.50, 0.55, 0.72, 0.71]
    made = []
    for i in range(1, count + 1):
        extra = overrides.get("facts", {}).get(i, {})
        made.append(
            VersionFacts(
                id=i,
                ref=f"m@1.0.{i - 1}",
                created=NOW - (count - i + 1) * DAY,
                status="active",
                metrics={"auc": aucs[i - 1]},
                **extra,
            )
        )
    return made


def kept(policy: dict, facts: list[VersionFacts], now: float = NOW) -> set[int]:
    plan = plan_retention({"m": facts}, {"m": RetentionPolicy.from_dict(policy)}, now)
    assert set(plan.keep) | set(plan.retire) == {f.id for f in facts if f.status == "active"}
    assert not set(plan.keep) & set(plan.retire)
    return set(plan.keep)


def test_no_policy_keeps_everything() -> None:
    assert kept({}, versions()) == {1, 2, 3, 4, 5, 6}


def test_keep_last() -> None:
    assert kept({"keep_last": 2, "keep_aliased": False}, versions()) == {5, 6}


def test_keep_best_max_and_min() -> None:
    assert kept({"keep_best": {"metric": "auc", "count": 2}, "keep_aliased": False}, versions()) == {2, 4}
    low = {"keep_best": {"metric": "auc", "count": 1, "direction": "min"}, "keep_aliased": False}
    assert kept(low, versions()) == {5}


def test_keep_best_ignores_versions_without_the_metric() -> None:
    facts = versions(3)
    facts[1] = VersionFacts(2, "m@1.0.1", facts[1].created, "active", {})
    assert kept({"keep_best": {"metric": "auc"}, "keep_aliased": False}, facts) == {3}


def test_max_age() -> None:
    assert kept({"max_age": "3d", "keep_aliased": False}, versions()) == {4, 5, 6}


def test_an_alias_target_is_always_kept_and_keep_aliased_governs_previous_targets() -> None:
    facts = versions(facts={2: {"aliases": ("production",)}, 1: {"previous_aliases": ("production",)}})
    plan = plan_retention({"m": facts}, {"m": RetentionPolicy.from_dict({"keep_last": 1})}, NOW)
    assert set(plan.keep) == {1, 2, 6}
    assert plan.keep[2] == ["alias production"]
    assert plan.keep[1] == ["previous target of alias production"]
    off = RetentionPolicy.from_dict({"keep_last": 1, "keep_aliased": False})
    plan = plan_retention({"m": facts}, {"m": off}, NOW)
    assert set(plan.keep) == {2, 6} and plan.keep[2] == ["alias production"]  # served now: never retired
    assert "no alias points to it" in plan.retire[1]


def test_pins_always_keep() -> None:
    facts = versions(facts={1: {"pinned": True}})
    assert kept({"keep_last": 1}, facts) == {1, 6}


def test_min_keep_only_adds_the_newest() -> None:
    assert kept({"max_age": "1h", "min_keep": 2}, versions()) == {5, 6}


def test_rules_combine_as_a_union_with_reasons() -> None:
    facts = versions(12, facts={3: {"aliases": ("staging",)}, 7: {"aliases": ("production",)}})
    policy = {"keep_last": 3, "keep_best": {"metric": "auc", "count": 1}, "keep_aliased": True}
    plan = plan_retention({"m": facts}, {"m": RetentionPolicy.from_dict(policy)}, NOW)
    assert set(plan.keep) == {3, 7, 8, 10, 11, 12}
    assert plan.keep[8] == ["keep_best 1 by auc"]
    assert plan.keep[12] == ["keep_last 3"]
    assert "not among the last 3" in plan.retire[1] and "not aliased" in plan.retire[1]


def test_already_retired_versions_are_not_planned_again() -> None:
    facts = versions(3)
    facts[0] = VersionFacts(1, "m@1.0.0", facts[0].created, "retired", {"auc": 0.99})
    plan = plan_retention({"m": facts}, {"m": RetentionPolicy.from_dict({"keep_best": {"metric": "auc"}})}, NOW)
    assert 1 not in plan.keep and 1 not in plan.retire
    assert set(plan.keep) == {2}  # the best among the active ones (0.90)


def test_workspace_defaults_are_overridden_rule_by_rule() -> None:
    merged = merge_rules({"keep_last": 10, "max_age": "30d", "schedule": "0 3 * * *"}, {"keep_last": 2})
    assert merged == {"keep_last": 2, "max_age": "30d"}


@pytest.mark.parametrize(("text", "seconds"), [("90d", 90 * DAY), ("12h", 43200), ("2w", 14 * DAY), ("0s", 0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_bad_duration_is_an_error() -> None:
    with pytest.raises(UsageError):
        parse_duration("ninety days")


def test_a_lock_taken_on_a_removed_file_is_taken_again_on_the_file_at_the_path(tmp_path: Path) -> None:
    """gc removes lock files nobody holds; a build that opened one just before must not
    then hold a lock on a file that no longer guards anything."""
    import fcntl
    import threading

    from modelspec.env.environment import file_lock

    path = tmp_path / "key.lock"
    inside = threading.Event()
    held_at_path: list[bool] = []

    def build() -> None:
        with file_lock(path):
            with open(path, "a") as probe:  # the lock must be on the file now at the path
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held_at_path.append(False)
                except BlockingIOError:
                    held_at_path.append(True)
            inside.set()

    with open(path, "a") as gc_handle:
        fcntl.flock(gc_handle, fcntl.LOCK_EX)  # gc holds the stale lock ...
        thread = threading.Thread(target=build)
        thread.start()
        assert not inside.wait(0.3)  # ... the build opened the file and waits for it ...
        path.unlink()  # ... and gc removes it
    thread.join(10)
    assert held_at_path == [True]
