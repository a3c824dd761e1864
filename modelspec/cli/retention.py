"""Commands of retention: gc, pin, du, and scheduled cleanup."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

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
    from ..api import GcReport


@main.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be retired and freed.")
@click.option(
    "--remote",
    "on_remote",
    is_flag=True,
    help="Free the workspace's remote instead: what no workspace that pushed to it, no lease and no "
    "young action-cache entry needs (in two runs at least --grace apart).",
)
@click.option("--grace", default="1d", show_default=True, help="With --remote: nothing younger is swept.")
@json_option
@handle_errors
def gc(dry_run: bool, on_remote: bool, grace: str, as_json: bool) -> None:
    """Retire versions by their retention policies and free the bytes nothing needs."""
    from ..api import gc as collect_garbage

    if on_remote:
        _remote_gc(dry_run, grace, as_json)
        return
    report = collect_garbage(workspace_of(None), dry_run=dry_run)
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
    chunks = report.chunks
    if chunks.cooled or chunks.packs_removed:
        cooled = "would cool" if dry_run else "cooled"
        echo(
            f"{cooled} {plural(chunks.cooled, 'large object')} ({human_bytes(chunks.cooled_bytes)} of whole copies; "
            f"their chunks stay); {'would prune' if dry_run else 'pruned'} {plural(chunks.packs_removed, 'pack')} "
            f"({human_bytes(chunks.pack_bytes)})"
        )


def _remote_gc(dry_run: bool, grace: str, as_json: bool) -> None:
    from ..api import remote_gc

    report = remote_gc(workspace_of(None), dry_run=dry_run, grace=grace)
    if as_json:
        emit_json(report.to_dict())
        return
    would = "would " if dry_run else ""
    counts = report.to_dict()
    workspaces = plural(len(report.workspaces), "workspace")
    echo(f"remote {report.url}: kept {_and_chunks(counts, 'kept', 'object')} needed by {workspaces}")
    large = f" ({counts['deleted_large_objects']} large)" if counts["deleted_large_objects"] else ""
    entries = plural(report.entries_deleted, "action-cache entry", "action-cache entries")
    echo(
        f"{would}delete {_and_chunks(counts, 'deleted', 'object', large)} ({human_bytes(report.deleted_bytes)}) "
        f"condemned by an earlier gc, and {entries}"
    )
    if report.condemned:
        echo(
            f"{would}condemn {_and_chunks(counts, 'condemned', 'unneeded object')}: a gc at least "
            f"{_duration(report.grace)} from now deletes those still unneeded"
        )
    if report.young:
        echo(f"{_and_chunks(counts, 'young', 'unneeded object')} younger than {_duration(report.grace)}: kept for now")
    if report.deleted_packs or report.orphan_packs:
        echo(
            f"{would}delete {plural(report.deleted_packs, 'pack')} of those objects and "
            f"{plural(report.orphan_packs, 'pack')} left without an index by a killed push"
        )
    if report.partly_dead_packs:
        echo(f"{plural(report.partly_dead_packs, 'pack')} with a needed object kept whole, unneeded ones in it too")


def _and_chunks(counts: dict[str, Any], what: str, word: str, note: str = "") -> str:
    """`3 objects`, or `3 objects and 40 chunks` (chunks are parts of large objects, not objects)."""
    objects = plural(counts[f"{what}_objects"], word) + note
    chunks = counts[f"{what}_chunks"]
    return f"{objects} and {plural(chunks, 'chunk')}" if chunks else objects


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
    with open_catalog_here() as catalog:
        version, changed = catalog.pin(ref, pinned)
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
    """Bytes per model and version: logical (unique and shared), stored and added (chunks
    of large files counted once), the dedup ratio, and what gc would free."""
    from ..api import du as disk_usage

    usage = disk_usage(workspace_of(None))
    if as_json:
        emit_json(usage)
        return
    for name, model in sorted(usage["models"].items()):
        dedup = f" ({model['dedup']}x)" if model["dedup"] else ""
        echo(f"{name}: {human_bytes(model['bytes'])} logical, {human_bytes(model['stored'])} stored{dedup}")
        for version, sizes in sorted(model["versions"].items(), key=lambda kv: [int(p) for p in kv[0].split(".")]):
            echo(
                f"  {version:<10} unique {human_bytes(sizes['unique']):>10}   shared {human_bytes(sizes['shared']):>10}"
                f"   stored {human_bytes(sizes['stored']):>10}   added {human_bytes(sizes['added']):>10}"
            )
    dedup = f" ({usage['dedup']}x dedup)" if usage["dedup"] else ""
    echo(
        f"store: {human_bytes(usage['store_bytes'])} for {human_bytes(usage['logical_bytes'])} of objects{dedup}; "
        f"gc would free {human_bytes(usage['gc_would_free'])}"
    )


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
    from ..api import crontab_line, gc_schedule, install_crontab, install_systemd_units, systemd_units, timer_kind

    workspace = workspace_of(None)
    when_ = gc_schedule(workspace, at)
    expression = when_.expression
    kind = kind or timer_kind()
    if only_print:  # stdout is exactly what would be installed; which schedule goes to stderr
        click.echo(f"# schedule {when_.describe()}", err=True)
    if kind == "cron":
        line = crontab_line(expression, workspace)
        if only_print:
            echo(line)
            return
        install_crontab(line, workspace)
        echo(f"installed in crontab: {line}")
        echo(f"schedule: {when_.describe()}")
        return
    units = systemd_units(expression, workspace)
    if only_print:
        for name, text in units.items():
            echo(f"# ~/.config/systemd/user/{name}\n{text}", multiline=True)
        return
    written = install_systemd_units(units)
    timer = next(path.name for path in written if path.name.endswith(".timer"))
    echo(f"wrote {', '.join(str(path) for path in written)}")
    echo(f"schedule: {when_.describe()}")
    echo(f"enable it with: systemctl --user daemon-reload && systemctl --user enable --now {timer}")


@main.command()
@click.option("--once", is_flag=True, help="Run a due (or missed) job, if any, and exit.")
@handle_errors
def daemon(once: bool) -> None:
    """Run retention in this process whenever the schedule says (catches up a missed run once)."""
    from ..api import gc_daemon, gc_schedule

    workspace = workspace_of(None)
    when_ = gc_schedule(workspace)
    signal.signal(signal.SIGTERM, raise_interrupt)

    def ran(now: float, report: GcReport) -> None:
        echo(f"{when(now)} gc: retired {len(report.retention.retire)}, freed {human_bytes(report.bytes)}")

    echo(f"modelspec daemon: gc on {when_.describe()} in {workspace.root}")
    runs = gc_daemon(workspace, when_, ran, once=once)
    if once:
        echo("no run was due" if not runs else "done")
