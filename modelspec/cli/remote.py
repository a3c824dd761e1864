"""Commands on the workspace's remote: push, fetch, pull, remote status."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..text import plural
from . import echo, emit_json, handle_errors, json_option, main, make_console, workspace_of
from .live import LiveProgress

jobs_option = click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=16, show_default=True, help="Transfers at once."
)


class TransferBar(LiveProgress):
    """A progress bar of objects, bytes and rate, on a terminal only (a log gets the summary)."""

    def __init__(self, console: Any) -> None:
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("objects  {task.fields[size]}  {task.fields[rate]}"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
        self.started = time.monotonic()

    def __call__(self, event: Any) -> None:
        if self.progress is None or event.kind != "transfer":
            return
        data = event.data
        task = self.tasks.get(data["what"])
        if task is None:
            task = self.progress.add_task(data["what"], total=data["total"], size="", rate="")
            self.tasks[data["what"]] = task
        seconds = max(time.monotonic() - self.started, 1e-3)
        size = _size(data["bytes"]) + (f" of {_size(data['total_bytes'])}" if data["total_bytes"] else "")
        rate = f"{_size(int(data['bytes'] / seconds))}/s"
        self.progress.update(task, completed=data["done"], total=data["total"], size=size, rate=rate)


def _summary(report: Any) -> None:
    verb = {"push": "pushed", "fetch": "fetched", "pull": "pulled"}[report.direction]
    versions = ", ".join(report.versions) if report.versions else "no versions"
    sent = "sent" if report.direction == "push" else "received"
    already = report.objects - report.transferred
    rest = f"; {already} already {'there' if report.direction == 'push' else 'here'}" if already else ""
    echo(
        f"{verb} {versions}: {sent} {report.transferred} of the {plural(report.objects, 'object')} they need "
        f"({_size(report.bytes)}){rest}; {report.seconds:.1f} s ({report.url})"
    )
    if report.direction == "push":
        echo(plural(report.entries, "new action-cache entry", "new action-cache entries"))
    for ref, path in report.placed.items():
        echo(f"{ref} → {path}")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _run(as_json: bool, work: Any) -> Any:
    console = make_console(stderr=True)
    if as_json:
        return work(lambda _event: None)
    with TransferBar(console) as bar:
        return work(bar)


@main.command()
@click.argument("refs", nargs=-1)
@jobs_option
@json_option
@handle_errors
def push(refs: tuple[str, ...], jobs: int, as_json: bool) -> None:
    """Upload versions REF... (default: every active version and each spec's last build) to
    the workspace's remote, with everything needed to reproduce them, then their stages'
    action-cache entries. Run it again after an interruption: what arrived stays."""
    from ..api import push as do_push

    workspace = workspace_of(None)
    report = _run(as_json, lambda reporter: do_push(workspace, refs, jobs=jobs, reporter=reporter))
    emit_json(report.to_dict()) if as_json else _summary(report)


@main.command()
@click.argument("refs", nargs=-1)
@jobs_option
@json_option
@handle_errors
def fetch(refs: tuple[str, ...], jobs: int, as_json: bool) -> None:
    """Download versions REF... (default: every active version in the registry) from the
    remote into the local store, each object verified before it enters it."""
    from ..api import fetch as do_fetch

    workspace = workspace_of(None)
    report, _versions = _run(as_json, lambda reporter: do_fetch(workspace, refs, jobs=jobs, reporter=reporter))
    emit_json(report.to_dict()) if as_json else _summary(report)


@main.command()
@click.argument("refs", nargs=-1)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put the artifacts (default: artifacts/<name> under the workspace root).",
)
@jobs_option
@json_option
@handle_errors
def pull(refs: tuple[str, ...], out_dir: Path | None, jobs: int, as_json: bool) -> None:
    """fetch versions REF... (default: each model's newest active version), then copy their
    artifacts out (read-only copies), as `checkout` does for a last build."""
    from ..api import pull as do_pull

    workspace = workspace_of(None)
    report = _run(as_json, lambda reporter: do_pull(workspace, refs, out=out_dir, jobs=jobs, reporter=reporter))
    emit_json(report.to_dict()) if as_json else _summary(report)


@main.group()
def remote() -> None:
    """The workspace's remote (modelspec.yaml `remote:`)."""


@remote.command("status")
@jobs_option
@json_option
@handle_errors
def remote_status(jobs: int, as_json: bool) -> None:
    """What the workspace keeps that the remote lacks (a push sends it), what the remote
    holds that this workspace has not, and the workspaces whose roots remote gc keeps."""
    from ..api import remote_status as get_status

    found = get_status(workspace_of(None), jobs=jobs)
    if as_json:
        emit_json(found)
        sys.exit(0)
    echo(f"remote {found['remote']} (this workspace is {found['workspace']})")
    echo(f"  kept here, not on the remote: {plural(found['not_on_remote'], 'object')} of {found['kept_objects']}")
    echo(f"  on the remote, not here: {plural(found['remote_only'], 'object')} of {found['remote_objects']}")
    if found["remote_chunked_objects"]:
        large = plural(found["remote_chunked_objects"], "large object")
        echo(f"  {large} stored as {plural(found['remote_chunks'], 'chunk')} (shared between versions)")
    if found["remote_orphan_chunks"]:
        orphans = plural(found["remote_orphan_chunks"], "chunk")
        echo(f"  {orphans} no recipe names (a killed push's, or a deleted large object's): `gc --remote` reclaims them")
    entries = plural(found["action_cache_entries"], "action-cache entry", "action-cache entries")
    echo(f"  {entries} on the remote")
    for item in found["workspaces"]:
        echo(f"  roots of {item['id']}: {plural(item['objects'], 'object')} ({item['root']})")


@remote.command("forget")
@click.argument("workspace_id")
@json_option
@handle_errors
def remote_forget(workspace_id: str, as_json: bool) -> None:
    """Drop the roots of workspace WORKSPACE_ID (one gone for good; `remote status` lists
    them) from the remote, so that `gc --remote` no longer keeps what only it needed."""
    from ..api import remote_forget as forget
    from ..errors import UsageError

    if not forget(workspace_of(None), workspace_id):
        raise UsageError(f"the remote keeps no roots of {workspace_id!r}", hint="`modelspec remote status` lists them")
    emit_json({"forgotten": workspace_id}) if as_json else echo(f"forgot the roots of {workspace_id}")
