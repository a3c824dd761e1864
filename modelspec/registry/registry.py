"""The model registry: immutable versions, aliases with history, tags, lineage and the
audit log, through SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL for a team (a
`registry:` URL in modelspec.yaml, or MODELSPEC_REGISTRY_URL).

`Registry` is the façade. Opening the database, checking that the store recognises the
registry, the read and write transactions and turning the database's failures into a
`StoreError` are its base class's (`database.Database`). What each call does lives in the
module of its concern: `versions` (the record and its columns), `queries`, `aliases`,
`status` (retire, revive, pin), `facts` (what retention sees), `lineage` (and
reproductions), `audit` (the log) and `verify` (`audit --verify`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..spec.refs import Ref
from . import aliases, audit, gates, lineage, queries, status, transfer, verify, versions
from .aliases import primary_target
from .database import Database
from .facts import VersionFacts, retention_facts
from .status import Revival, retired_error
from .versions import MARKS, ModelVersion, VersionConflictError, VersionDraft

# What other modules import from here; each is defined in the module of its concern.
__all__ = [
    "MARKS",
    "ModelVersion",
    "Registry",
    "Revival",
    "VersionConflictError",
    "VersionDraft",
    "primary_target",
    "retired_error",
]


class Registry(Database):
    """Use as `with Registry.at(path) as registry:`; leaving the block closes the engine."""

    # -- the registry as a whole -----------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Backend, URL (without a password), schema version, identity, audit head, counts."""
        with self._read() as conn:
            return {"backend": self.backend, "url": self.url_shown, **transfer.info(conn)}

    def copy_to(self, url: str) -> tuple[dict[str, Any], list[str]]:
        """Copy every row into the empty registry at `url` (made there if need be): what the
        copy holds (`info`), and what `audit --verify` finds wrong with it ([] when intact)."""
        with Registry(url, clock=self.clock) as target:
            with self._read() as source, target._write() as w:
                transfer.copy(source, w, target.shown)
            return target.info(), target.audit_problems()

    # -- audit -----------------------------------------------------------------------------

    def record_event(self, kind: str, subject: str, actor: str, payload: Mapping[str, Any]) -> None:
        with self._write() as w:
            w.event(kind, subject, actor, payload)

    def events(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The log in order; with `limit`, only the newest events (read from the end, not all)."""
        with self._read() as conn:
            return audit.events(conn, limit)

    def verify_audit(self) -> str:
        """'' if the audit log is intact and the tables agree with it, else what was
        tampered with (each difference, separated by '; ')."""
        return "; ".join(self.audit_problems())

    def audit_problems(self) -> list[str]:
        """What was tampered with (see verify.audit_problems), and whether the store does not
        recognise this registry. [] when intact."""
        recorded = self._recorded_head()
        with self._read() as conn:
            foreign = self._head_problem(conn, recorded)
            unrecognised = foreign and f"the store does not recognise this registry: {foreign[0]} ({self.head_file})"
            return verify.audit_problems(conn, unrecognised or "")

    # -- versions --------------------------------------------------------------------------

    def register(self, draft: VersionDraft) -> tuple[ModelVersion, bool, Revival | None]:
        """Record a new version, or find the one that already has this content (False); a
        retired one is revived, and the third item says what it was."""
        with self._write() as w:
            existing = versions.by_content(w.conn, draft.name, draft.content_id)
            if existing is not None and existing.status == "active":
                return existing, False, None
            if existing is not None:
                revived, was = status.revive(w, existing, draft.author)
                return revived, False, was
            version = versions.insert(w, draft)
            links = lineage.record(w.conn, version.id, draft.lineage)
            payload = {
                "content_id": draft.content_id,
                "commit": draft.commit,
                "metrics": dict(draft.metrics),
                "row": versions.row_digest(w.conn, version.id),
                "lineage": links,
            }
            w.event("build", version.ref, draft.author, payload)
            return version, True, None

    def resolve(self, ref: str | Ref) -> ModelVersion:
        """The version a reference names; an ambiguous content prefix lists the candidates."""
        with self._read() as conn:
            return queries.resolve(conn, ref)

    def names(self) -> list[str]:
        with self._read() as conn:
            return queries.names(conn)

    def has_model(self, name: str) -> bool:
        """Whether a version of model NAME is registered: one index probe, not `names()`."""
        with self._read() as conn:
            return queries.has_model(conn, name)

    def list_versions(
        self,
        name: str,
        where: list[tuple[str, str, float]] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[ModelVersion]:
        with self._read() as conn:
            return queries.list_versions(conn, name, where, tags)

    def versions_page(
        self,
        name: str,
        where: list[tuple[str, str, float]] | None,
        tags: Mapping[str, str] | None,
        page: queries.Page,
        metric: str | None = None,
        descending: bool = True,
    ) -> tuple[list[ModelVersion], bool, bool]:
        """A page of `list_versions` by keyset (see queries.versions_page)."""
        with self._read() as conn:
            return queries.versions_page(conn, name, where, tags, page, metric, descending)

    def count_versions(
        self, name: str, where: list[tuple[str, str, float]] | None = None, tags: Mapping[str, str] | None = None
    ) -> int:
        with self._read() as conn:
            return queries.count_versions(conn, name, where, tags)

    def versions_by_status(self, status: str) -> list[ModelVersion]:
        with self._read() as conn:
            return queries.by_status(conn, status)

    def metrics_of(self, version_ids: list[int]) -> dict[int, dict[str, float]]:
        with self._read() as conn:
            return queries.metrics_of(conn, version_ids)

    def metric_names(self, name: str) -> list[str]:
        """Every metric any version of model NAME recorded, sorted."""
        with self._read() as conn:
            return queries.metric_names(conn, name)

    def unknown_metrics(self, name: str, metrics: list[str]) -> list[str]:
        """Those of `metrics` that no version of model NAME recorded."""
        with self._read() as conn:
            return queries.unknown_metrics(conn, name, metrics)

    def artifacts_of(self, version: ModelVersion) -> dict[str, dict[str, Any]]:
        with self._read() as conn:
            return queries.artifacts_of(conn, version.id)

    def tags_of(self, version: ModelVersion) -> dict[str, str]:
        with self._read() as conn:
            return queries.tags_of(conn, version.id)

    def tag(self, ref: str, key: str, value: str, actor: str) -> ModelVersion:
        version = self.resolve(ref)
        with self._write() as w:
            versions.tag(w, version, key, value, actor)
        return version

    # -- aliases ---------------------------------------------------------------------------

    def aliases_of(self, name: str) -> dict[int, list[str]]:
        """version id → the aliases pointing at it."""
        with self._read() as conn:
            return queries.aliases_of(conn, name)

    def alias_targets(self, name: str, alias: str) -> list[tuple[ModelVersion, float]]:
        with self._read() as conn:
            return queries.targets(conn, name, alias)

    def alias_names(self, name: str) -> list[str]:
        with self._read() as conn:
            return queries.alias_names(conn, name)

    def promote(
        self, ref: str, alias: str, actor: str, weight: float | None = None, force_reason: str | None = None
    ) -> list[list[Any]]:
        """Point `alias` at a version; with `weight`, add it beside the current targets (a
        canary) and scale the others so that the weights sum to 1."""
        aliases.check_promotion(ref, alias, weight)
        version = self.resolve(ref)
        aliases.check_promotable(version)
        with self._write() as w:
            gates.accept(w, version, alias, actor, force_reason)
            return aliases.promote(w, version, alias, actor, weight)

    def rollback(self, name: str, alias: str, actor: str) -> list[list[Any]]:
        """Point `alias` back at what it pointed to before its last move."""
        with self._write() as w:
            return aliases.rollback(w, name, alias, actor)

    def remove_alias(self, name: str, alias: str, actor: str) -> list[list[Any]]:
        """Remove NAME@ALIAS; returns the [version, weight] pairs it pointed to. Its history
        stays, with this removal as the newest move, so a rollback restores it."""
        with self._write() as w:
            return aliases.remove(w, name, alias, actor)

    def alias_history(self, name: str, alias: str, newest: int | None = None) -> list[dict[str, Any]]:
        with self._read() as conn:
            return aliases.history(conn, name, alias, newest)

    # -- retention -------------------------------------------------------------------------

    def pin(self, ref: str, actor: str, pinned: bool = True) -> tuple[ModelVersion, bool]:
        """Pin (or unpin) a version; False when it already was (or was not) pinned, which
        changes nothing and writes no audit event."""
        version = self.resolve(ref)
        if pinned:
            status.check_pinnable(version)
        with self._write() as w:
            return version, status.pin(w, version, actor, pinned)

    def pins_of(self, version_ids: list[int]) -> dict[int, dict[str, Any]]:
        """version id → when and by whom it was pinned, for the pinned ones among them."""
        with self._read() as conn:
            return status.pins_of(conn, version_ids)

    def retention_facts(self) -> dict[str, list[VersionFacts]]:
        """Every version of every model with what retention looks at, in a few queries."""
        with self._read() as conn:
            return retention_facts(conn)

    def retire(self, reasons: Mapping[int, str], actor: str) -> list[int]:
        """Mark versions retired; the ids an alias points to now are skipped and returned."""
        with self._write() as w:
            return status.retire(w, reasons, actor)

    # -- lineage and reproductions ---------------------------------------------------------

    def lineage(self, version: ModelVersion) -> dict[str, Any]:
        with self._read() as conn:
            return lineage.lineage(conn, version.id)

    def record_reproduction(self, version: ModelVersion, verdict: str, details: Mapping[str, Any], actor: str) -> None:
        with self._write() as w:
            lineage.record_reproduction(w, version.id, version.ref, verdict, details, actor)

    def reproductions_of(self, version: ModelVersion) -> list[dict[str, Any]]:
        with self._read() as conn:
            return lineage.reproductions(conn, version.id)

    def judge_gates(self, version: ModelVersion, of: Iterable[gates.Check], by: str, always: bool) -> gates.GateVerdict:
        with self._write() as w:
            return gates.judge(w, version, of, by, always)

    def read(self, query: Callable[..., Any], *args: Any) -> Any:  # gates.latest, series.metric_series...
        with self._read() as conn:
            return query(conn, *args)
