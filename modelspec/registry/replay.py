"""The registry's mutable state as its audit log says it must be: a pure fold of the events.

The versions' immutable rows are covered by the digest in their build events; everything
that changes afterwards (a version's status, aliases with their weights and history, tags,
pins, lineage, reproductions, gate verdicts) is rebuilt here from the events alone, so that `audit
--verify` can compare it with the tables and name every difference: an `UPDATE aliases`
behind the log's back is as visible as an edited event.

Events written by older releases lack some fields (the time a row was written, a
version's lineage); those fields are unknown (None) in the expected state and are not
compared. Event kinds that change no table (gc, schedule, notes) are skipped.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

Targets = tuple[tuple[str, float], ...]  # (version, weight), in version order


@dataclass(frozen=True)
class Status:
    status: str  # active | retired
    reason: str | None
    time: float | None  # None in the log: unknown (an older event) or never set


@dataclass(frozen=True)
class Move:
    """One row of an alias's history."""

    action: str  # promote | rollback | alias.rm
    actor: str
    before: Targets
    after: Targets
    time: float | None


@dataclass(frozen=True)
class Pin:
    actor: str
    time: float | None


@dataclass(frozen=True, order=True)
class Link:
    """One upstream input of a version (a row of `lineage`)."""

    kind: str
    name: str
    ref: str
    digest: str
    upstream: str  # name@version of the registered version it came from, or ''


@dataclass(frozen=True)
class Reproduction:
    """A reproduction's verdict, or a gate verdict (the same shape: who, what, why, when)."""

    actor: str
    verdict: str
    details: str  # canonical JSON
    time: float | None


@dataclass(frozen=True)
class RegistryState:
    """Keyed like the messages name things: versions by `name@version`, aliases by
    `name@alias`, tags by (`name@version`, key)."""

    versions: Mapping[str, Status] = field(default_factory=dict)
    aliases: Mapping[str, Targets] = field(default_factory=dict)
    history: Mapping[str, tuple[Move, ...]] = field(default_factory=dict)
    tags: Mapping[tuple[str, str], str] = field(default_factory=dict)
    pins: Mapping[str, Pin] = field(default_factory=dict)
    lineage: Mapping[str, tuple[Link, ...] | None] = field(default_factory=dict)  # None: not in the log
    reproductions: Mapping[str, tuple[Reproduction, ...]] = field(default_factory=dict)
    gates: Mapping[str, tuple[Reproduction, ...]] = field(default_factory=dict)
    # Which event set each entry (section, key) → seq; empty for the state read from tables.
    source: Mapping[tuple[Any, ...], int] = field(default_factory=dict)


def targets_of(pairs: Iterable[Iterable[Any]]) -> Targets:
    return tuple((str(version), float(weight)) for version, weight in pairs)


def details_text(details: Mapping[str, Any]) -> str:
    return json.dumps(details, sort_keys=True)


def replay(events: Iterable[Mapping[str, Any]]) -> RegistryState:
    """Fold events (in sequence order, payloads as JSON text or decoded) into the state."""
    versions: dict[str, Status] = {}
    aliases: dict[str, Targets] = {}
    history: dict[str, list[Move]] = {}
    tags: dict[tuple[str, str], str] = {}
    pins: dict[str, Pin] = {}
    lineage: dict[str, tuple[Link, ...] | None] = {}
    reproductions: dict[str, list[Reproduction]] = {}
    gates: dict[str, list[Reproduction]] = {}
    source: dict[tuple[Any, ...], int] = {}
    for event in events:
        kind, subject, actor, seq = event["kind"], event["subject"], event["actor"], int(event["seq"])
        payload = event["payload"]
        payload = json.loads(payload) if isinstance(payload, str) else dict(payload)
        at = payload.get("at")
        if kind == "build":
            versions[subject] = Status("active", None, None)
            links = payload.get("lineage")
            lineage[subject] = None if links is None else tuple(sorted(_link(item) for item in links))
            source[("versions", subject)] = source[("lineage", subject)] = seq
        elif kind == "revive":
            versions[subject] = Status("active", "rebuilt", at)
            source[("versions", subject)] = seq
        elif kind == "retire":
            versions[subject] = Status("retired", payload.get("reason"), at)
            source[("versions", subject)] = seq
        elif kind in ("promote", "rollback", "alias.rm"):
            before = targets_of(payload.get("from", []))
            after = targets_of(payload.get("to", [])) if kind != "alias.rm" else ()
            if after:
                aliases[subject] = after
            else:
                aliases.pop(subject, None)
            history.setdefault(subject, []).append(Move(kind, actor, before, after, at))
            source[("aliases", subject)] = seq
            source[("history", subject, len(history[subject]))] = seq
        elif kind == "tag":
            key = (subject, str(payload["key"]))
            tags[key] = str(payload["value"])
            source[("tags", key)] = seq
        elif kind == "pin":
            pins[subject] = Pin(actor, at)
            source[("pins", subject)] = seq
        elif kind == "unpin":
            pins.pop(subject, None)
            source[("pins", subject)] = seq
        elif kind in ("reproduce", "gate"):
            section, into = ("reproductions", reproductions) if kind == "reproduce" else ("gates", gates)
            details = {k: v for k, v in payload.items() if k not in ("verdict", "at")}
            found = into.setdefault(subject, [])
            found.append(Reproduction(actor, str(payload.get("verdict")), details_text(details), at))
            source[(section, subject, len(found))] = seq
    return RegistryState(
        versions=versions,
        aliases=aliases,
        history={k: tuple(v) for k, v in history.items()},
        tags=tags,
        pins=pins,
        lineage=lineage,
        reproductions={k: tuple(v) for k, v in reproductions.items()},
        gates={k: tuple(v) for k, v in gates.items()},
        source=source,
    )


def _link(item: Mapping[str, Any]) -> Link:
    return Link(item["kind"], item["name"], item["ref"], item["digest"], item.get("upstream") or "")


# -- comparing ---------------------------------------------------------------------------------


def differences(expected: RegistryState, actual: RegistryState) -> list[str]:
    """Every way the tables (`actual`) differ from what the log says (`expected`), named."""
    return [
        *_versions(expected, actual),
        *_aliases(expected, actual),
        *_sequences("alias history", "move", expected.history, actual.history, expected, "history"),
        *_tags(expected, actual),
        *_pins(expected, actual),
        *_lineage(expected, actual),
        *_sequences(
            "reproductions", "reproduction", expected.reproductions, actual.reproductions, expected, "reproductions"
        ),
        *_sequences("gate results", "gate verdict", expected.gates, actual.gates, expected, "gates"),
    ]


def _event(state: RegistryState, *key: Any) -> str:
    seq = state.source.get(key)
    return f" (event {seq})" if seq else ""


def _versions(expected: RegistryState, actual: RegistryState) -> list[str]:
    found = []
    for ref in sorted(expected.versions.keys() | actual.versions.keys()):
        want, have = expected.versions.get(ref), actual.versions.get(ref)
        if want == have or (want and have and want.time is None and want == replace(have, time=None)):
            continue  # the common case, decided without building a message
        where = _event(expected, "versions", ref)
        if have is None:
            found.append(f"versions: {ref} is missing from the table, registered in the log{where}")
        elif want is None:
            found.append(f"versions: {ref} is in the table, but no build event records it")
        elif have.status != want.status:
            found.append(f"versions: {ref} is {have.status} in the table, {want.status} in the log{where}")
        elif unlike := _unlike(want, have):
            found.append(f"versions: {ref} ({have.status}): {unlike}{where}")
    return found


def _aliases(expected: RegistryState, actual: RegistryState) -> list[str]:
    found = []
    for key in sorted(expected.aliases.keys() | actual.aliases.keys()):
        want, have = expected.aliases.get(key, ()), actual.aliases.get(key, ())
        if want != have:
            said = f"the log says {shown_targets(want)}" if ("aliases", key) in expected.source else "no event set it"
            found.append(f"aliases: {key} points to {shown_targets(have)} but {said}{_event(expected, 'aliases', key)}")
    return found


def _tags(expected: RegistryState, actual: RegistryState) -> list[str]:
    found = []
    for ref, key in sorted(expected.tags.keys() | actual.tags.keys()):
        want, have = expected.tags.get((ref, key)), actual.tags.get((ref, key))
        where = _event(expected, "tags", (ref, key))
        if have is None:
            found.append(f"tags: {ref} has no tag {key} in the table, {key}={want} in the log{where}")
        elif want is None:
            found.append(f"tags: {ref} has {key}={have} in the table, but no event set it")
        elif want != have:
            found.append(f"tags: {ref} has {key}={have} in the table, {key}={want} in the log{where}")
    return found


def _pins(expected: RegistryState, actual: RegistryState) -> list[str]:
    found = []
    for ref in sorted(expected.pins.keys() | actual.pins.keys()):
        want, have = expected.pins.get(ref), actual.pins.get(ref)
        where = _event(expected, "pins", ref)
        if have is None:
            found.append(f"pins: {ref} is not pinned in the table, pinned in the log{where}")
        elif want is None:
            unpinned = f" (unpinned by event {where[8:-1]})" if where else ""
            found.append(f"pins: {ref} is pinned in the table, not in the log{unpinned}")
        elif unlike := _unlike(want, have):
            found.append(f"pins: {ref}: {unlike}{where}")
    return found


def _lineage(expected: RegistryState, actual: RegistryState) -> list[str]:
    found = []
    for ref in sorted(expected.lineage.keys() | actual.lineage.keys()):
        want, have = expected.lineage.get(ref), actual.lineage.get(ref) or ()
        if want is None:
            continue  # an older build event did not record lineage
        where = _event(expected, "lineage", ref)
        for link in sorted(set(have) - set(want)):
            found.append(f"lineage: {ref} has {shown_link(link)} in the table, not in the log{where}")
        for link in sorted(set(want) - set(have)):
            found.append(f"lineage: {ref} lacks {shown_link(link)} in the table, recorded in the log{where}")
    return found


def _sequences(
    section: str,
    noun: str,
    want_all: Mapping[str, tuple[Any, ...]],
    have_all: Mapping[str, tuple[Any, ...]],
    expected: RegistryState,
    source: str,
) -> list[str]:
    """Histories (alias moves, reproductions): the first entry that differs, per key."""
    found = []
    for key in sorted(want_all.keys() | have_all.keys()):
        want, have = want_all.get(key, ()), have_all.get(key, ())
        for i in range(max(len(want), len(have))):
            where = _event(expected, source, key, i + 1)
            if i >= len(have) or (len(have) < len(want) and want[:i] + want[i + 1 :] == have):
                found.append(
                    f"{section}: {key} {noun} {i + 1} ({_summary(want[i])}) is missing from the table, "
                    f"recorded in the log{where}"
                )
            elif i >= len(want) or (len(want) < len(have) and have[:i] + have[i + 1 :] == want):
                found.append(
                    f"{section}: {key} {noun} {i + 1} ({_summary(have[i])}) is in the table, but no event records it"
                )
            elif unlike := _unlike(want[i], have[i]):
                found.append(f"{section}: {key} {noun} {i + 1}: {unlike}{where}")
            else:
                continue
            break
    return found


def _summary(entry: Move | Reproduction) -> str:
    if isinstance(entry, Move):
        return f"{entry.action} by {entry.actor}: {shown_targets(entry.before)} → {shown_targets(entry.after)}"
    return f"{entry.verdict} by {entry.actor}"


def _unlike(want: Any, have: Any) -> str:
    """The fields in which two records differ; a time the log does not know is not compared."""
    said = []
    for item in fields(want):
        expected, actual = getattr(want, item.name), getattr(have, item.name)
        if item.name == "time" and expected is None:
            continue
        if expected != actual:
            said.append(f"{item.name} {_shown(actual)} in the table, {_shown(expected)} in the log")
    return "; ".join(said)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return shown_targets(value)
    if isinstance(value, float) and value > 1e8:  # a timestamp
        return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    return repr(value)


def shown_targets(targets: Targets) -> str:
    if not targets:
        return "nothing"
    if len(targets) == 1 and targets[0][1] == 1.0:
        return targets[0][0]
    return ", ".join(f"{version} ({weight:g})" for version, weight in targets)


def shown_link(link: Link) -> str:
    upstream = f" from {link.upstream}" if link.upstream else ""
    return f"{link.kind} input {link.name} ({link.ref}, {link.digest}{upstream})"
