"""Registry queries and actions for the CLI: list, show, diff, pin, promote, rollback, tag,
aliases, lineage, export, deploy-config and audit. Values in, dicts out; nothing prints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .auditing import audit_log
from .errors import StoreError, UsageError, did_you_mean
from .handoff import deploy_config, export_version
from .registry.anchor import checkpoint
from .registry.gates import latest as latest_verdicts
from .registry.queries import Page
from .registry.registry import ModelVersion, Registry, primary_target
from .registry.series import best_value
from .registry.versiondiff import diff_versions, packages_of
from .resolve import gitcode
from .spec.refs import parse_ref, parse_where
from .store.footprint import footprint
from .store.objects import Entry, LocalStore
from .store.workspace import Workspace


@dataclass(frozen=True)
class Resolution:
    """The version a reference names. An alias that splits traffic names its primary
    target (the largest weight; on a tie, the older version), and keeps every target."""

    version: ModelVersion
    alias: str | None = None  # `fraud@production`, when it splits traffic
    targets: tuple[tuple[ModelVersion, float], ...] = ()  # every target of the split, oldest first

    @property
    def notice(self) -> str:
        """What a command acting on one version says when it was handed a split alias."""
        if not self.targets:
            return ""
        split = ", ".join(f"{v.version} ({w:g})" for v, w in self.targets)
        return f"{self.alias} splits traffic across {split}: using its primary target {self.version.ref}"


def shown_status(version: ModelVersion, gate: dict[str, Any] | None) -> str:
    """`rejected` for an active version whose newest gate verdict failed; else its status
    (retired outranks rejected: its artifacts are gone either way)."""
    if version.status == "active" and gate is not None and gate["verdict"] == "failed":
        return "rejected"
    return version.status


class Catalog:
    """The registry and store of one workspace; `with open_catalog(...) as catalog:` closes
    the registry however the block ends."""

    def __init__(self, workspace: Workspace, registry: Registry) -> None:
        self.workspace = workspace
        self.registry = registry
        self.store: LocalStore = workspace.store  # deploy_config hands out object paths

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    @property
    def actor(self) -> str:
        """Who an action of this process is recorded as, in the audit log."""
        from .build.registration import actor

        return actor(self.workspace.root)

    @property
    def repo_root(self) -> Path | None:
        """The git repository of the workspace (None outside one), where `diff` looks for
        the paths whose code changed."""
        from .spec.load import find_repo_root

        return find_repo_root(self.workspace.root)

    # -- reading ---------------------------------------------------------------------------

    def versions(self, name: str, where: str = "", tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        conditions = parse_where(where) if where else None
        if conditions:
            self._known_metrics(name, [metric for metric, _op, _value in conditions])
        found = self.registry.list_versions(name, conditions, tags)
        if not found and name not in self.registry.names():
            raise UsageError(
                f"no model named {name!r}", hint=f"registered: {', '.join(self.registry.names()) or 'none'}"
            )
        return self._rows(name, found)

    def versions_page(
        self,
        name: str,
        where: str = "",
        tags: dict[str, str] | None = None,
        page: Page | None = None,
        sort: str | None = None,
        descending: bool = True,
    ) -> dict[str, Any]:
        """One page of `versions` (the same rows), in version order or by metric `sort`, read
        by keyset (fast at any depth): the rows, the count, and the cursors of the pages
        before and after it (None at either end)."""
        page = page or Page()
        conditions = parse_where(where) if where else None
        self._known_metrics(name, [metric for metric, _op, _value in conditions or []] + ([sort] if sort else []))
        found, before, after = self.registry.versions_page(name, conditions, tags, page, sort, descending)
        return {
            "name": name,
            "count": self.registry.count_versions(name, conditions, tags),
            "versions": self._rows(name, found),
            "before": found[0].version if found and before else None,
            "after": found[-1].version if found and after else None,
        }

    def _rows(self, name: str, found: list[ModelVersion]) -> list[dict[str, Any]]:
        """`versions`' row of each version: metrics, aliases and weights, status, gate, pin."""
        metrics = self.registry.metrics_of([v.id for v in found])
        aliases = self.registry.aliases_of(name)
        weights: dict[int, dict[str, float]] = {}  # version id → alias → its share of the traffic
        for alias in self.registry.alias_names(name):
            for version, weight in self.registry.alias_targets(name, alias):
                weights.setdefault(version.id, {})[alias] = weight
        pins = self.registry.pins_of([v.id for v in found])
        gates = self.registry.read(latest_verdicts, [v.id for v in found])
        return [
            {
                "version": v.version,
                "ref": v.ref,
                "content_id": v.short_id,
                "created": v.created,
                "metrics": metrics[v.id],
                "aliases": aliases.get(v.id, []),
                "alias_weights": weights.get(v.id, {}),
                "status": shown_status(v, gates.get(v.id)),
                "gate": gates[v.id]["verdict"] if v.id in gates else None,
                "pinned": v.id in pins,
                "marks": v.marks,
                "dirty": v.dirty,
                "hermetic": v.hermetic,
            }
            for v in found
        ]

    def models(self) -> list[dict[str, Any]]:
        """Every model: its latest version, how many it has, its aliases and its best value of
        its headline metric (see `headline`)."""
        found = []
        for name in self.registry.names():
            latest = self.registry.resolve(f"{name}@latest")
            metric, higher = self.headline(latest)
            best = self.registry.read(best_value, name, metric, higher) if metric else None
            found.append(
                {
                    "name": name,
                    "latest": {"version": latest.version, "created": latest.created, "status": latest.status},
                    "versions": self.registry.count_versions(name),
                    "aliases": self.aliases(name),
                    "metric": metric,
                    "higher_is_better": higher,
                    "best": {"version": best[0], "value": best[1]} if best else None,
                }
            )
        return found

    def headline(self, version: ModelVersion) -> tuple[str | None, bool]:
        """The metric a model is judged by: its first quality gate's (with the gate's
        direction), else the first metric of its latest version, higher being better unless
        its name says it is a loss, an error or a cost."""
        gate = self.registry.read(latest_verdicts, [version.id]).get(version.id)
        for result in (gate or {}).get("details", {}).get("results", []):
            return result["gate"]["metric"], result["gate"].get("direction", "higher") == "higher"
        metrics = sorted(self.registry.metrics_of([version.id])[version.id])
        if not metrics:
            return None, True
        return metrics[0], self.higher_is_better(metrics[0])

    @staticmethod
    def higher_is_better(metric: str) -> bool:
        """A guess from the name, where no gate says: a loss, an error, a latency or a cost is
        better lower; anything else (auc, f1, accuracy) higher."""
        lower = ("loss", "error", "latency", "mse", "mae", "rmse", "seconds", "_ms", "cost", "time")
        return not any(word in metric.lower() for word in lower)

    def resolve(self, ref: str) -> Resolution:
        """Like `Registry.resolve`, but an alias that splits traffic is not an error: a
        query or an export acts on its primary target and can say so."""
        if "@" in ref:
            parsed = parse_ref(ref)
            if parsed.kind in ("alias", "content"):  # an alias spelled like hex is looked up first
                targets = self.registry.alias_targets(parsed.name, parsed.value)
                if len(targets) > 1:
                    primary = primary_target(targets)
                    return Resolution(primary, f"{parsed.name}@{parsed.value}", tuple(targets))
        return Resolution(self.registry.resolve(ref))

    def show(self, ref: str) -> dict[str, Any]:
        resolution = self.resolve(ref)
        info = self._info(resolution.version)
        info["stored"] = {name: footprint(self.store, Entry.from_dict(a)) for name, a in info["artifacts"].items()}
        if resolution.targets:
            info["traffic"] = {
                "alias": resolution.alias,
                "targets": [
                    {"ref": v.ref, "weight": w, "primary": v.id == resolution.version.id} for v, w in resolution.targets
                ],
            }
        return info

    def _info(self, version: ModelVersion) -> dict[str, Any]:
        gate = self.registry.read(latest_verdicts, [version.id]).get(version.id)
        return {
            **version.to_dict(),
            "status": shown_status(version, gate),
            "gates": gate,  # the newest verdict (every one is in the audit log)
            "metrics": self.registry.metrics_of([version.id])[version.id],
            "artifacts": self.registry.artifacts_of(version),
            "tags": self.registry.tags_of(version),
            "aliases": self.registry.aliases_of(version.name).get(version.id, []),
            "lineage": self.registry.lineage(version),
            "reproductions": self.registry.reproductions_of(version),
            "pinned": self.registry.pins_of([version.id]).get(version.id),
        }

    def lock_of(self, version: ModelVersion) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.store.read_bytes(version.lock))
        return document

    def diff(self, ref_a: str, ref_b: str, repo: Path | None) -> dict[str, Any]:
        va, vb = self.resolve(ref_a).version, self.resolve(ref_b).version
        a, b = self._info(va), self._info(vb)
        lock_a, lock_b = self.lock_of(va), self.lock_of(vb)
        paths = sorted({p for lock in (lock_a, lock_b) for s in lock["stages"].values() for p in s["code"]["paths"]})
        changed: list[str] | None = None
        if repo is not None and paths:
            try:
                out = gitcode.git(
                    repo, "diff", "--name-only", lock_a["code"]["commit"], lock_b["code"]["commit"], "--", *paths
                )
                changed = out.decode().split()
            except Exception:  # the commits may be gone (rewritten history): digests still compare
                changed = None
        return diff_versions(a, b, lock_a, lock_b, self._packages(lock_a), self._packages(lock_b), changed)

    def _packages(self, lock: dict[str, Any]) -> dict[str, str]:
        environment = lock.get("environment")
        if not environment or environment.get("kind") != "uv":
            return {}
        try:
            text = self.store.read_bytes(environment["file_digest"]).decode()
        except StoreError:
            return {}
        return packages_of(text, environment["file"])

    def lineage(self, ref: str) -> dict[str, Any]:
        version = self.resolve(ref).version
        return {"ref": version.ref, **self.registry.lineage(version)}

    def _known_metrics(self, name: str, metrics: list[str]) -> None:
        """A condition on a metric no version recorded would silently match nothing."""
        self._known_model(name)
        unknown = self.registry.unknown_metrics(name, metrics)
        if not unknown:
            return
        known = self.registry.metric_names(name)  # only to say what there is
        for metric in unknown:
            if metric not in known:
                raise UsageError(
                    f"--where: no version of {name} has a metric {metric!r}{did_you_mean(metric, known)}",
                    hint=f"the metrics of {name}: {', '.join(known) or 'none'}",
                )

    def _known_model(self, name: str) -> None:
        if self.registry.has_model(name):
            return
        known = self.registry.names()  # only to say what there is
        if name not in known:
            raise UsageError(f"no model named {name!r}", hint=f"registered: {', '.join(known) or 'none'}")

    def aliases(self, name: str) -> list[dict[str, Any]]:
        """Every alias of model NAME: its targets with their weights, and its last move."""
        self._known_model(name)
        found = []
        for alias in self.registry.alias_names(name):
            last = self.registry.alias_history(name, alias, newest=1)
            found.append(
                {
                    "alias": alias,
                    "targets": [[v.version, w] for v, w in self.registry.alias_targets(name, alias)],
                    "moved": {k: last[0][k] for k in ("time", "actor", "action")} if last else None,
                }
            )
        return found

    def alias_history(self, name: str, alias: str, at: float | None = None) -> dict[str, Any]:
        history = self.registry.alias_history(name, alias)
        if not history:
            self._known_model(name)
            known = self.registry.alias_names(name)
            raise UsageError(
                f"{name}@{alias} has never been set: it has no history",
                hint=f"aliases of {name}: {', '.join(known)}"
                if known
                else f"set it with `modelspec promote {name}@VERSION {alias}`",
            )
        result: dict[str, Any] = {"name": name, "alias": alias, "history": history}
        if at is not None:
            before = [h for h in history if h["time"] <= at]
            result["at"] = {"time": at, "targets": before[-1]["to"] if before else []}
        return result

    def audit(self, verify: bool, limit: int | None = None) -> dict[str, Any]:
        return audit_log(self.registry, self.workspace, verify, limit)

    def checkpoint(self) -> dict[str, Any]:
        """`audit checkpoint`: anchor the audit log's head now (also done by gc, promote, rollback)."""
        return checkpoint(self.registry, self.store, self.workspace.home).to_dict()

    def info(self) -> dict[str, Any]:
        """`registry info`: the backend, URL (never a password), schema version and counts."""
        return self.registry.info()

    # -- writing ---------------------------------------------------------------------------

    def copy_registry(self, url: str) -> dict[str, Any]:
        """`registry copy --to URL`: the whole registry into an empty database; what the copy
        holds, and whether its audit log verifies there."""
        copied, problems = self.registry.copy_to(url)
        source = self.registry.info()
        if problems or copied["counts"] != source["counts"]:
            raise StoreError(
                f"the copy at {copied['url']} does not match its source: {'; '.join(problems) or 'counts differ'}",
                hint="drop the target database and copy again",
            )
        return {"from": source["url"], "to": copied["url"], **{k: copied[k] for k in ("backend", "counts")}}

    def pin(self, ref: str, pinned: bool = True) -> tuple[ModelVersion, bool]:
        """Keep REF whatever retention says (or, `pinned` False, let it decide again); and
        whether that changed anything."""
        return self.registry.pin(ref, self.actor, pinned)

    def promote(
        self, ref: str, alias: str, weight: float | None = None, force_reason: str | None = None
    ) -> tuple[str, list[list[Any]]]:
        """Point ALIAS of REF's model at REF (beside the current targets with `weight`): the
        model's name and the alias's targets now. A version its gates rejected needs
        `force_reason`, recorded with the override."""
        targets = self.registry.promote(ref, alias, self.actor, weight, force_reason)
        checkpoint(self.registry, self.store, self.workspace.home)
        return self.registry.resolve(ref).name, targets

    def rollback(self, name: str, alias: str) -> list[list[Any]]:
        """Point NAME@ALIAS back at its previous targets, which it returns."""
        targets = self.registry.rollback(name, alias, self.actor)
        checkpoint(self.registry, self.store, self.workspace.home)
        return targets

    def remove_alias(self, name: str, alias: str) -> list[Any]:
        """Remove NAME@ALIAS (audited); the targets it had."""
        return self.registry.remove_alias(name, alias, self.actor)

    def tag(self, ref: str, tags: dict[str, str]) -> tuple[ModelVersion, dict[str, str]]:
        """Set each tag on REF, in order; the version and all its tags now."""
        version = None
        for key, value in tags.items():
            version = self.registry.tag(ref, key, value, self.actor)
        version = version or self.registry.resolve(ref)
        return version, self.registry.tags_of(version)

    def export(self, ref: str, target: Path) -> dict[str, Any]:
        """Artifacts plus manifest.json (digests and the lock), each digest verified on the way out."""
        version = self.resolve(ref).version
        return export_version(self.registry, self.store, version, target)

    def deploy_config(self, name: str, alias: str | None = None) -> dict[str, Any]:
        """Per alias: the versions it serves, with artifact paths, digests and traffic weights."""
        self._known_model(name)
        return deploy_config(self.registry, self.store, name, alias)


def open_catalog(workspace: Workspace, guard: bool = True, read_only: bool = False) -> Catalog:
    """The catalog of a workspace that has a registry; `read_only` for what only reads (it
    works on a full disk); `guard` False opens a registry the store does not recognise."""
    from .build.loading import open_existing_registry

    return Catalog(workspace, open_existing_registry(workspace, guard, read_only))
