"""Commands of retention: gc, pin, du, and scheduled cleanup."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..text import plural
from . import (
    echo,
    emit_json,
    handle_errors,
    human_bytes,
    json_option,
    main,
    open_catalog_here,
    raise_interrupt,
    when,
    workspace_of,
)

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..retention.gc import GcReport
    from ..store.workspace import Workspace


@main.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be retired and freed.")
@json_option
@handle_errors
def gc(dry_run: bool, as_json: bool) -> None:
    """Retire versions by their retention policies and free the bytes nothing needs."""
    from ..build.registration import actor
    from ..catalog import open_catalog
    from ..retention.gc import collect, reserve_released

    workspace = workspace_of(None)
    with contextlib.nullcontext() if dry_run else reserve_released(workspace.home):
        catalog, swept = (open_catalog(workspace, read_only=True), None) if dry_run else _open_for_gc(workspace)
        try:
            report = collect(workspace, catalog.registry, dry_run=dry_run, actor=actor(workspace.root))
        finally:
            catalog.close()
        if swept is not None:
            report = report.plus(swept)
    if as_json:
        emit_json(report.to_dict())
        return
    plan = report.retention.to_dict()
    verb = "would retire" if dry_run else "retired"
    for ref, reason in plan["retire"].items():
        echo(f"{verb} {ref}: {reason}")
    for ref, rules in plan["keep"].items():
        echo(f"keep    {ref}: {', '.join(rules)}")
    freed = "would free" if dry_run else "freed"
    echo(
        f"{freed} {plural(len(report.objects), 'object')}, {human_bytes(report.bytes)}; "
        f"{plural(len(report.environments), 'environment')}; "
        f"{plural(report.action_entries, 'action-cache entry', 'action-cache entries')} "
        f"({report.seconds:.2f} s)"
    )
    if report.young_objects:
        echo(
            f"{plural(report.young_objects, 'unneeded object')} ({human_bytes(report.young_bytes)}) "
            f"{'is' if report.young_objects == 1 else 'are'} younger than the "
            f"grace period ({_duration(report.grace)}); the earliest can be freed after "
            f"{when(report.young_until)} UTC"
        )
    if report.stale_locks:
        echo(f"removed {plural(report.stale_locks, 'stale lock file')}")


def _open_for_gc(workspace: Workspace) -> tuple[Catalog, GcReport | None]:
    """The catalog, writable; on a full disk without the reserve, after a first sweep of what
    needs no registry write (and that sweep's report, else None)."""
    from ..build.registration import actor
    from ..catalog import open_catalog
    from ..errors import StoreError
    from ..retention.gc import disk_full, free_without_writing

    try:
        return open_catalog(workspace), None
    except StoreError:
        if not disk_full(workspace.home):
            raise
    swept = free_without_writing(workspace, actor(workspace.root))
    return open_catalog(workspace), swept


def _duration(seconds: float) -> str:
    """The grace period as modelspec.yaml writes it (3600 → 1h)."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@main.command()
@click.argument("ref")
@json_option
@handle_errors
def pin(ref: str, as_json: bool) -> None:
    """Keep version REF whatever the retention policy says."""
    _pin(ref, True, as_json)


@main.command()
@click.argument("ref")
@json_option
@handle_errors
def unpin(ref: str, as_json: bool) -> None:
    """Let retention decide about version REF again."""
    _pin(ref, False, as_json)


def _pin(ref: str, pinned: bool, as_json: bool) -> None:
    from ..build.registration import actor

    catalog = open_catalog_here()
    try:
        version, changed = catalog.registry.pin(ref, actor(catalog.workspace.root), pinned)
    finally:
        catalog.close()
    if as_json:
        emit_json({"ref": version.ref, "pinned": pinned, "changed": changed})
    elif changed:
        echo(f"{'pinned' if pinned else 'unpinned'} {version.ref}")
    else:
        echo(f"{version.ref} is {'already' if pinned else 'not'} pinned")


@main.command()
@json_option
@handle_errors
def du(as_json: bool) -> None:
    """Bytes per model and version (unique and shared), and what gc would free."""
    from ..retention.gc import collect, disk_usage

    catalog = open_catalog_here(read_only=True)
    try:
        usage = disk_usage(catalog.workspace, catalog.registry)
        usage["gc_would_free"] = collect(catalog.workspace, catalog.registry, dry_run=True, actor="du").bytes
    finally:
        catalog.close()
    if as_json:
        emit_json(usage)
        return
    for name, model in sorted(usage["models"].items()):
        echo(f"{name}: {human_bytes(model['bytes'])}")
        for version, sizes in sorted(model["versions"].items(), key=lambda kv: [int(p) for p in kv[0].split(".")]):
            echo(
                f"  {version:<10} unique {human_bytes(sizes['unique']):>10}   shared {human_bytes(sizes['shared']):>10}"
            )
    echo(f"store: {human_bytes(usage['store_bytes'])}; gc would free {human_bytes(usage['gc_would_free'])}")


@main.group()
def schedule() -> None:
    """Run gc on a cron schedule: --at CRON, else retention.schedule in modelspec.yaml,
    else daily at 03:00 ("0 3 * * *")."""


@schedule.command("install")
@click.option("--systemd", "kind", flag_value="systemd", help="A systemd user timer and service.")
@click.option("--cron", "kind", flag_value="cron", help="A line in the user's crontab.")
@click.option("--at", "at", metavar="CRON", help='When to run, as five cron fields (default "0 3 * * *").')
@click.option("--print", "only_print", is_flag=True, help="Print what would be installed, install nothing.")
@handle_errors
def schedule_install(kind: str | None, at: str | None, only_print: bool) -> None:
    """Install a timer that runs `modelspec gc` on the schedule."""
    import shutil
    import subprocess

    from ..errors import UsageError
    from ..retention.schedule import cron_expression, crontab_line, systemd_units

    workspace = workspace_of(None)
    when_ = cron_expression(workspace, at)
    expression = when_.expression
    kind = kind or ("systemd" if shutil.which("systemctl") else "cron")
    if only_print:  # stdout is exactly what would be installed; which schedule goes to stderr
        click.echo(f"# schedule {when_.describe()}", err=True)
    if kind == "cron":
        line = crontab_line(expression, workspace)
        if only_print:
            echo(line)
            return
        if not shutil.which("crontab"):
            raise UsageError("crontab is not installed", hint="install cron, or use --systemd or `modelspec daemon`")
        current = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
        ours = [entry for entry in current.splitlines() if "modelspec gc" in entry and str(workspace.root) in entry]
        kept = [entry for entry in current.splitlines() if entry.strip() and entry not in ours]
        subprocess.run(["crontab", "-"], input="\n".join([*kept, line]) + "\n", text=True, check=True)
        echo(f"installed in crontab: {line}")
        echo(f"schedule: {when_.describe()}")
        return
    units = systemd_units(expression, workspace)
    if only_print:
        for name, text in units.items():
            echo(f"# ~/.config/systemd/user/{name}\n{text}", multiline=True)
        return
    folder = Path.home() / ".config" / "systemd" / "user"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (folder / name).write_text(text)
    timer = next(name for name in units if name.endswith(".timer"))
    echo(f"wrote {', '.join(str(folder / n) for n in units)}")
    echo(f"schedule: {when_.describe()}")
    echo(f"enable it with: systemctl --user daemon-reload && systemctl --user enable --now {timer}")


@main.command()
@click.option("--once", is_flag=True, help="Run a due (or missed) job, if any, and exit.")
@handle_errors
def daemon(once: bool) -> None:
    """Run retention in this process whenever the schedule says (catches up a missed run once)."""
    from ..build.registration import actor
    from ..retention.gc import collect, reserve_released
    from ..retention.schedule import DaemonState, cron_expression, run_daemon

    workspace = workspace_of(None)
    when_ = cron_expression(workspace)
    expression = when_.expression
    signal.signal(signal.SIGTERM, raise_interrupt)
    runs = 0

    def job(now: float, fire: float) -> None:
        nonlocal runs
        with reserve_released(workspace.home):
            catalog, _swept = _open_for_gc(workspace)
            try:
                catalog.registry.record_event("schedule", "gc", "daemon", {"fire_time": fire, "started": now})
                report = collect(workspace, catalog.registry, now=now, actor=actor(workspace.root))
            finally:
                catalog.close()
        runs += 1
        echo(f"{when(now)} gc: retired {len(report.retention.retire)}, freed {human_bytes(report.bytes)}")

    echo(f"modelspec daemon: gc on {when_.describe()} in {workspace.root}")
    state = DaemonState(workspace.home / "schedule.json")
    run_daemon(expression, state, job, once=once)
    if once:
        echo("no run was due" if not runs else "done")
