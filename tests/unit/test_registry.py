"""The registry in-process, on real SQLite files, with an injected clock: version
allocation, references, queries, aliases (history, weights, rollback), tags, lineage,
concurrency between processes, and migration from schema versions 1, 4 and 5."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelspec.catalog import Catalog
from modelspec.digest import digest_json
from modelspec.errors import StoreError, UsageError
from modelspec.registry import tables as schema
from modelspec.registry.audit import GENESIS, event_digest
from modelspec.registry.registry import ModelVersion, Registry, VersionConflictError, VersionDraft
from modelspec.spec.refs import parse_where
from modelspec.store.workspace import Workspace

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 60.0) -> float:
        self.now += seconds
        return self.now


def content(tag: str) -> str:
    """A content id whose hex starts with `tag` (hex digits only)."""
    return "blake3:" + (tag + "0" * 64)[:64]


def draft(
    cid: str,
    version: str = "1.3",
    name: str = "fraud",
    metrics: dict[str, float] | None = None,
    lineage: list[dict[str, Any]] | None = None,
) -> VersionDraft:
    return VersionDraft(
        name=name,
        spec_version=version,
        content_id=cid,
        lock="blake3:" + "1" * 64,
        commit="c" * 40,
        environment="blake3:" + "e" * 64,
        hermetic=True,
        author="ana",
        host="build-1",
        tool_version="0.1.0",
        record={"params": {"train.lr": 0.1}, "data": {}, "stages": {}, "environment": None, "dirty": False},
        artifacts={"train.model": {"type": "file", "digest": "blake3:" + cid[7:15] + "a" * 56, "size": 3}},
        metrics=metrics if metrics is not None else {"auc": 0.9},
        lineage=lineage or [],
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(registry_url: str, clock: Clock) -> Iterator[Registry]:
    """A new registry on each backend (SQLite, PostgreSQL: see conftest's registry_url)."""
    opened = Registry(registry_url, clock=clock)
    yield opened
    opened.close()


def register(registry: Registry, clock: Clock, *args: Any, **kwargs: Any) -> ModelVersion:
    clock.tick()
    version, created, _ = registry.register(draft(*args, **kwargs))
    assert created
    return version


def set_status(registry: Registry, ref: str, status: str, reason: str) -> None:
    """What retention does to a version whose artifacts it deleted."""
    version = registry.resolve(ref)
    with registry.engine.begin() as conn:
        conn.execute(
            sa.update(schema.versions)
            .where(schema.versions.c.id == version.id)
            .values(status=status, status_reason=reason, status_time=T0)
        )


# -- versions ---------------------------------------------------------------------------------


def test_minor_version_allocates_the_next_free_patch_per_new_content(registry: Registry, clock: Clock) -> None:
    first = register(registry, clock, content("a1"))
    second = register(registry, clock, content("a2"))
    other_minor = register(registry, clock, content("a3"), version="1.4")
    third = register(registry, clock, content("a4"))
    assert [first.version, second.version, other_minor.version, third.version] == ["1.3.0", "1.3.1", "1.4.0", "1.3.2"]
    assert first.ref == "fraud@1.3.0" and first.created == T0 + 60
    assert first.short_id == "fraud-a100000000"
    # Another model's numbers are its own.
    assert register(registry, clock, content("b1"), name="churn").version == "1.3.0"


def test_same_content_is_the_same_version_and_registers_nothing(registry: Registry, clock: Clock) -> None:
    first = register(registry, clock, content("a1"), metrics={"auc": 0.9})
    events = len(registry.events())
    clock.tick()
    again, created, _ = registry.register(draft(content("a1"), metrics={"auc": 0.1}))
    assert not created
    assert again == first
    assert len(registry.events()) == events
    assert [v.version for v in registry.list_versions("fraud")] == ["1.3.0"]
    assert registry.metrics_of([first.id]) == {first.id: {"auc": 0.9}}
    # Even a spec now pinning another number names the same content: it is that version.
    assert registry.register(draft(content("a1"), version="2.0.0")) == (first, False, None)


def test_pinned_version_is_used_and_allocation_continues_after_it(registry: Registry, clock: Clock) -> None:
    assert register(registry, clock, content("a1"), version="1.3.5").version == "1.3.5"
    assert register(registry, clock, content("a2")).version == "1.3.6"
    assert register(registry, clock, content("a3"), version="1.3.2").version == "1.3.2"  # a free hole
    assert register(registry, clock, content("a4")).version == "1.3.7"


def test_pinned_version_naming_other_content_is_an_error_proposing_a_bump(registry: Registry, clock: Clock) -> None:
    register(registry, clock, content("a1"), version="1.3.0")
    register(registry, clock, content("a2"))
    register(registry, clock, content("a3"))
    with pytest.raises(VersionConflictError) as info:
        registry.register(draft(content("ff"), version="1.3.0"))
    error = info.value
    assert isinstance(error, UsageError) and error.exit_code == 2
    assert error.message == "fraud@1.3.0 is already registered with other content"
    assert '"1.3.3" for a patch' in error.hint
    assert '"1.4.0" for a minor release' in error.hint
    assert '"1.3" to allocate one' in error.hint
    # Nothing was written.
    assert [v.version for v in registry.list_versions("fraud")] == ["1.3.0", "1.3.1", "1.3.2"]
    assert len(registry.events()) == 3


def test_patch_numbers_order_as_numbers(registry: Registry, clock: Clock) -> None:
    for i in range(12):
        register(registry, clock, content(f"{i:02x}"))
    versions = [v.version for v in registry.list_versions("fraud")]
    assert versions == [f"1.3.{i}" for i in range(12)]
    assert registry.resolve("fraud@1.3").version == "1.3.11"
    assert registry.resolve("fraud@latest").version == "1.3.11"


def test_a_registered_version_keeps_everything_recorded(registry: Registry, clock: Clock) -> None:
    version = register(registry, clock, content("a1"), metrics={"auc": 0.91, "f1": 0.5})
    shown = version.to_dict()
    assert shown["ref"] == "fraud@1.3.0"
    assert shown["content_id"] == content("a1")
    assert shown["short_id"] == "fraud-a100000000"
    assert shown["author"] == "ana" and shown["host"] == "build-1" and shown["modelspec_version"] == "0.1.0"
    assert shown["params"] == {"train.lr": 0.1}
    assert shown["status"] == "active" and shown["status_reason"] is None
    assert registry.artifacts_of(version) == {
        "train.model": {"type": "file", "digest": "blake3:a1000000" + "a" * 56, "size": 3}
    }
    assert registry.metrics_of([version.id]) == {version.id: {"auc": 0.91, "f1": 0.5}}
    event = registry.events()[-1]
    assert (event["kind"], event["subject"], event["actor"]) == ("build", "fraud@1.3.0", "ana")
    payload = dict(event["payload"])
    assert payload.pop("row").startswith("blake3:")  # the digest audit --verify checks the row against
    assert payload == {
        "commit": "c" * 40,
        "content_id": content("a1"),
        "metrics": {"auc": 0.91, "f1": 0.5},
        "lineage": [],  # the lineage rows, so that replaying the log rebuilds them
    }


# -- references -------------------------------------------------------------------------------


@pytest.fixture
def fraud(registry: Registry, clock: Clock) -> Registry:
    """fraud 1.2.0, 1.3.0 .. 1.3.2, with content ids 12.., 3f2a9c01be.., 3f2a9c02.., 77.."""
    register(registry, clock, content("12"), version="1.2")
    register(registry, clock, content("3f2a9c01be"))
    register(registry, clock, content("3f2a9c02"))
    register(registry, clock, content("77"))
    return registry


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("fraud@1.3.1", "1.3.1"),
        ("fraud@1.2.0", "1.2.0"),
        ("fraud@1.3", "1.3.2"),
        ("fraud@1.2", "1.2.0"),
        ("fraud@latest", "1.3.2"),
        ("fraud", "1.3.2"),
        ("fraud@3f2a9c01", "1.3.0"),
        ("fraud@3f2a9c02", "1.3.1"),
        ("fraud@7700", "1.3.2"),
        ("fraud-3f2a9c01be", "1.3.0"),
        ("fraud@fraud-3f2a9c01be", "1.3.0"),
    ],
)
def test_resolve(fraud: Registry, ref: str, expected: str) -> None:
    assert fraud.resolve(ref).version == expected


def test_resolve_an_alias(fraud: Registry) -> None:
    fraud.promote("fraud@1.3.1", "production", "ana")
    assert fraud.resolve("fraud@production").version == "1.3.1"


def test_ambiguous_content_prefix_lists_the_candidates(fraud: Registry) -> None:
    with pytest.raises(UsageError) as info:
        fraud.resolve("fraud@3f2a9c")
    assert info.value.message == "fraud@3f2a9c is ambiguous: 1.3.0 (fraud-3f2a9c01be), 1.3.1 (fraud-3f2a9c0200)"
    assert info.value.hint == "give more digits of the content id"
    with pytest.raises(UsageError, match="ambiguous"):
        fraud.resolve("fraud-3f2a9c")


def test_ambiguous_candidates_are_listed_in_version_order(registry: Registry, clock: Clock) -> None:
    for tag in ("abcd9", "abcd1", "abcd5"):
        register(registry, clock, content(tag))
    with pytest.raises(UsageError) as info:
        registry.resolve("fraud@abcd")
    assert info.value.message == (
        "fraud@abcd is ambiguous: 1.3.0 (fraud-abcd900000), 1.3.1 (fraud-abcd100000), 1.3.2 (fraud-abcd500000)"
    )
    assert registry.resolve("fraud@abcd5").version == "1.3.2"


def test_the_short_form_prefers_a_model_really_named_so(fraud: Registry, clock: Clock) -> None:
    register(fraud, clock, content("99"), name="fraud-beef", version="7.0")
    assert fraud.resolve("fraud-beef").ref == "fraud-beef@7.0.0"
    assert fraud.resolve("fraud-3f2a9c01be").ref == "fraud@1.3.0"


@pytest.mark.parametrize(
    ("ref", "message", "hint"),
    [
        ("fraud@1.3.9", "no version fraud@1.3.9", "`modelspec versions fraud` lists its versions"),
        ("fraud@2.0", "no version fraud@2.0", "`modelspec versions fraud` lists its versions"),
        ("fraud@staging", "no version fraud@staging", "`modelspec versions fraud` lists its versions"),
        ("fraud@abcdef", "no version fraud@abcdef", "`modelspec versions fraud` lists its versions"),
        ("churn@1.0.0", "no version churn@1.0.0", "registered models: fraud"),
        ("churn", "no version churn@latest", "registered models: fraud"),
    ],
)
def test_resolve_what_does_not_exist(fraud: Registry, ref: str, message: str, hint: str) -> None:
    with pytest.raises(UsageError) as info:
        fraud.resolve(ref)
    assert (info.value.message, info.value.hint, info.value.exit_code) == (message, hint, 2)


def test_resolve_in_an_empty_registry(registry: Registry) -> None:
    with pytest.raises(UsageError) as info:
        registry.resolve("fraud")
    assert info.value.hint == "registered models: none yet"


# -- queries ----------------------------------------------------------------------------------


def test_metrics_and_pins_of_more_ids_than_one_statement_takes(registry: Registry, clock: Clock) -> None:
    """1,200 ids: three IN lists on SQLite, one array (= ANY) on PostgreSQL; the same answer."""
    first = register(registry, clock, content("a1"), metrics={"auc": 0.9, "epochs": 12})
    last = register(registry, clock, content("a2"), metrics={"auc": 0.8})
    registry.pin(last.ref, "ana")
    ids = [*range(first.id + 1000, first.id + 2198), first.id, last.id]
    found = registry.metrics_of(ids)
    assert len(found) == 1200 and found[first.id] == {"auc": 0.9, "epochs": 12} and found[last.id] == {"auc": 0.8}
    assert sum(1 for metrics in found.values() if metrics) == 2
    assert list(registry.pins_of(ids)) == [last.id]
    assert registry.metrics_of([]) == {} and registry.pins_of([]) == {}


def test_list_versions_filters_by_metrics_and_tags(registry: Registry, clock: Clock) -> None:
    register(registry, clock, content("a1"), metrics={"auc": 0.80, "f1": 0.70})
    register(registry, clock, content("a2"), metrics={"auc": 0.92, "f1": 0.40})
    register(registry, clock, content("a3"), metrics={"auc": 0.95, "f1": 0.60})
    register(registry, clock, content("a4"), metrics={"f1": 0.99})  # no auc at all
    register(registry, clock, content("b1"), name="churn", metrics={"auc": 0.99})

    def listed(where: str = "", tags: dict[str, str] | None = None) -> list[str]:
        return [v.version for v in registry.list_versions("fraud", parse_where(where) if where else None, tags)]

    assert listed() == ["1.3.0", "1.3.1", "1.3.2", "1.3.3"]
    assert listed("auc>0.9") == ["1.3.1", "1.3.2"]
    assert listed("auc>0.9, f1>=0.5") == ["1.3.2"]
    assert listed("auc>=0.8 and f1<0.65") == ["1.3.1", "1.3.2"]
    assert listed("auc!=0.92") == ["1.3.0", "1.3.2"]  # a version without the metric never matches
    assert listed("auc==0.92") == ["1.3.1"]
    assert listed("auc>0.85, auc<0.93") == ["1.3.1"]  # the same metric twice
    assert listed("accuracy>0") == []
    registry.tag("fraud@1.3.1", "stage", "candidate", "ana")
    registry.tag("fraud@1.3.2", "stage", "candidate", "ana")
    registry.tag("fraud@1.3.2", "owner", "risk", "ana")
    assert listed(tags={"stage": "candidate"}) == ["1.3.1", "1.3.2"]
    assert listed(tags={"stage": "candidate", "owner": "risk"}) == ["1.3.2"]
    assert listed("f1<0.5", tags={"stage": "candidate"}) == ["1.3.1"]
    assert listed(tags={"stage": "retired"}) == []
    assert registry.names() == ["churn", "fraud"]


def test_tags_overwrite_and_are_audited(registry: Registry, clock: Clock) -> None:
    version = register(registry, clock, content("a1"))
    registry.tag("fraud@1.3.0", "stage", "candidate", "ana")
    registry.tag("fraud@latest", "stage", "approved", "bo")
    assert registry.tags_of(version) == {"stage": "approved"}
    kinds = [(e["kind"], e["subject"], e["actor"], e["payload"]) for e in registry.events()[-2:]]
    assert kinds == [
        ("tag", "fraud@1.3.0", "ana", {"key": "stage", "value": "candidate"}),
        ("tag", "fraud@1.3.0", "bo", {"key": "stage", "value": "approved"}),
    ]


def test_catalog_versions_and_show(tmp_path: Path, registry: Registry, clock: Clock) -> None:
    register(registry, clock, content("a1"), metrics={"auc": 0.8})
    register(registry, clock, content("a2"), metrics={"auc": 0.95, "f1": 0.5})
    registry.promote("fraud@1.3.1", "production", "ana")
    registry.tag("fraud@1.3.1", "stage", "approved", "ana")
    catalog = Catalog(Workspace(root=tmp_path, home=tmp_path / ".modelspec"), registry)
    rows = catalog.versions("fraud", "auc>0.9")
    assert rows == [
        {
            "version": "1.3.1",
            "ref": "fraud@1.3.1",
            "content_id": "fraud-a200000000",
            "created": T0 + 120,
            "metrics": {"auc": 0.95, "f1": 0.5},
            "aliases": ["production"],
            "alias_weights": {"production": 1.0},
            "status": "active",
            "gate": None,
            "pinned": False,
            "marks": [],
            "dirty": False,
            "hermetic": True,
        }
    ]
    assert [r["version"] for r in catalog.versions("fraud", tags={"stage": "approved"})] == ["1.3.1"]
    assert catalog.versions("fraud", "auc>0.99") == []
    with pytest.raises(UsageError, match="no model named 'churn'"):
        catalog.versions("churn")
    shown = catalog.show("fraud@production")
    assert shown["ref"] == "fraud@1.3.1"
    assert shown["metrics"] == {"auc": 0.95, "f1": 0.5}
    assert shown["tags"] == {"stage": "approved"}
    assert shown["aliases"] == ["production"]
    assert shown["lineage"] == {"upstream": [], "downstream": []}
    assert set(shown["artifacts"]) == {"train.model"}


# -- aliases ----------------------------------------------------------------------------------


def test_promote_moves_an_alias_and_keeps_its_history(fraud: Registry, clock: Clock) -> None:
    clock.tick()
    assert fraud.promote("fraud@1.3.0", "production", "ana") == [["1.3.0", 1.0]]
    clock.tick()
    assert fraud.promote("fraud@1.3.1", "production", "bo") == [["1.3.1", 1.0]]
    history = fraud.alias_history("fraud", "production")
    assert history == [
        {"time": T0 + 300, "actor": "ana", "action": "promote", "from": [], "to": [["1.3.0", 1.0]]},
        {"time": T0 + 360, "actor": "bo", "action": "promote", "from": [["1.3.0", 1.0]], "to": [["1.3.1", 1.0]]},
    ]
    assert fraud.alias_names("fraud") == ["production"]
    event = fraud.events()[-1]
    assert (event["kind"], event["subject"], event["payload"]) == (
        "promote",
        "fraud@production",
        {"from": [["1.3.0", 1.0]], "to": [["1.3.1", 1.0]], "at": T0 + 360},  # `at`: the history row's time
    )
    assert fraud.verify_audit() == ""


def test_promote_with_a_weight_splits_traffic(fraud: Registry) -> None:
    fraud.promote("fraud@1.3.0", "production", "ana")
    assert fraud.promote("fraud@1.3.1", "production", "ana", weight=0.2) == [["1.3.0", 0.8], ["1.3.1", 0.2]]
    assert fraud.promote("fraud@1.3.2", "production", "ana", weight=0.5) == [
        ["1.3.0", 0.4],
        ["1.3.1", 0.1],
        ["1.3.2", 0.5],
    ]
    targets = [(v.version, w) for v, w in fraud.alias_targets("fraud", "production")]
    assert targets == [("1.3.0", 0.4), ("1.3.1", 0.1), ("1.3.2", 0.5)]
    with pytest.raises(UsageError, match=re.escape("splits traffic across 1.3.0 (0.4), 1.3.1 (0.1), 1.3.2 (0.5)")):
        fraud.resolve("fraud@production")
    # Re-weighting a version already in the split replaces its share.
    assert fraud.promote("fraud@1.3.2", "production", "ana", weight=0.9) == [
        ["1.3.0", 0.08],
        ["1.3.1", 0.02],
        ["1.3.2", 0.9],
    ]
    # Without a weight, the alias points at one version again.
    assert fraud.promote("fraud@1.3.2", "production", "ana") == [["1.3.2", 1.0]]


@pytest.mark.parametrize("weight", [0.0, 1.0, 1.5, -0.1])
def test_a_weight_must_be_a_share(fraud: Registry, weight: float) -> None:
    fraud.promote("fraud@1.3.0", "production", "ana")
    with pytest.raises(UsageError, match="--weight must be between 0 and 1"):
        fraud.promote("fraud@1.3.1", "production", "ana", weight=weight)
    assert [v.version for v, _ in fraud.alias_targets("fraud", "production")] == ["1.3.0"]
    # Also on an alias that does not exist yet: a bad weight is refused, not ignored.
    with pytest.raises(UsageError, match="--weight must be between 0 and 1"):
        fraud.promote("fraud@1.3.1", "canary", "ana", weight=weight)
    assert fraud.alias_names("fraud") == ["production"]


def test_a_weight_on_a_new_alias_gives_it_all_the_traffic(fraud: Registry) -> None:
    assert fraud.promote("fraud@1.3.1", "canary", "ana", weight=0.1) == [["1.3.1", 1.0]]


@pytest.mark.parametrize("alias", ["1.3", "1.3.1", "latest", "cafe", "3f2a9c", "bad name", "-x"])
def test_names_that_cannot_be_aliases(fraud: Registry, alias: str) -> None:
    with pytest.raises(UsageError):
        fraud.promote("fraud@1.3.0", alias, "ana")
    assert fraud.alias_names("fraud") == []


def test_a_retired_version_cannot_be_promoted(fraud: Registry) -> None:
    set_status(fraud, "fraud@1.3.0", "retired", "keep_last: 2")
    with pytest.raises(UsageError, match=re.escape("fraud@1.3.0 is retired: its artifacts are gone")):
        fraud.promote("fraud@1.3.0", "production", "ana")


def test_rollback_returns_to_the_previous_target(fraud: Registry, clock: Clock) -> None:
    fraud.promote("fraud@1.3.0", "production", "ana")
    fraud.promote("fraud@1.3.1", "production", "ana", weight=0.1)
    fraud.promote("fraud@1.3.2", "production", "ana")
    clock.tick()
    assert fraud.rollback("fraud", "production", "bo") == [["1.3.0", 0.9], ["1.3.1", 0.1]]
    last = fraud.alias_history("fraud", "production")[-1]
    assert last == {
        "time": clock.now,
        "actor": "bo",
        "action": "rollback",
        "from": [["1.3.2", 1.0]],
        "to": [["1.3.0", 0.9], ["1.3.1", 0.1]],
    }
    assert fraud.events()[-1]["kind"] == "rollback"


def test_rollback_refuses_a_retired_target_and_says_why(fraud: Registry) -> None:
    fraud.promote("fraud@1.3.0", "production", "ana")
    fraud.promote("fraud@1.3.1", "production", "ana")
    set_status(fraud, "fraud@1.3.0", "retired", "older than max_age 90d")
    with pytest.raises(UsageError) as info:
        fraud.rollback("fraud", "production", "bo")
    assert info.value.message == (
        "cannot roll back fraud@production to fraud@1.3.0: its artifacts were retired (older than max_age 90d)"
    )
    assert "modelspec reproduce" not in info.value.hint  # reproduce refuses retired versions
    assert "`modelspec versions fraud`" in info.value.hint and "`modelspec show fraud@1.3.0`" in info.value.hint
    assert [v.version for v, _ in fraud.alias_targets("fraud", "production")] == ["1.3.1"]
    assert len(fraud.alias_history("fraud", "production")) == 2


def test_retire_skips_a_version_promoted_since_the_plan_was_made(fraud: Registry) -> None:
    planned = {fraud.resolve("fraud@1.3.0").id: "keep_last 1", fraud.resolve("fraud@1.3.1").id: "keep_last 1"}
    fraud.promote("fraud@1.3.0", "production", "ana")  # between gc's plan and its retire
    assert fraud.retire(planned, "gc") == [fraud.resolve("fraud@1.3.0").id]
    assert fraud.resolve("fraud@1.3.0").status == "active"
    assert fraud.resolve("fraud@1.3.1").status == "retired"


def test_a_retired_version_cannot_be_pinned(fraud: Registry) -> None:
    set_status(fraud, "fraud@1.3.0", "retired", "keep_last: 2")
    with pytest.raises(UsageError, match=re.escape("fraud@1.3.0 cannot be pinned: it was retired (keep_last: 2)")):
        fraud.pin("fraud@1.3.0", "ana")
    fraud.pin("fraud@1.3.1", "ana")
    assert fraud.pins_of([fraud.resolve(r).id for r in ("fraud@1.3.0", "fraud@1.3.1")]) == {
        fraud.resolve("fraud@1.3.1").id: {"time": fraud.events()[-1]["time"], "actor": "ana"}
    }


def test_rollback_of_an_alias_without_a_past(fraud: Registry) -> None:
    with pytest.raises(UsageError, match="fraud@production has never been moved"):
        fraud.rollback("fraud", "production", "ana")
    fraud.promote("fraud@1.3.0", "production", "ana")
    with pytest.raises(UsageError, match="pointed at nothing before its last promotion"):
        fraud.rollback("fraud", "production", "ana")


def test_alias_history_at_a_date(tmp_path: Path, fraud: Registry, clock: Clock) -> None:
    catalog = Catalog(Workspace(root=tmp_path, home=tmp_path / ".modelspec"), fraud)
    first = clock.tick(3600)
    fraud.promote("fraud@1.3.0", "production", "ana")
    second = clock.tick(86400)
    fraud.promote("fraud@1.3.1", "production", "ana", weight=0.25)
    third = clock.tick(86400)
    fraud.rollback("fraud", "production", "ana")

    def at(moment: float) -> list[list[Any]]:
        return list(catalog.alias_history("fraud", "production", moment)["at"]["targets"])

    assert at(first - 1) == []
    assert at(first) == [["1.3.0", 1.0]]
    assert at(second - 1) == [["1.3.0", 1.0]]
    assert at(second + 10) == [["1.3.0", 0.75], ["1.3.1", 0.25]]
    assert at(third + 10) == [["1.3.0", 1.0]]
    whole = catalog.alias_history("fraud", "production")
    assert "at" not in whole and [h["action"] for h in whole["history"]] == ["promote", "promote", "rollback"]


# -- lineage ----------------------------------------------------------------------------------


def test_lineage_links_both_ways(registry: Registry, clock: Clock) -> None:
    features = register(
        registry,
        clock,
        content("f1"),
        name="features",
        version="2.0",
        lineage=[{"kind": "data", "name": "raw", "ref": "data/raw.csv", "digest": "blake3:" + "d" * 64}],
    )
    model = register(
        registry,
        clock,
        content("a1"),
        lineage=[
            {
                "kind": "spec",
                "name": "table",
                "ref": "features:build.table",
                "digest": "blake3:" + "9" * 64,
                "upstream_content": content("f1"),
            }
        ],
    )
    assert registry.lineage(model) == {
        "upstream": [
            {
                "kind": "spec",
                "name": "table",
                "ref": "features:build.table",
                "digest": "blake3:" + "9" * 64,
                "version": "features@2.0.0",
            }
        ],
        "downstream": [],
    }
    assert registry.lineage(features) == {
        "upstream": [{"kind": "data", "name": "raw", "ref": "data/raw.csv", "digest": "blake3:" + "d" * 64}],
        "downstream": ["fraud@1.3.0"],
    }


# -- concurrency ------------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelspec.registry.registry import Registry, VersionDraft
    where, start, writer = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    while time.time() < start:
        time.sleep(0.001)
    # Every writer may be the one that creates the registry (the file, or the tables).
    registry = Registry(where) if "://" in where else Registry.at(Path(where))
    for i in range(4):
        cid = "blake3:" + (writer + str(i)) * 32
        registry.register(VersionDraft(
            name="fraud", spec_version="1.0", content_id=cid, lock="l", commit="c", environment=None,
            hermetic=True, author=writer, host="h", tool_version="0", record={}, artifacts={}, metrics={"auc": 0.5},
        ))
    registry.close()
    """
)


def test_concurrent_writers_never_share_a_version(tmp_path: Path, registry_url: str) -> None:
    path = tmp_path / "fresh" / "registry.db"
    where = str(path) if registry_url.startswith("sqlite") else registry_url
    start = time.time() + 1.5  # after every interpreter has started
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, where, str(start), w], stderr=subprocess.PIPE, text=True)
        for w in ("a", "b", "c")
    ]
    for proc in writers:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    registry = Registry.at(path) if where == str(path) else Registry(registry_url)
    try:
        versions = registry.list_versions("fraud")
        assert sorted(v.version for v in versions) == sorted(f"1.0.{i}" for i in range(12))
        assert len({v.content_id for v in versions}) == 12
        assert registry.verify_audit() == ""
        assert len(registry.events()) == 12
    finally:
        registry.close()


# -- migrations -------------------------------------------------------------------------------


def sql(conn: sa.Connection, statement: str, **values: Any) -> None:
    """Raw SQL with :named values, as both backends take it."""
    conn.execute(sa.text(statement), values)


def insert_old_version(conn: sa.Connection, record: dict[str, Any], tool_version: str) -> None:
    """Version 1.0.0 of fraud as an older schema held it; the database assigns it id 1."""
    sql(
        conn,
        'INSERT INTO versions (name, version, major, minor, patch, content_id, lock, "commit", '
        "environment, hermetic, author, host, tool_version, created, status, record) VALUES "
        "('fraud', '1.0.0', 1, 0, 0, :cid, 'blake3:lock', 'abc123', NULL, :yes, 'ana', 'h', :tool, :t, 'active', :r)",
        cid=content("5e"),
        yes=True,
        tool=tool_version,
        t=T0,
        r=json.dumps(record),
    )


def make_version_1_registry(url: str) -> None:
    """A registry as modelspec's first release left it: schema version 1, one version, one alias."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        assert schema.migrate(conn, target=1) == 0
        assert schema.schema_version(conn) == 1
        insert_old_version(conn, {"params": {"train.lr": 0.1}}, "0.0.9")
        sql(conn, "INSERT INTO metrics (version_id, key, value) VALUES (1, 'auc', 0.88)")
        sql(conn, "INSERT INTO aliases (name, alias, version_id) VALUES ('fraud', 'production', 1)")
        sql(
            conn,
            "INSERT INTO alias_history (name, alias, time, actor, action, before, after) "
            "VALUES ('fraud', 'production', :t, 'ana', 'promote', '[]', :after)",
            t=T0 + 1,
            after='[["1.0.0", 1.0]]',
        )
        # Its events had the first release's payloads: no row digest, no lineage, no times.
        built = json.dumps({"commit": "abc123", "content_id": content("5e"), "metrics": {"auc": 0.88}}, sort_keys=True)
        promoted = json.dumps({"from": [], "to": [["1.0.0", 1.0]]}, sort_keys=True)
        prev = GENESIS
        for seq, (kind, subject, payload) in enumerate(
            [("build", "fraud@1.0.0", built), ("promote", "fraud@production", promoted)], start=1
        ):
            digest = event_digest(seq, T0 + seq, kind, "ana", subject, payload, prev)
            insert_event(conn, seq, T0 + seq, kind, subject, payload, prev, digest)
            prev = digest
        sql(conn, "INSERT INTO meta (key, value) VALUES ('audit_head', :head)", head=f"2 {prev}")
        columns = {c["name"] for c in sa.inspect(conn).get_columns("aliases")}
        assert "weight" not in columns and not sa.inspect(conn).has_table("tags")
    engine.dispose()


def insert_event(
    conn: sa.Connection, seq: int, time: float, kind: str, subject: str, payload: str, prev: str, digest: str
) -> None:
    sql(
        conn,
        "INSERT INTO events (seq, time, kind, actor, subject, payload, prev, digest) "
        "VALUES (:seq, :time, :kind, 'ana', :subject, :payload, :prev, :digest)",
        seq=seq,
        time=time,
        kind=kind,
        subject=subject,
        payload=payload,
        prev=prev,
        digest=digest,
    )


def test_a_version_1_registry_is_migrated_and_keeps_its_data(registry_url: str, clock: Clock) -> None:
    make_version_1_registry(registry_url)
    registry = Registry(registry_url, clock=clock)
    try:
        with registry.engine.connect() as conn:
            assert schema.schema_version(conn) == schema.SCHEMA_VERSION >= 2
        version = registry.resolve("fraud@production")
        assert (version.ref, version.content_id, version.author, version.record) == (
            "fraud@1.0.0",
            content("5e"),
            "ana",
            {"params": {"train.lr": 0.1}},
        )
        assert registry.metrics_of([version.id]) == {1: {"auc": 0.88}}
        assert [(v.version, w) for v, w in registry.alias_targets("fraud", "production")] == [("1.0.0", 1.0)]
        assert registry.verify_audit() == ""
        # Version 2's features work on the old data.
        registry.tag("fraud@1.0.0", "stage", "approved", "bo")
        assert registry.tags_of(version) == {"stage": "approved"}
        clock.tick()
        new = registry.register(draft(content("6e"), version="1.0"))[0]
        assert new.version == "1.0.1"
        assert registry.promote("fraud@1.0.1", "production", "bo", weight=0.3) == [["1.0.0", 0.7], ["1.0.1", 0.3]]
        assert registry.rollback("fraud", "production", "bo") == [["1.0.0", 1.0]]
        assert registry.verify_audit() == ""
    finally:
        registry.close()
    # Opening it again migrates nothing more.
    reopened = Registry(registry_url)
    try:
        assert reopened.tags_of(reopened.resolve("fraud@1.0.0")) == {"stage": "approved"}
    finally:
        reopened.close()


def make_version_4_registry(url: str) -> None:
    """A registry as schema version 4 left it: metrics were floats only (epochs 12 stored as
    12.0), and the build event holds the row digest computed over them."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        assert schema.migrate(conn, target=4) == 0
        assert "is_integer" not in {c["name"] for c in sa.inspect(conn).get_columns("metrics")}
        row = ["fraud", "1.0.0", content("5e"), "blake3:lock", "abc123", None, True, "ana", "h", "0.1.0", T0, "{}"]
        insert_old_version(conn, {}, "0.1.0")
        sql(conn, "INSERT INTO metrics (version_id, key, value) VALUES (1, 'auc', 0.88), (1, 'epochs', 12)")
        metrics = [["auc", 0.88], ["epochs", 12.0]]
        row_digest = digest_json({"row": row, "artifacts": [], "metrics": metrics})
        payload = json.dumps({"content_id": content("5e"), "row": row_digest}, sort_keys=True)
        digest = event_digest(1, T0, "build", "ana", "fraud@1.0.0", payload, GENESIS)
        insert_event(conn, 1, T0, "build", "fraud@1.0.0", payload, GENESIS, digest)
        sql(conn, "INSERT INTO meta (key, value) VALUES ('audit_head', :head)", head=f"1 {digest}")
    engine.dispose()


def test_a_version_4_registry_is_migrated_and_new_integer_metrics_stay_integers(
    registry_url: str, clock: Clock
) -> None:
    make_version_4_registry(registry_url)
    registry = Registry(registry_url, clock=clock)
    try:
        with registry.engine.connect() as conn:
            assert schema.schema_version(conn) == schema.SCHEMA_VERSION
        old = registry.resolve("fraud@1.0.0")
        # What was stored as 12.0 stays a float: whether the file said 12 is not known.
        assert registry.metrics_of([old.id]) == {old.id: {"auc": 0.88, "epochs": 12.0}}
        assert type(registry.metrics_of([old.id])[old.id]["epochs"]) is float
        assert registry.verify_audit() == ""  # the digest recorded before the migration still holds

        clock.tick()
        new = registry.register(draft(content("6e"), version="1.0", metrics={"epochs": 12, "auc": 0.9}))[0]
        found = registry.metrics_of([new.id])[new.id]
        assert found == {"epochs": 12, "auc": 0.9} and type(found["epochs"]) is int and type(found["auc"]) is float
        assert registry.retention_facts()["fraud"][1].metrics == {"epochs": 12, "auc": 0.9}
        assert [v.version for v in registry.list_versions("fraud", parse_where("epochs>=10"))] == ["1.0.0", "1.0.1"]
        assert [v.version for v in registry.list_versions("fraud", parse_where("epochs>12"))] == []
        assert registry.verify_audit() == ""
        with registry.engine.begin() as conn:  # an integer turned into a float is an edit
            sql(conn, "UPDATE metrics SET is_integer = FALSE WHERE version_id = :id", id=new.id)
        edited = "fraud@1.0.1 was edited after it was registered (it no longer matches build event 2)"
        assert registry.verify_audit() == edited
    finally:
        registry.close()


def test_a_version_5_registry_gains_the_gate_results_table(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "registry.db"
    make_version_4_registry(f"sqlite:///{path}")
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        assert schema.migrate(conn, target=5) == 4
        assert not sa.inspect(conn).has_table("gate_results")
    engine.dispose()
    registry = Registry(f"sqlite:///{path}", clock=clock)
    try:
        with registry.engine.connect() as conn:
            assert schema.schema_version(conn) == schema.SCHEMA_VERSION == 6
            assert sa.inspect(conn).has_table("gate_results")
            assert conn.execute(sa.select(sa.func.count()).select_from(schema.gate_results)).scalar() == 0
        assert registry.verify_audit() == ""
        clock.tick()
        assert registry.register(draft(content("6e"), version="1.0"))[0].version == "1.0.1"
        assert registry.verify_audit() == ""
    finally:
        registry.close()


def test_a_registry_from_a_newer_modelspec_is_refused(registry_url: str) -> None:
    Registry(registry_url).close()
    engine = sa.create_engine(registry_url)
    with engine.begin() as conn:
        conn.execute(
            sa.update(schema.meta)
            .where(schema.meta.c.key == "schema_version")
            .values(value=str(schema.SCHEMA_VERSION + 1))
        )
    engine.dispose()
    with pytest.raises(UsageError) as info:
        Registry(registry_url)
    assert f"schema version {schema.SCHEMA_VERSION + 1}" in info.value.message
    assert info.value.hint == "upgrade modelspec"


def test_audit_verify_detects_an_edited_version_row(registry_url: str) -> None:
    registry = Registry(registry_url)
    registry.register(draft(content("a1"), "1.0", "m"))
    registry.register(draft(content("a2"), "1.0", "m"))
    assert registry.verify_audit() == ""
    with registry.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE metrics SET value = 0.99 WHERE key = 'auc' AND version_id = 1")
    assert registry.versions_by_status("active")[0].ref == "m@1.0.0"
    assert registry.verify_audit() == "m@1.0.0 was edited after it was registered (it no longer matches build event 1)"
    with registry.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE metrics SET value = 0.9 WHERE key = 'auc' AND version_id = 1")
        conn.exec_driver_sql("UPDATE versions SET \"commit\" = 'x' WHERE id = 2")
    assert "m@1.0.1 was edited" in registry.verify_audit()
    registry.close()


def test_a_read_only_open_reads_and_never_writes(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "registry.db"
    writer = Registry.at(path)
    writer.clock = clock
    register(writer, clock, content("a1"))
    writer.close()
    reader = Registry.at(path, read_only=True)
    try:
        assert reader.resolve("fraud@1.3.0").content_id == content("a1")
        assert reader.audit_problems() == []
        with pytest.raises(StoreError, match="cannot be written: attempt to write a readonly database"):
            reader.tag("fraud@1.3.0", "stage", "candidate", "ana")
    finally:
        reader.close()


def test_a_read_only_open_of_an_older_schema_migrates_it_first(tmp_path: Path) -> None:
    """Only a writer can migrate; reading an older registry must still see every table."""
    path = tmp_path / "registry.db"
    make_version_1_registry(f"sqlite:///{path}")
    reader = Registry.at(path, read_only=True)
    try:
        with reader.engine.connect() as conn:
            assert schema.schema_version(conn) == schema.SCHEMA_VERSION
        assert reader.pins_of([1]) == {}  # the pins table (schema 4) is there
    finally:
        reader.close()


# -- the façade ------------------------------------------------------------------------------


def open_files(path: Path) -> list[str]:
    """This process's open descriptors on `path` (SQLite keeps one per pooled connection)."""
    fds = Path("/proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            target = (fds / fd.name).readlink()
        except OSError:
            continue
        if str(target) == str(path):
            found.append(fd.name)
    return found


def test_a_registry_is_a_context_manager_that_closes_its_engine(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "registry.db"
    with Registry.at(path) as registry:
        registry.clock = clock
        register(registry, clock, content("a1"))
        assert registry.names() == ["fraud"]
        assert open_files(path)  # the pool keeps its connection while the registry is open
    assert open_files(path) == []


def test_a_damaged_registry_is_a_store_error_naming_it_on_open_and_on_read(tmp_path: Path, clock: Clock) -> None:
    """The database's failures are translated once, at the registry: no SQLAlchemy error
    reaches the caller, whether opening, reading or writing."""
    path = tmp_path / "registry.db"
    with Registry.at(path) as registry:
        register(registry, clock, content("a1"))
        registry.engine.dispose()  # the last connection checkpoints the WAL into the file
        path.write_bytes(b"this is not a database, it was overwritten" * 100)
        with pytest.raises(StoreError, match=r"registry \(.*registry.db\) cannot be read: file is not a database"):
            registry.names()
        with pytest.raises(StoreError, match="cannot be written: file is not a database"):
            registry.record_event("note", "fraud", "ana", {})
    with pytest.raises(StoreError, match="cannot be opened: file is not a database") as info:
        Registry.at(path)
    assert "free space" in info.value.hint


def test_the_version_record_declares_every_column_of_the_versions_table() -> None:
    """ModelVersion's fields are the one declaration of a version's columns: the select, the
    insert and the build event's digest derive from it, so a column added to the table must
    be added there (only the sort keys major/minor/patch, derived from `version`, are not)."""
    from modelspec.registry import versions

    declared = {column.name for column in versions.COLUMNS}
    assert declared == {column.name for column in schema.versions.c} - {"major", "minor", "patch"}
    # What build events of every release digest, in their order (changing it breaks old digests).
    assert versions.RECORDED == (
        "name",
        "version",
        "content_id",
        "lock",
        "commit",
        "environment",
        "hermetic",
        "author",
        "host",
        "tool_version",
        "created",
        "record",
    )


def test_a_commit_between_opening_and_reading_the_stores_record_is_not_taken_for_a_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_url: str
) -> None:
    """Two processes at once: another one commits (and records the new audit head) while this
    one opens the registry. Were the database snapshot taken before the record was read, the
    record would be ahead of the snapshot and the registry refused as rolled back."""
    from modelspec.registry import database as module

    path, head = tmp_path / "registry.db", tmp_path / "registry-head"
    on_file = registry_url.startswith("sqlite")

    def open_registry() -> Registry:
        return Registry.at(path, head) if on_file else Registry(registry_url, head_file=head)

    with open_registry() as first:
        first.record_event("note", "m", "a", {})
    original = module.read_head
    calls: list[Path] = []
    interleaved: list[bool] = []
    # The constructor's read (on a file, the first is Registry.at's check for a missing file).
    constructors_read = 2 if on_file else 1

    def read_head_after_another_commit(file: Path) -> Any:
        calls.append(file)
        if len(calls) == constructors_read:
            interleaved.append(True)  # the other process commits and records its head just now
            with open_registry() as other:
                other.record_event("note", "m", "b", {})
        return original(file)

    monkeypatch.setattr(module, "read_head", read_head_after_another_commit)
    with open_registry() as opened:
        assert interleaved and [e["actor"] for e in opened.events()] == ["a", "b"]
        assert opened.audit_problems() == []
