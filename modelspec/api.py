"""The Python API: everything the command line does, without click (the build itself is in
build/engine.py): validate, lock, plan, build, checkout, verify, reproduce; the registry's
queries and actions through a `Catalog`; quality gates judged again, metrics over versions
and data drift (`quality.py`: judge_gates, metric_history, drift and their plots); gc, du,
the gc daemon and its timers; init.

Every function returns values and reports progress through a `Reporter`; nothing here
prints or exits (the CLI does). What `modelspec gc --dry-run` and `modelspec promote` do:

    workspace = api.workspace_of()
    report = api.gc(workspace, dry_run=True)
    with api.open_catalog(workspace) as catalog:
        catalog.promote("fraud@1.3.2", "production")
 The CLI imports nothing else of modelspec but `errors`,
`text` and `events` (import-linter checks it), so what it needs is named here.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Problem, SpecError
from .events import Reporter, ignore
from .spec.load import find_repo_root
from .spec.model import Spec
from .spec.schema import WORKSPACE_FILE
from .store.workspace import Workspace, check_workspace_file, find_workspace

if TYPE_CHECKING:
    from .build.engine import BuildOptions, BuildReport, build
    from .build.graph import BuildGraph
    from .build.loading import (
        load_graph,
        lock_bytes,
        lock_path,
        open_registry,
        open_workspace,
        write_locks,
    )
    from .build.plan import PlannedNode
    from .build.rebuilder import NodeState
    from .catalog import Catalog, Resolution
    from .env.environment import Environment, remove_environment
    from .env.manifest import list_environments
    from .env.uv import lock_requirements
    from .handoff import checkout
    from .integrity import VerifyReport, verify
    from .mlflowexport import MlflowTarget
    from .mlflowexport import export as export_to_mlflow
    from .provenance import ProvenanceReport, generate_key, list_keys, read_statement, trust_key, untrust_key
    from .provenance import verify_directory as verify_export
    from .provenance import verify_version as verify_provenance
    from .quality import (
        drift,
        drift_svg,
        judge_gates,
        metric_history,
        metrics_svg,
        write_drift_plot,
        write_metrics_plot,
    )
    from .registry.queries import Page
    from .registry.versions import MARKS
    from .reproduce import DIFFERENT, WITHIN, ReproductionReport
    from .resident import control as resident_control
    from .resident import socket_path as resident_socket
    from .resident import start as resident_start
    from .retention.gc import GcReport
    from .retention.jobs import daemon as gc_daemon
    from .retention.jobs import du, gc, remote_gc
    from .retention.schedule import (
        Schedule,
        crontab_line,
        install_crontab,
        install_systemd_units,
        systemd_units,
        timer_kind,
    )
    from .retention.schedule import cron_expression as gc_schedule
    from .scaffold import InitReport
    from .transfer import TransferReport, fetch, pull, push, verify_remote
    from .transfer import forget as remote_forget
    from .transfer import status as remote_status
    from .units import parse_duration

# Names handed on from modules that only some commands need: importing them here would
# load SQLAlchemy (the registry) or croniter into every command, a no-op build included.
_LAZY = {
    # What builds: the engine, the resolver and Hydra, never needed to read the registry.
    "BuildOptions": ("build.engine", "BuildOptions"),
    "BuildReport": ("build.engine", "BuildReport"),
    "build": ("build.engine", "build"),
    "NodeState": ("build.rebuilder", "NodeState"),
    "check_graph": ("build.loading", "check_graph"),
    "load_graph": ("build.loading", "load_graph"),
    "lock_bytes": ("build.loading", "lock_bytes"),
    "lock_path": ("build.loading", "lock_path"),
    "open_registry": ("build.loading", "open_registry"),
    "open_workspace": ("build.loading", "open_workspace"),
    "write_locks": ("build.loading", "write_locks"),
    "Environment": ("env.environment", "Environment"),
    "remove_environment": ("env.environment", "remove_environment"),
    "list_environments": ("env.manifest", "list_environments"),
    "lock_requirements": ("env.uv", "lock_requirements"),
    "VerifyReport": ("integrity", "VerifyReport"),
    "verify": ("integrity", "verify"),
    "Catalog": ("catalog", "Catalog"),
    "Resolution": ("catalog", "Resolution"),
    "MARKS": ("registry.versions", "MARKS"),
    "judge_gates": ("quality", "judge_gates"),
    "drift": ("quality", "drift"),
    "drift_svg": ("quality", "drift_svg"),
    "metrics_svg": ("quality", "metrics_svg"),
    "Page": ("registry.queries", "Page"),
    "write_drift_plot": ("quality", "write_drift_plot"),
    "metric_history": ("quality", "metric_history"),
    "write_metrics_plot": ("quality", "write_metrics_plot"),
    "DIFFERENT": ("reproduce", "DIFFERENT"),
    "WITHIN": ("reproduce", "WITHIN"),
    "ReproductionReport": ("reproduce", "ReproductionReport"),
    "GcReport": ("retention.gc", "GcReport"),
    "gc_daemon": ("retention.jobs", "daemon"),
    "du": ("retention.jobs", "du"),
    "gc": ("retention.jobs", "gc"),
    "remote_gc": ("retention.jobs", "remote_gc"),
    "Schedule": ("retention.schedule", "Schedule"),
    "crontab_line": ("retention.schedule", "crontab_line"),
    "install_crontab": ("retention.schedule", "install_crontab"),
    "install_systemd_units": ("retention.schedule", "install_systemd_units"),
    "systemd_units": ("retention.schedule", "systemd_units"),
    "timer_kind": ("retention.schedule", "timer_kind"),
    "gc_schedule": ("retention.schedule", "cron_expression"),
    "InitReport": ("scaffold", "InitReport"),
    "TransferReport": ("transfer", "TransferReport"),
    "push": ("transfer", "push"),
    "fetch": ("transfer", "fetch"),
    "pull": ("transfer", "pull"),
    "remote_status": ("transfer", "status"),
    "remote_forget": ("transfer", "forget"),
    "verify_remote": ("transfer", "verify_remote"),
    # A resident modelspec (forkserver.py serves, resident.py asks): `modelspec resident`.
    "resident_start": ("resident", "start"),
    "resident_control": ("resident", "control"),
    "resident_socket": ("resident", "socket_path"),
    "parse_duration": ("units", "parse_duration"),
    # Provenance and keys: `cryptography` is imported only when a key is used.
    "ProvenanceReport": ("provenance", "ProvenanceReport"),
    "verify_provenance": ("provenance", "verify_version"),
    "verify_export": ("provenance", "verify_directory"),
    "generate_key": ("provenance", "generate_key"),
    "trust_key": ("provenance", "trust_key"),
    "untrust_key": ("provenance", "untrust_key"),
    "list_keys": ("provenance", "list_keys"),
    "read_statement": ("provenance", "read_statement"),
    "checkout": ("handoff", "checkout"),
    "MlflowTarget": ("mlflowexport", "MlflowTarget"),
    "export_to_mlflow": ("mlflowexport", "export"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__package__}.{module}"), attr)


__all__ = [
    "DIFFERENT",
    "MARKS",
    "WITHIN",
    "BuildOptions",
    "BuildReport",
    "Catalog",
    "GcReport",
    "InitReport",
    "MlflowTarget",
    "NodeState",
    "Page",
    "ProvenanceReport",
    "Resolution",
    "Schedule",
    "TransferReport",
    "Validated",
    "VerifyReport",
    "build",
    "check_workspace_file",
    "checkout",
    "create_environment",
    "crontab_line",
    "drift",
    "drift_svg",
    "du",
    "export_to_mlflow",
    "fetch",
    "gc",
    "gc_daemon",
    "gc_schedule",
    "generate_key",
    "init",
    "install_crontab",
    "install_systemd_units",
    "judge_gates",
    "list_environments",
    "list_keys",
    "load_graph",
    "lock_bytes",
    "lock_path",
    "lock_requirements",
    "metric_history",
    "metrics_svg",
    "open_catalog",
    "open_registry",
    "open_workspace",
    "parse_duration",
    "plan",
    "pull",
    "push",
    "read_statement",
    "remote_forget",
    "remote_gc",
    "remote_status",
    "remove_environment",
    "reproduce",
    "resident_control",
    "resident_socket",
    "resident_start",
    "systemd_units",
    "timer_kind",
    "trust_key",
    "untrust_key",
    "validate",
    "validate_paths",
    "verify",
    "verify_export",
    "verify_provenance",
    "verify_remote",
    "workspace_of",
    "write_drift_plot",
    "write_locks",
    "write_metrics_plot",
]


def workspace_of(spec: Path | None = None) -> Workspace:
    """The workspace of `spec`, or (no spec) of the current directory: the nearest directory
    up that holds modelspec.yaml or .modelspec/, else the top of the git repository."""
    start = spec.parent if spec else Path.cwd()
    return find_workspace(start, fallback_root=find_repo_root(start))


def open_catalog(workspace: Workspace | None = None, *, guard: bool = True, read_only: bool = False) -> Catalog:
    """The registry of the workspace (by default the current directory's), as a context
    manager; `read_only` for what only reads, so that it works on a full disk; `guard` False
    opens a registry the store does not recognise (what `audit --verify` examines)."""
    from .catalog import open_catalog as open_workspace_catalog

    return open_workspace_catalog(workspace or workspace_of(), guard, read_only)


def init(start: Path, *, force: bool = False) -> InitReport:
    """Make the repository `start` is in a workspace: its modelspec.yaml with every
    setting's default (commented), and the .gitignore lines for what modelspec writes."""
    from .scaffold import init_root, init_workspace

    return init_workspace(init_root(start), force=force)


def validate(
    spec_paths: list[Path], overrides: list[str] | tuple[str, ...] = (), *, allow_dirty: bool = False
) -> dict[str, Spec]:
    """Every check `plan` makes (schema, consistency, paths at the resolved commit, the
    composed config), hashing no data and writing nothing; raises `SpecError` with every
    problem. Returns each spec of the build, by name."""
    from .build.loading import check_graph

    graph = check_graph(spec_paths, overrides, allow_dirty)
    return {name: item.spec for name, item in graph.specs.items()}


@dataclass(frozen=True)
class Validated:
    workspace_files: list[Path]
    specs: dict[str, Spec]  # by name


def validate_paths(
    paths: list[Path], overrides: list[str] | tuple[str, ...] = (), *, allow_dirty: bool = False
) -> Validated:
    """`validate` of spec files and workspace files (recognised by their name) at once: one
    `SpecError` with every problem of them all, each once."""
    workspace_files = [p for p in paths if p.name == WORKSPACE_FILE]
    specs = [p for p in paths if p.name != WORKSPACE_FILE]
    problems: list[Problem] = []
    hints: list[str] = []
    for path in workspace_files:
        try:
            check_workspace_file(path)
        except SpecError as exc:
            problems += exc.problems
    loaded = {}
    if specs:
        try:
            loaded = validate(specs, overrides, allow_dirty=allow_dirty)
        except SpecError as exc:
            problems += exc.problems
            hints += [exc.hint] if exc.hint else []
    if problems:  # a workspace file given and also read for the specs: each problem once
        raise SpecError(list(dict.fromkeys(problems)), hint="; ".join(hints))
    return Validated(workspace_files, loaded)


def plan(
    spec_paths: list[Path],
    overrides: list[str] | tuple[str, ...] = (),
    *,
    allow_dirty: bool = False,
    hermetic: str | None = None,
) -> tuple[BuildGraph, list[PlannedNode]]:
    from .build.loading import load_graph
    from .build.plan import Isolation, plan_build
    from .build.rebuilder import CachingRebuilder
    from .build.registration import LastBuilds
    from .sandbox.bwrap import bwrap_path
    from .store.traces import ActionCache

    workspace, graph, _ctx = load_graph(spec_paths, overrides, allow_dirty)
    cache = ActionCache(workspace.action_cache_dir, workspace.store.tmp)
    cache.read_index(graph.cache_index)
    rebuilder = CachingRebuilder(cache, workspace.store, workspace.locks_dir)
    isolation = Isolation(hermetic, bwrap_path() is not None)  # the sandbox a build would use now
    return graph, plan_build(graph, rebuilder.lookup, LastBuilds(workspace), isolation)


def create_environment(spec_path: Path, *, offline: bool = False, reporter: Reporter = ignore) -> Environment | None:
    """Materialize the environment of one spec (what `build` does on first use)."""
    from .build.loading import load_graph
    from .env.environment import ensure_environment

    workspace, graph, _ctx = load_graph([spec_path])
    item = graph.specs[graph.targets[0]]
    pinned = item.lock.environment
    if pinned is None:
        return None
    return ensure_environment(
        pinned,
        item.spec.repo_root / str(pinned["file"]),
        workspace.envs_dir,
        workspace.store,
        offline=offline,
        reporter=reporter,
    )


def reproduce(
    catalog: Catalog,
    ref: str,
    *,
    into: Path | None = None,
    rtol: float = 0.0,
    offline: bool = False,
    jobs: int = os.cpu_count() or 1,
    reporter: Reporter = ignore,
    executor: str | None = None,
) -> ReproductionReport:
    """Rebuild version REF (exact: `catalog.resolve(ref).version.ref`) from its recorded lock
    and inputs, `jobs` stages at once, and compare bit for bit; the comparison is recorded
    in the registry."""
    from .reproduce import reproduce as reproduce_version

    return reproduce_version(
        catalog.workspace,
        catalog.registry,
        ref,
        rtol=rtol,
        into=into,
        offline=offline,
        actor=catalog.actor,
        jobs=jobs,
        reporter=reporter,
        executor_url=executor,
    )
