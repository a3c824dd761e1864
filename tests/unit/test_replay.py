"""The pure fold of audit events into the registry's mutable state, and the comparison that
names each difference (modelspec/replay.py); older payload shapes replay with unknowns."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from test_registry import Clock, make_version_1_registry

from modelspec.registry.registry import Registry
from modelspec.registry.replay import Link, Move, Pin, RegistryState, Reproduction, Status, differences, replay


def event(seq: int, kind: str, subject: str, payload: dict[str, Any], actor: str = "ana") -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "subject": subject, "actor": actor, "payload": payload}


LINK = {"kind": "data", "name": "raw", "ref": "data/raw.csv", "digest": "blake3:aa", "upstream": None}
EVENTS = [
    event(1, "build", "m@1.0.0", {"content_id": "c1", "lineage": [LINK]}),
    event(2, "build", "m@1.0.1", {"content_id": "c2"}),  # an older build event: no lineage
    event(3, "promote", "m@production", {"from": [], "to": [["1.0.0", 1.0]], "at": 10.0}),
    event(4, "promote", "m@production", {"from": [["1.0.0", 1.0]], "to": [["1.0.0", 0.9], ["1.0.1", 0.1]]}),
    event(5, "promote", "m@staging", {"from": [], "to": [["1.0.1", 1.0]], "at": 12.0}),
    event(6, "alias.rm", "m@staging", {"from": [["1.0.1", 1.0]], "at": 13.0}),
    event(7, "tag", "m@1.0.0", {"key": "owner", "value": "team"}),
    event(8, "pin", "m@1.0.1", {"at": 14.0}),
    event(9, "pin", "m@1.0.0", {}),
    event(10, "unpin", "m@1.0.0", {}),
    event(11, "retire", "m@1.0.1", {"reason": "keep_last: 1", "at": 15.0}),
    event(12, "revive", "m@1.0.1", {"at": 16.0}),
    event(13, "reproduce", "m@1.0.0", {"verdict": "identical", "rtol": 0.0, "differing": [], "at": 17.0}),
    event(14, "gc", "workspace", {"retire": [], "objects": 3}),
]


def test_the_log_folds_into_the_state_it_implies() -> None:
    state = replay(EVENTS)
    assert state.versions == {"m@1.0.0": Status("active", None, None), "m@1.0.1": Status("active", "rebuilt", 16.0)}
    assert state.aliases == {"m@production": (("1.0.0", 0.9), ("1.0.1", 0.1))}
    assert state.history["m@staging"] == (
        Move("promote", "ana", (), (("1.0.1", 1.0),), 12.0),
        Move("alias.rm", "ana", (("1.0.1", 1.0),), (), 13.0),
    )
    assert state.history["m@production"][1].time is None  # not recorded by an older release: unknown
    assert state.tags == {("m@1.0.0", "owner"): "team"}
    assert state.pins == {"m@1.0.1": Pin("ana", 14.0)}
    assert state.lineage == {"m@1.0.0": (Link("data", "raw", "data/raw.csv", "blake3:aa", ""),), "m@1.0.1": None}
    assert state.reproductions == {
        "m@1.0.0": (Reproduction("ana", "identical", '{"differing": [], "rtol": 0.0}', 17.0),)
    }
    assert state.source[("aliases", "m@staging")] == 6


def tables_as_logged() -> dict[str, Any]:
    """What the tables hold when nobody edited them (times the log does not know differ)."""
    state = replay(EVENTS)
    history = dict(state.history)
    canary = Move("promote", "ana", (("1.0.0", 1.0),), (("1.0.0", 0.9), ("1.0.1", 0.1)), 11.5)
    history["m@production"] = (history["m@production"][0], canary)
    return {
        "versions": state.versions,
        "aliases": state.aliases,
        "history": history,
        "tags": state.tags,
        "pins": state.pins,
        "lineage": {"m@1.0.0": state.lineage["m@1.0.0"], "m@1.0.1": (Link("data", "raw", "x", "blake3:bb", ""),)},
        "reproductions": state.reproductions,
    }


def test_untouched_tables_have_no_differences_and_unknowns_are_not_compared() -> None:
    assert differences(replay(EVENTS), RegistryState(**tables_as_logged())) == []


def test_each_difference_is_named_with_its_event() -> None:
    tables = tables_as_logged()
    tables["versions"] = {**tables["versions"], "m@1.0.0": Status("retired", "keep_last: 1", 20.0)}
    tables["aliases"] = {"m@production": (("1.0.1", 1.0),), "m@staging": (("1.0.0", 1.0),)}
    tables["tags"] = {}
    tables["pins"] = {"m@1.0.0": Pin("mallory", 0.0)}
    assert differences(replay(EVENTS), RegistryState(**tables)) == [
        "versions: m@1.0.0 is retired in the table, active in the log (event 1)",
        "aliases: m@production points to 1.0.1 but the log says 1.0.0 (0.9), 1.0.1 (0.1) (event 4)",
        "aliases: m@staging points to 1.0.0 but the log says nothing (event 6)",
        "tags: m@1.0.0 has no tag owner in the table, owner=team in the log (event 7)",
        "pins: m@1.0.0 is pinned in the table, not in the log (unpinned by event 10)",
        "pins: m@1.0.1 is not pinned in the table, pinned in the log (event 8)",
    ]


def test_a_registry_from_the_first_release_replays_and_an_edit_is_still_named(registry_url: str) -> None:
    make_version_1_registry(registry_url)  # old payloads: no times, no lineage, no row digest
    registry = Registry(registry_url, clock=Clock())
    try:
        assert registry.audit_problems() == []
        with registry.engine.begin() as conn:
            conn.execute(sa.text("UPDATE aliases SET weight = 0.5"))
        assert registry.audit_problems() == [
            "aliases: fraud@production points to 1.0.0 (0.5) but the log says 1.0.0 (event 2)"
        ]
    finally:
        registry.close()
