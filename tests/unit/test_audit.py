"""The tamper-evident audit log: the pure hash chain, and the registry's log on a real
SQLite file edited behind the registry's back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from modelspec.registry.audit import GENESIS, event_digest, verify_chain
from modelspec.registry.registry import Registry


def chain(count: int) -> list[dict[str, Any]]:
    rows, prev = [], GENESIS
    for seq in range(1, count + 1):
        row = {
            "seq": seq,
            "time": 1_800_000_000.0 + seq,
            "kind": "build",
            "actor": "ana",
            "subject": f"fraud@1.0.{seq}",
            "payload": json.dumps({"n": seq}),
            "prev": prev,
        }
        row["digest"] = event_digest(**row)
        rows.append(row)
        prev = row["digest"]
    return rows


def redigest(row: dict[str, Any]) -> None:
    row["digest"] = event_digest(**{k: v for k, v in row.items() if k != "digest"})


def test_an_untouched_chain_verifies() -> None:
    assert verify_chain(chain(5)) == ""
    assert verify_chain([]) == ""


def test_event_digest_covers_every_field() -> None:
    base = chain(1)[0]
    fields = {k: v for k, v in base.items() if k != "digest"}
    digest = event_digest(**fields)
    assert digest == base["digest"] and digest.startswith("blake3:")
    changed = {
        "seq": 2,
        "time": fields["time"] + 0.001,
        "kind": "promote",
        "actor": "eve",
        "subject": "x@1.0.0",
        "payload": "{}",
        "prev": "blake3:" + "1" * 64,
    }
    for key, value in changed.items():
        assert event_digest(**{**fields, key: value}) != digest, key


def test_an_edited_payload_is_named() -> None:
    rows = chain(5)
    rows[2]["payload"] = json.dumps({"n": 999})
    assert verify_chain(rows) == "event 3 (build fraud@1.0.3) was edited"


def test_an_edit_with_a_recomputed_digest_breaks_the_next_link() -> None:
    rows = chain(5)
    rows[2]["payload"] = json.dumps({"n": 999})
    redigest(rows[2])
    assert verify_chain(rows) == "event 4 does not follow event 3: an event was deleted or inserted"


def test_a_deleted_middle_event_is_named() -> None:
    rows = chain(5)
    del rows[1]
    assert verify_chain(rows) == "event 2 is missing (the log jumps to 3)"


def test_a_deleted_and_renumbered_event_breaks_the_chain() -> None:
    rows = chain(5)
    del rows[1]
    for row in rows[1:]:
        row["seq"] -= 1
    assert verify_chain(rows) == "event 2 does not follow event 1: an event was deleted or inserted"


def test_an_inserted_event_is_named() -> None:
    rows = chain(4)
    forged = {**rows[1], "subject": "fraud@9.9.9", "prev": rows[1]["digest"], "seq": 3}
    redigest(forged)
    for row in rows[2:]:
        row["seq"] += 1
    rows.insert(2, forged)
    # The forged event links correctly; the one after it does not.
    assert verify_chain(rows) == "event 4 does not follow event 3: an event was deleted or inserted"


def test_a_chain_not_starting_at_genesis_is_refused() -> None:
    rows = chain(3)[1:]
    assert verify_chain(rows) == "event 1 is missing (the log jumps to 2)"
    rows = chain(2)
    rows[0]["prev"] = "blake3:" + "f" * 64
    redigest(rows[0])
    assert verify_chain(rows) == "event 1 does not follow event 0: an event was deleted or inserted"


# -- the registry's log on a real database (SQLite and PostgreSQL) ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 60.0
        return self.now


@pytest.fixture
def logged(registry_url: str) -> Iterator[tuple[Registry, str]]:
    """Five events in a registry on each backend."""
    registry = Registry(registry_url, clock=Clock())
    for i in range(1, 6):
        registry.record_event("note", f"subject-{i}", "ana", {"i": i})
    yield registry, registry_url
    registry.close()


def tamper(url: str, *statements: tuple[str, dict[str, Any]]) -> None:
    """Edit the database directly, as someone with write access to it could."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for sql, params in statements:
            conn.execute(sa.text(sql), params)
    engine.dispose()


INSERT_EVENT = (
    "INSERT INTO events (seq, time, kind, actor, subject, payload, prev, digest) "
    "VALUES (:seq, :time, :kind, :actor, :subject, :payload, :prev, :digest)"
)


def test_registry_log_untouched_verifies(logged: tuple[Registry, str]) -> None:
    registry, _path = logged
    assert registry.verify_audit() == ""
    events = registry.events()
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["prev"] == GENESIS
    assert [e["payload"] for e in events] == [{"i": i} for i in range(1, 6)]
    assert [e["seq"] for e in registry.events(limit=2)] == [4, 5]
    assert [e["time"] for e in events] == [1_800_000_060.0 + 60 * i for i in range(5)]


def test_registry_log_edited_payload(logged: tuple[Registry, str]) -> None:
    registry, path = logged
    tamper(path, ("UPDATE events SET payload = :p WHERE seq = 3", {"p": json.dumps({"i": 42})}))
    assert registry.verify_audit() == "event 3 (note subject-3) was edited"


def test_registry_log_deleted_middle_event(logged: tuple[Registry, str]) -> None:
    registry, path = logged
    tamper(path, ("DELETE FROM events WHERE seq = 2", {}))
    assert registry.verify_audit() == "event 2 is missing (the log jumps to 3)"


def test_registry_log_inserted_event(logged: tuple[Registry, str]) -> None:
    registry, path = logged
    rows = registry.events()
    # Make room after event 2 and insert a well-formed event that links to it.
    forged = {
        "seq": 3,
        "time": rows[1]["time"] + 1,
        "kind": "promote",
        "actor": "mallory",
        "subject": "fraud@production",
        "payload": "{}",
        "prev": rows[1]["digest"],
    }
    forged["digest"] = event_digest(**forged)
    tamper(
        path,
        ("UPDATE events SET seq = seq + 100 WHERE seq >= 3", {}),
        ("UPDATE events SET seq = seq - 99 WHERE seq >= 100", {}),
        (INSERT_EVENT, forged),
    )
    assert registry.verify_audit() == "event 4 does not follow event 3: an event was deleted or inserted"


def test_registry_log_event_appended_behind_the_registrys_back(logged: tuple[Registry, str]) -> None:
    registry, path = logged
    last = registry.events()[-1]
    forged = {
        "seq": 6,
        "time": last["time"] + 1,
        "kind": "promote",
        "actor": "mallory",
        "subject": "fraud@production",
        "payload": "{}",
        "prev": last["digest"],
    }
    forged["digest"] = event_digest(**forged)
    tamper(path, (INSERT_EVENT, forged))
    assert registry.verify_audit() == "event 6 was added after the recorded head (event 5)"


def test_registry_log_deleted_newest_event(logged: tuple[Registry, str]) -> None:
    registry, path = logged
    tamper(path, ("DELETE FROM events WHERE seq = 5", {}))
    problem = registry.verify_audit()
    assert problem.startswith("event 5 is missing: the log ends at event 4"), problem


def test_registry_log_all_events_deleted(logged: tuple[Registry, str]) -> None:
    registry, path = logged
    tamper(path, ("DELETE FROM events", {}))
    assert registry.verify_audit().startswith("event 1 is missing: the log ends at event 0")


def test_registry_log_new_events_continue_the_chain(logged: tuple[Registry, str]) -> None:
    registry, _path = logged
    registry.record_event("note", "subject-6", "ana", {"i": 6})
    reopened = Registry(registry.url)
    try:
        assert reopened.verify_audit() == ""
        assert reopened.events()[-1]["prev"] == registry.events()[-2]["digest"]
    finally:
        reopened.close()
