"""Finding versions: by reference (latest, version, minor, alias, content prefix), by
metric and tag, by alias, by status; and what each recorded beside its row."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..errors import UsageError
from ..spec.refs import MIN_PREFIX, Ref, parse_ref, parse_short_form, parse_version, short_content_id, too_short_prefix
from . import tables as t
from .versions import ModelVersion, select, version_of


def resolve(conn: sa.Connection, ref: str | Ref) -> ModelVersion:
    """The version a reference names; an ambiguous content prefix lists the candidates."""
    text = ref if isinstance(ref, str) else None
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    v = t.versions.c
    order = (v.major.desc(), v.minor.desc(), v.patch.desc())
    short = parse_short_form(text) if text is not None and "@" not in text else None
    if short is not None and conn.execute(sa.select(v.id).where(v.name == ref.name).limit(1)).first() is None:
        ref = short  # `fraud-3f2a9c01be`, unless a model is really named so
    base = select().where(v.name == ref.name)
    found: ModelVersion | None = None
    if ref.kind == "latest":
        found = _first(conn, base.order_by(*order).limit(1))
    elif ref.kind == "version":
        found = _first(conn, base.where(v.version == ref.value))
    elif ref.kind == "minor":
        major, minor, _ = parse_version(ref.value)
        found = _first(conn, base.where(v.major == major, v.minor == minor).order_by(*order).limit(1))
    else:
        if ref.kind == "alias" or ref.kind == "content":
            named = targets(conn, ref.name, ref.value)
            if len(named) == 1:
                found = named[0][0]
            elif len(named) > 1:
                split = ", ".join(f"{version.version} ({w:g})" for version, w in named)
                raise UsageError(f"{ref} splits traffic across {split}", hint="name one version")
        if found is None and ref.kind == "content":
            # A range, not LIKE, so that the (name, content_id) index serves it: every
            # hex digit sorts before "~".
            low = f"blake3:{ref.value}"
            prefixed = base.where(v.content_id >= low, v.content_id < low + "~")
            candidates = [version_of(r) for r in conn.execute(prefixed.order_by(v.major, v.minor, v.patch))]
            if len(candidates) > 1:
                shown = ", ".join(f"{c.version} ({short_content_id(c.name, c.content_id)})" for c in candidates)
                raise UsageError(f"{ref} is ambiguous: {shown}", hint="give more digits of the content id")
            found = candidates[0] if candidates else None
    if found is None:
        known = names(conn)
        hint = (
            f"`modelspec versions {ref.name}` lists its versions"
            if ref.name in known
            else (f"registered models: {', '.join(known) or 'none yet'}")
        )
        digits = too_short_prefix(ref)  # `fraud@abc`: no alias, and too short for a content-id prefix
        why = f" (a content-id prefix has at least {MIN_PREFIX} hex digits, {digits!r} has {len(digits)})"
        raise UsageError(f"no version {ref}" + (why if digits else ""), hint=hint)
    return found


def _first(conn: sa.Connection, query: sa.Select[Any]) -> ModelVersion | None:
    row = conn.execute(query).first()
    return None if row is None else version_of(row)


def names(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(t.versions.c.name).distinct().order_by(t.versions.c.name)).scalars())


def has_model(conn: sa.Connection, name: str) -> bool:
    v = t.versions.c
    return conn.execute(sa.select(v.id).where(v.name == name).limit(1)).first() is not None


def list_versions(
    conn: sa.Connection,
    name: str,
    where: list[tuple[str, str, float]] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[ModelVersion]:
    v = t.versions.c
    query = _filtered(select(), name, where, tags).order_by(v.major, v.minor, v.patch)
    return [version_of(r) for r in conn.execute(query)]


def _filtered(
    query: sa.Select[Any], name: str, where: list[tuple[str, str, float]] | None, tags: Mapping[str, str] | None
) -> sa.Select[Any]:
    """`query` on the versions of NAME that meet every metric condition and carry every tag."""
    # Joins, not correlated EXISTS: (version_id, key) is each table's primary key, so a join
    # adds no duplicates, and SQLite can start from the (key, value) index instead of
    # probing every version of the model (see benchmarks/registry_bench.py).
    v = t.versions.c
    query = query.where(v.name == name)
    for i, (metric, op, value) in enumerate(where or []):
        m = t.metrics.alias(f"m{i}")
        query = query.join(m, sa.and_(m.c.version_id == v.id, m.c.key == metric, _compare(m.c.value, op, value)))
    for i, (key, text) in enumerate((tags or {}).items()):
        tag = t.tags.alias(f"t{i}")
        query = query.join(tag, sa.and_(tag.c.version_id == v.id, tag.c.key == key, tag.c.value == text))
    return query


@dataclass(frozen=True)
class Page:
    """Where a page of versions starts: after or before a version (the cursor is the version
    string, so a person can type it), or the last page; none of them: the first page."""

    after: str | None = None
    before: str | None = None
    last: bool = False
    size: int = 50


def versions_page(
    conn: sa.Connection,
    name: str,
    where: list[tuple[str, str, float]] | None,
    tags: Mapping[str, str] | None,
    page: Page,
    metric: str | None = None,
    descending: bool = True,
) -> tuple[list[ModelVersion], bool, bool]:
    """One page of `list_versions`, in version order or by `metric` (versions without it are
    left out), read by keyset: the rows after (or before) the cursor's sort key, LIMIT
    size + 1, so the 1,000th page costs what the first does. Returns the versions in the
    order asked, and whether there are versions before and after the page."""
    v = t.versions.c
    query = _filtered(select(), name, where, tags)
    if metric is not None:
        s = t.metrics.alias("sort")
        query = query.join(s, sa.and_(s.c.version_id == v.id, s.c.key == metric))
        keys: tuple[Any, ...] = (s.c.value, v.id)
    else:
        keys = (v.major, v.minor, v.patch)
    backwards = page.before is not None or page.last  # read toward the start, then turn round
    reading_down = descending != backwards
    anchor = page.after or page.before
    if anchor is not None:
        key = _sort_key(conn, name, anchor, metric)
        query = query.where(sa.tuple_(*keys) < key if reading_down else sa.tuple_(*keys) > key)
    query = query.order_by(*(k.desc() if reading_down else k.asc() for k in keys)).limit(page.size + 1)
    found = [version_of(r) for r in conn.execute(query)]
    more = len(found) > page.size
    found = found[: page.size]
    if backwards:
        found.reverse()
        return found, more, page.before is not None
    return found, anchor is not None, more


def _sort_key(conn: sa.Connection, name: str, version: str, metric: str | None) -> tuple[Any, ...]:
    v, m = t.versions.c, t.metrics.c
    row: Any
    if metric is None:
        row = conn.execute(sa.select(v.major, v.minor, v.patch).where(v.name == name, v.version == version)).first()
    else:
        query = sa.select(m.value, v.id).join_from(t.versions, t.metrics, m.version_id == v.id)
        row = conn.execute(query.where(v.name == name, v.version == version, m.key == metric)).first()
    if row is None:
        why = f" with a metric {metric!r}" if metric else ""
        raise UsageError(f"no version {name}@{version}{why} to page from", hint="start again from the first page")
    return tuple(row)


def count_versions(
    conn: sa.Connection, name: str, where: list[tuple[str, str, float]] | None, tags: Mapping[str, str] | None
) -> int:
    query = _filtered(sa.select(sa.func.count()).select_from(t.versions), name, where, tags)
    return int(conn.execute(query).scalar() or 0)


def by_status(conn: sa.Connection, status: str) -> list[ModelVersion]:
    return [version_of(r) for r in conn.execute(select().where(t.versions.c.status == status))]


def metrics_of(conn: sa.Connection, version_ids: list[int]) -> dict[int, dict[str, float]]:
    found: dict[int, dict[str, float]] = {i: {} for i in version_ids}
    m = t.metrics.c
    for ids in among(conn, m.version_id, version_ids):
        for version_id, key, value, is_integer in conn.execute(
            sa.select(m.version_id, m.key, m.value, m.is_integer).where(ids)
        ):
            found[version_id][key] = int(value) if is_integer else value
    return found


def metric_names(conn: sa.Connection, name: str) -> list[str]:
    """Every metric any version of model NAME recorded, sorted."""
    m, v = t.metrics.c, t.versions.c
    query = sa.select(m.key).distinct().join_from(t.metrics, t.versions, m.version_id == v.id).where(v.name == name)
    return sorted(conn.execute(query).scalars())


def unknown_metrics(conn: sa.Connection, name: str, metrics: list[str]) -> list[str]:
    """Those of `metrics` that no version of model NAME recorded: one indexed probe each,
    not every metric of every version (what `metric_names` reads)."""
    m, v = t.metrics.c, t.versions.c
    probe = sa.select(m.key).join_from(t.metrics, t.versions, m.version_id == v.id).where(v.name == name).limit(1)
    return [metric for metric in metrics if conn.execute(probe.where(m.key == metric)).first() is None]


def artifacts_of(conn: sa.Connection, version_id: int) -> dict[str, dict[str, Any]]:
    rows = conn.execute(sa.select(t.artifacts).where(t.artifacts.c.version_id == version_id))
    return {r.name: {"type": r.type, "digest": r.digest, "size": r.size} for r in rows}


def tags_of(conn: sa.Connection, version_id: int) -> dict[str, str]:
    return {r.key: r.value for r in conn.execute(sa.select(t.tags).where(t.tags.c.version_id == version_id))}


def targets(conn: sa.Connection, name: str, alias: str) -> list[tuple[ModelVersion, float]]:
    """The versions NAME@ALIAS points to with their weights, in version order."""
    query = (
        select(t.aliases.c.weight)
        .join(t.aliases, t.aliases.c.version_id == t.versions.c.id)
        .where(t.aliases.c.name == name, t.aliases.c.alias == alias)
        .order_by(t.versions.c.major, t.versions.c.minor, t.versions.c.patch)
    )
    return [(version_of(r), r.weight) for r in conn.execute(query)]


def alias_names(conn: sa.Connection, name: str) -> list[str]:
    query = sa.select(t.aliases.c.alias).where(t.aliases.c.name == name).distinct().order_by(t.aliases.c.alias)
    return list(conn.execute(query).scalars())


def aliases_of(conn: sa.Connection, name: str) -> dict[int, list[str]]:
    """version id → the aliases pointing at it."""
    found: dict[int, list[str]] = {}
    for r in conn.execute(sa.select(t.aliases).where(t.aliases.c.name == name).order_by(t.aliases.c.alias)):
        found.setdefault(r.version_id, []).append(r.alias)
    return found


def _compare(column: Any, op: str, value: float) -> Any:
    return {
        ">": column > value,
        ">=": column >= value,
        "<": column < value,
        "<=": column <= value,
        "==": column == value,
        "!=": column != value,
    }[op]


def among(conn: sa.Connection, column: Any, ids: list[int]) -> Iterator[Any]:
    """Conditions `column IN ids`, in as few statements as the backend allows: one array
    parameter on PostgreSQL (`= ANY`: one statement, compiled once, whatever the count),
    a few hundred ids per IN list elsewhere (SQLite's parameter limit)."""
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        # One array, sent as its text ('{1,2,3}') and cast by the server: the driver adapts a
        # list element by element (20 ms for 2,000 ids), a string at once.
        text = "{" + ",".join(str(int(i)) for i in ids) + "}"
        yield column == sa.any_(sa.cast(sa.bindparam(None, text, type_=sa.Text), sa.ARRAY(sa.Integer)))
        return
    for chunk in chunks(ids):
        yield column.in_(chunk)


def chunks(items: list[int], size: int = 500) -> Iterator[list[int]]:
    """Ids a few hundred at a time: an IN list stays under every database's parameter limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
