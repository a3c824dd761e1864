"""Retention as the commands run it: `gc` (with the disk-full precautions), `du`, and the
job `modelspec daemon` runs on the schedule. Each opens the workspace's registry, acts,
and closes it; none prints (the CLI says what happened, from the reports).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from ..build.loading import open_existing_registry
from ..build.registration import actor
from ..errors import StoreError
from ..registry.registry import Registry
from ..store.workspace import Workspace
from .gc import GcReport, collect, disk_full, free_without_writing, reserve_released
from .remote_gc import DEFAULT_REMOTE_GRACE, RemoteGcReport, collect_remote
from .schedule import DaemonState, Schedule, run_daemon
from .usage import disk_usage


def gc(workspace: Workspace, *, dry_run: bool = False) -> GcReport:
    """Retire versions by their policies and free the bytes nothing needs; a dry run only
    reads (the registry opened read-only) and says what it would do."""
    with contextlib.nullcontext() if dry_run else reserve_released(workspace.home):
        if dry_run:
            registry, swept = open_existing_registry(workspace, read_only=True), None
        else:
            registry, swept = open_for_gc(workspace)
        with registry:
            report = collect(workspace, registry, dry_run=dry_run, actor=actor(workspace.root))
    return report if swept is None else report.plus(swept)


def open_for_gc(workspace: Workspace) -> tuple[Registry, GcReport | None]:
    """The registry, writable; on a full disk without the reserve, after a first sweep of what
    needs no registry write (and that sweep's report, else None)."""
    try:
        return open_existing_registry(workspace), None
    except StoreError:
        if not disk_full(workspace.home):
            raise
    swept = free_without_writing(workspace, actor(workspace.root))
    return open_existing_registry(workspace), swept


def remote_gc(workspace: Workspace, *, dry_run: bool = False, grace: str | float | None = None) -> RemoteGcReport:
    """Free the workspace's remote of what no workspace that pushed to it, no lease and no
    young action-cache entry needs (see retention/remote_gc.py); `grace` as `1d` or seconds."""
    from ..store.remote_cache import require_remote
    from ..units import parse_duration

    if isinstance(grace, str):
        grace = parse_duration(grace)

    remote = require_remote(workspace.settings, workspace.home, workspace.root)
    with open_existing_registry(workspace, read_only=True) as registry:
        return collect_remote(
            workspace, registry, remote, dry_run=dry_run, grace=DEFAULT_REMOTE_GRACE if grace is None else grace
        )


def du(workspace: Workspace) -> dict[str, Any]:
    """Bytes per model and version (logical unique and shared; stored and added), the store's
    total and dedup ratio, and what gc would free now (`gc_would_free`)."""
    with open_existing_registry(workspace, read_only=True) as registry:
        usage = disk_usage(workspace, registry)
        usage["gc_would_free"] = collect(workspace, registry, dry_run=True, actor="du").bytes
    return usage


def daemon(
    workspace: Workspace,
    schedule: Schedule,
    on_run: Callable[[float, GcReport], None],
    *,
    once: bool = False,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run gc whenever `schedule` fires (a missed run caught up once), each run audited as a
    "schedule" event and handed to `on_run(now, report)`; with `once`, only what is due now.
    Returns how many runs there were."""
    runs = 0

    def job(now: float, fire: float) -> None:
        nonlocal runs
        with reserve_released(workspace.home):
            registry, _swept = open_for_gc(workspace)
            with registry:
                registry.record_event("schedule", "gc", "daemon", {"fire_time": fire, "started": now})
                report = collect(workspace, registry, now=now, actor=actor(workspace.root))
        runs += 1
        on_run(now, report)

    state = DaemonState(workspace.home / "schedule.json")
    run_daemon(schedule.expression, state, job, once=once, clock=clock, sleep=sleep)
    return runs
