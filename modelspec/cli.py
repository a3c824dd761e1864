"""The command line: click commands → api → rich output. The only place that prints or exits.

Heavy modules are imported inside the commands so that `modelspec --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 160  # tables in logs and pipes: wide enough not to truncate columns
    return console


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def handle_errors(func: F) -> F:
    """Turn modelspec errors into a message, a hint and an exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import ModelspecError

        as_json = kwargs.get("as_json", False)
        try:
            return func(*args, **kwargs)
        except ModelspecError as exc:
            if as_json:
                _emit_json(exc.to_dict())
            else:
                err = _console(stderr=True)
                from rich.markup import escape

                err.print(f"[red bold]error:[/] {escape(exc.message)}", soft_wrap=True)
                if exc.hint:
                    err.print(f"[dim]hint:[/] {escape(exc.hint)}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # the machine, not the user: a full disk, a read-only store...
            message, hint = describe_os_error(exc)
            if as_json:
                _emit_json({"error": "OSError", "message": message, "hint": hint})
            else:
                _console(stderr=True).print(f"[red bold]error:[/] {message}\n[dim]hint:[/] {hint}", soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            _console(stderr=True).print(
                "[yellow]interrupted[/]: running stages were stopped; nothing half-written was kept"
            )
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def describe_os_error(exc: OSError) -> tuple[str, str]:
    import errno

    where = f": {exc.filename}" if exc.filename else ""
    message = f"{exc.strerror or exc}{where}"
    hints = {
        errno.ENOSPC: "free space (modelspec gc removes what retention allows), or move the store with MODELSPEC_HOME",
        errno.EROFS: "the store is on a read-only filesystem: point MODELSPEC_HOME at a writable directory",
        errno.EACCES: "check the permissions of the workspace and its .modelspec directory",
        errno.EDQUOT: "the disk quota is exhausted: free space or move the store with MODELSPEC_HOME",
    }
    return message, hints.get(exc.errno or 0, "nothing was left half-written; fix the cause and run the command again")


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def split_targets(args: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """Spec files and Hydra overrides (`key=value`, `+key=value`, `~key`) from one argument list."""
    from .errors import UsageError

    specs, overrides = [], []
    for arg in args:
        if arg.endswith((".yaml", ".yml")) or (os.path.exists(arg) and "=" not in arg):
            specs.append(Path(arg))
        elif "=" in arg or arg.startswith("~"):
            overrides.append(arg)
        else:
            raise UsageError(f"{arg!r} is neither a spec file nor a config override (key=value)")
    if not specs:
        raise UsageError("no spec file given", hint="e.g. modelspec build specs/fraud.yaml")
    return specs, overrides


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelspec")
def main() -> None:
    """modelspec: declarative, reproducible builds of ML models.

    \b
    modelspec validate specs/fraud.yaml            check a spec, every error at once
    modelspec plan specs/fraud.yaml train.lr=0.05  what would run, and why
    modelspec build specs/fraud.yaml               build what changed, reuse the rest
    modelspec checkout specs/fraud.yaml            copy out the built artifacts
    """


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@json_option
@handle_errors
def validate(specs: tuple[Path, ...], as_json: bool) -> None:
    """Check spec files against the schema and their own consistency (exit 2 on problems)."""
    from .api import validate as validate_specs
    from .errors import SpecError

    try:
        loaded = validate_specs(list(specs))
    except SpecError as exc:
        if as_json:
            _emit_json(exc.to_dict())
        else:
            err = _console(stderr=True)
            for problem in exc.problems:
                err.print(
                    f"[red]{problem.location}[/]: {problem.yaml_path + ': ' if problem.yaml_path else ''}"
                    f"{problem.message}",
                    markup=True,
                    highlight=False,
                    soft_wrap=True,
                )
            err.print(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} found")
        sys.exit(exc.exit_code)
    if as_json:
        _emit_json(
            {
                "ok": True,
                "specs": [{"name": s.name, "path": s.shown, "stages": list(s.stages)} for s in loaded.values()],
            }
        )
    else:
        for spec in loaded.values():
            click.echo(f"{spec.shown}: ok ({spec.name}, {len(spec.stages)} stages)")


@main.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--allow-dirty", is_flag=True, help="Use the working files of uncommitted code paths.")
@json_option
@handle_errors
def lock(args: tuple[str, ...], allow_dirty: bool, as_json: bool) -> None:
    """Resolve SPEC [OVERRIDES...] and write its lock file beside it (<spec>.lock)."""
    from .api import load_graph, lock_bytes, lock_path, write_locks

    specs, overrides = split_targets(args)
    _ws, graph, _ctx = load_graph(specs, overrides, allow_dirty)
    write_locks(graph)
    if as_json:
        _emit_json({name: json.loads(lock_bytes(graph.specs[name].lock)) for name in graph.targets})
    else:
        for name in graph.targets:
            click.echo(f"wrote {os.path.relpath(lock_path(graph.specs[name].spec))}")


@main.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--allow-dirty", is_flag=True, help="Use the working files of uncommitted code paths.")
@click.option("--hermetic", type=click.Choice(["strict", "auto", "off"]), help="Override the spec's sandbox policy.")
@json_option
@handle_errors
def plan(args: tuple[str, ...], allow_dirty: bool, hermetic: str | None, as_json: bool) -> None:
    """Show SPEC's nodes in build order with their keys: cached, or will run and why."""
    from .api import plan as make_plan

    specs, overrides = split_targets(args)
    _graph, planned = make_plan(specs, overrides, allow_dirty=allow_dirty, hermetic=hermetic)
    if as_json:
        _emit_json({"nodes": [p.to_dict() for p in planned]})
        return
    console = _console()
    for item in planned:
        status = "[dim]cached[/]   " if item.cached else "[bold]will run[/] "
        console.print(f"{status} {item.node}  [dim]{item.key[7:19]}[/]")
        for reason in item.reasons:
            console.print(f"           - {reason}", markup=False)
    runs = sum(1 for p in planned if not p.cached)
    console.print(f"{runs} of {len(planned)} stages will run")


@main.command()
@click.argument("args", nargs=-1, required=True)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Stages run at once (default: CPU count).")
@click.option("--keep-going", is_flag=True, help="After a failure, finish the stages that do not depend on it.")
@click.option("--force", is_flag=True, help="Run every stage, ignoring the action cache.")
@click.option("--hermetic", type=click.Choice(["strict", "auto", "off"]), help="Override the spec's sandbox policy.")
@click.option("--allow-dirty", is_flag=True, help="Use the working files of uncommitted code paths.")
@click.option("--offline", is_flag=True, help="Create environments from uv's cache only.")
@json_option
@handle_errors
def build(
    args: tuple[str, ...],
    jobs: int | None,
    keep_going: bool,
    force: bool,
    hermetic: str | None,
    allow_dirty: bool,
    offline: bool,
    as_json: bool,
) -> None:
    """Build SPEC... [OVERRIDES...]: run the stages whose inputs changed, reuse the rest.

    Exit 0 on success, 1 when a stage failed, 2 for a bad spec or argument.
    """
    from .api import BuildOptions
    from .api import build as run_build
    from .events import ignore
    from .render import ConsoleReporter

    specs, overrides = split_targets(args)
    options = BuildOptions(
        overrides=tuple(overrides),
        jobs=jobs or os.cpu_count() or 1,
        keep_going=keep_going,
        force=force,
        hermetic=hermetic,
        allow_dirty=allow_dirty,
        offline=offline,
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)
    console = _console(stderr=as_json)
    if as_json:
        report = run_build(specs, options, ignore)
    else:
        with ConsoleReporter(console) as reporter:
            report = run_build(specs, options, reporter)
    rows = [_outcome_row(o) for o in report.outcomes]
    if as_json:
        versions = {name: {"ref": ref, "new": created} for name, (ref, created) in report.versions.items()}
        _emit_json(
            {
                "ok": report.ok,
                "seconds": round(report.seconds, 3),
                "nodes": rows,
                "specs": report.records,
                "versions": versions,
            }
        )
    else:
        _print_build_summary(console, report, rows)
    sys.exit(0 if report.ok else 1)


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _outcome_row(outcome: Any) -> dict[str, Any]:
    result = outcome.result
    row = {
        "node": outcome.node,
        "state": outcome.state.value,
        "key": outcome.key,
        "reason": outcome.reason,
        "seconds": round(result.duration, 3) if result and outcome.state.value == "ran" else None,
    }
    if result is not None:
        row.update(started=result.started, ended=result.ended, hermetic=result.hermetic)
    if outcome.failure is not None:
        row["log"] = str(outcome.failure.log_path)
    return row


def _print_build_summary(console: Any, report: Any, rows: list[dict[str, Any]]) -> None:
    from .rebuilder import NodeState
    from .render import summary_table

    if any(r["state"] != "cached" for r in rows):
        console.print(summary_table(rows))
    counts = ", ".join(f"{report.count(s)} {s.value}" for s in NodeState if report.count(s))
    console.print(f"{'[green]ok[/]' if report.ok else '[red]failed[/]'}: {counts} in {report.seconds:.2f} s")
    for ref, created in report.versions.values():
        console.print(f"registered {ref}" if created else f"already registered as {ref}", markup=False)
    for name, record in report.records.items():
        if record["metrics"]:
            shown = "  ".join(f"{k}={v:g}" for k, v in sorted(record["metrics"].items()))
            console.print(f"{name} metrics: {shown}", markup=False)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put the artifacts (default: artifacts/<name>).",
)
@json_option
@handle_errors
def checkout(spec: Path, out_dir: Path | None, as_json: bool) -> None:
    """Materialize SPEC's built artifacts from the store (read-only files)."""
    from .api import checkout as do_checkout

    placed = do_checkout(spec, out_dir)
    if as_json:
        _emit_json({ref: str(path) for ref, path in placed.items()})
    else:
        for ref, path in placed.items():
            click.echo(f"{ref} → {path}")


@main.command()
@click.argument("ref", required=False)
@click.option("--all", "everything", is_flag=True, help="Every object in the store (the default without REF).")
@json_option
@handle_errors
def verify(ref: str | None, everything: bool, as_json: bool) -> None:
    """Re-hash the objects of version REF, or of the whole store; corrupt ones are
    quarantined, never served (exit 1 if any object is corrupt or missing)."""
    from .api import verify as do_verify
    from .errors import UsageError

    if ref and everything:
        raise UsageError("give a version or --all, not both")
    workspace = _workspace_of(None)
    report = do_verify(workspace, ref)
    if as_json:
        _emit_json(
            {
                "ok": report.ok,
                "checked": report.checked,
                "bytes": report.bytes,
                "corrupt": [{"digest": d, "what": report.what.get(d, "object")} for d in report.corrupt],
                "missing": [{"digest": d, "what": report.what.get(d, "object")} for d in report.missing],
                "bad_action_cache_entries": report.bad_entries,
            }
        )
    else:
        quarantine = workspace.store.quarantine_dir
        for digest in report.corrupt:
            click.echo(f"corrupt: {report.what.get(digest, 'object')} {digest} (quarantined in {quarantine})")
        for digest in report.missing:
            click.echo(f"missing: {report.what.get(digest, 'object')} {digest}")
        for key in report.bad_entries:
            click.echo(f"edited or damaged action-cache entry {key}: dropped (the stage will run again)")
        problems = len(report.corrupt) + len(report.missing) + len(report.bad_entries)
        verdict = "ok" if report.ok else f"{problems} problems"
        click.echo(f"{report.checked} objects, {report.bytes} bytes checked: {verdict}")
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("ref")
@click.option("--into", "into", type=click.Path(file_okay=False, path_type=Path), help="Also write the artifacts here.")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Relative tolerance for metrics.")
@click.option("--offline", is_flag=True, help="Re-create the environment from uv's cache only.")
@json_option
@handle_errors
def reproduce(ref: str, into: Path | None, rtol: float, offline: bool, as_json: bool) -> None:
    """Rebuild version REF from its recorded lock and inputs, and compare bit for bit.

    Exit 0 when identical (or every metric is within --rtol), 1 when different.
    """
    from .catalog import open_catalog
    from .registration import actor
    from .render import ConsoleReporter
    from .reproduce import DIFFERENT, WITHIN
    from .reproduce import reproduce as run_reproduce

    signal.signal(signal.SIGTERM, _raise_interrupt)
    workspace = _workspace_of(None)
    catalog = open_catalog(workspace)
    try:
        who = actor(workspace.root)
        options: dict[str, Any] = {"rtol": rtol, "into": into, "offline": offline, "actor": who}
        if as_json:
            report = run_reproduce(workspace, catalog.registry, ref, **options)
        else:
            with ConsoleReporter(_console()) as reporter:
                report = run_reproduce(workspace, catalog.registry, ref, reporter=reporter, **options)
    finally:
        catalog.close()
    if as_json:
        _emit_json(report.to_dict())
    else:
        out = _console()
        for comparison in report.outputs:
            if not comparison.identical:
                fresh = comparison.reproduced
                size = f"{fresh['size']} bytes" if fresh else "not produced"
                recorded = comparison.recorded["size"]
                out.print(
                    f"differs: {comparison.stage}.{comparison.output}: recorded {recorded} bytes, reproduced {size}",
                    markup=False,
                )
        if report.verdict != "identical":
            for key, m in report.metrics.items():
                out.print(f"  metric {key}: recorded {m['recorded']}, reproduced {m['reproduced']}", markup=False)
        if report.failure:
            out.print(report.failure, markup=False)
        out.print(
            f"{report.ref}: {report.verdict} ({len(report.outputs)} outputs compared) in {report.seconds:.1f} s; "
            f"its stages originally took {report.original_seconds:.1f} s",
            markup=False,
        )
        if report.verdict == WITHIN:
            out.print(f"warning: outputs differ, but every metric is within rtol={rtol}", markup=False)
    sys.exit(1 if report.verdict == DIFFERENT else 0)


@main.group()
def env() -> None:
    """Environments materialized from hash-pinned locks (uv) or nix files."""


@env.command("create")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--offline", is_flag=True, help="Use only uv's cache (no network).")
@json_option
@handle_errors
def env_create(spec: Path, offline: bool, as_json: bool) -> None:
    """Create (or find) the environment of SPEC."""
    from .api import create_environment
    from .events import ignore
    from .render import ConsoleReporter

    if as_json:
        created = create_environment(spec, offline=offline, reporter=ignore)
    else:
        with ConsoleReporter(_console()) as reporter:
            created = create_environment(spec, offline=offline, reporter=reporter)
    if created is None:
        message = {"environment": None}
        _emit_json(message) if as_json else click.echo(f"{spec} declares no environment")
        return
    info = {"digest": created.digest, "path": str(created.path), "bin": created.host_bin}
    _emit_json(info) if as_json else click.echo(f"{created.digest}  {created.path}")


@env.command("list")
@click.option("--spec", type=click.Path(dir_okay=False, path_type=Path), help="A spec of the workspace.")
@json_option
@handle_errors
def env_list(spec: Path | None, as_json: bool) -> None:
    """List the environments of the workspace."""
    from .environments import list_environments

    found = list_environments(_workspace_of(spec).envs_dir)
    if as_json:
        _emit_json(found)
        return
    for item in found:
        click.echo(f"{item['digest']}  {item['kind']:<3}  {item['bytes'] / 1e6:8.1f} MB  {item.get('file', '')}")
    if not found:
        click.echo("no environments")


@env.command("rm")
@click.argument("digest")
@click.option("--spec", type=click.Path(dir_okay=False, path_type=Path), help="A spec of the workspace.")
@json_option
@handle_errors
def env_rm(digest: str, spec: Path | None, as_json: bool) -> None:
    """Remove the environment DIGEST (a unique prefix of its hex is enough)."""
    from .environments import remove_environment

    removed = remove_environment(_workspace_of(spec).envs_dir, digest)
    _emit_json({"removed": removed}) if as_json else click.echo(f"removed {removed}")


@env.command("lock")
@click.argument("requirements", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The lock file to write."
)
@click.option("--python", "python", default="3.11", show_default=True, help="Python version to lock for.")
@handle_errors
def env_lock(requirements: Path, output: Path, python: str) -> None:
    """Write a hash-pinned lock of REQUIREMENTS (uv pip compile --generate-hashes)."""
    from .environments import lock_requirements

    lock_requirements(requirements, output, python)
    click.echo(f"wrote {output}")


def _workspace_of(spec: Path | None) -> Any:
    from .specload import find_repo_root
    from .workspace import find_workspace

    start = spec.parent if spec else Path.cwd()
    return find_workspace(start, fallback_root=find_repo_root(start))


# -- the registry ------------------------------------------------------------------------------


def _catalog() -> Any:
    from .catalog import open_catalog

    return open_catalog(_workspace_of(None))


def _when(timestamp: float | None) -> str:
    import datetime

    if timestamp is None:
        return ""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _parse_when(text: str) -> float:
    import datetime

    from .errors import UsageError

    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a date", hint="write e.g. 2026-11-30 or 2026-11-30T14:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _key_values(pairs: tuple[str, ...]) -> dict[str, str]:
    from .errors import UsageError

    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{pair!r} is not KEY=VALUE")
        result[key] = value
    return result


@main.command()
@click.argument("name")
@click.option("--where", default="", help="Metric conditions, e.g. 'auc>0.9, f1>=0.5'.")
@click.option("--tag", "tags", multiple=True, help="Only versions with this tag (KEY=VALUE); repeatable.")
@json_option
@handle_errors
def versions(name: str, where: str, tags: tuple[str, ...], as_json: bool) -> None:
    """List the versions of model NAME: content id, created, metrics, aliases, status."""
    catalog = _catalog()
    try:
        rows = catalog.versions(name, where, _key_values(tags))
    finally:
        catalog.close()
    if as_json:
        _emit_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    metric_names = sorted({k for r in rows for k in r["metrics"]})[:4]
    for column in ("version", "content id", "created (UTC)", *metric_names, "aliases", "status"):
        table.add_column(column)
    for r in rows:
        metrics = [f"{r['metrics'][m]:.4g}" if m in r["metrics"] else "" for m in metric_names]
        table.add_row(
            r["version"], r["content_id"], _when(r["created"]), *metrics, ", ".join(r["aliases"]), r["status"]
        )
    _console().print(table)


@main.command()
@click.argument("ref")
@json_option
@handle_errors
def show(ref: str, as_json: bool) -> None:
    """Everything recorded about one version (REF: fraud@1.3.2, fraud@production, ...)."""
    catalog = _catalog()
    try:
        info = catalog.show(ref)
    finally:
        catalog.close()
    if as_json:
        _emit_json(info)
        return
    console = _console()
    console.print(f"[bold]{info['ref']}[/]  {info['short_id']}  {info['status']}", highlight=False)
    fields = [
        (
            "created",
            f"{_when(info['created'])} UTC by {info['author']} on {info['host']}"
            f" (modelspec {info['modelspec_version']})",
        ),
        ("commit", info["commit"] + ("  (dirty working files)" if info.get("dirty") else "")),
        ("environment", str((info.get("environment") or {}).get("digest", "none"))),
        ("hermetic", str(info["hermetic"]).lower()),
        ("aliases", ", ".join(info["aliases"]) or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted(info["tags"].items())) or "-"),
        ("lock", info["lock"]),
    ]
    if info.get("status_reason"):
        fields.append(("status", f"{info['status']} at {_when(info['status_time'])} UTC: {info['status_reason']}"))
    for label, value in fields:
        console.print(f"  {label:<12} {value}", markup=False)
    sections = [
        ("metrics", {k: f"{v:g}" for k, v in sorted(info["metrics"].items())}),
        ("params", info.get("params", {})),
        ("artifacts", {k: f"{a['digest']}  {a['size']} bytes" for k, a in sorted(info["artifacts"].items())}),
        (
            "data",
            {
                k: d.get("digest") or f"{d.get('spec')}:{d.get('output')}"
                for k, d in sorted(info.get("data", {}).items())
            },
        ),
        ("stages", {k: f"{s['seconds']} s  log {s['log']}" for k, s in sorted(info.get("stages", {}).items())}),
    ]
    for title, values in sections:
        console.print(f"  {title}:", markup=False)
        for key, value in values.items():
            console.print(f"    {key} = {value}", markup=False)
    lineage = info["lineage"]
    console.print("  lineage:", markup=False)
    for item in lineage["upstream"]:
        console.print(
            f"    ← {item['kind']} {item['name']}: {item.get('version') or item['ref']}  {item['digest']}", markup=False
        )
    for item in lineage["downstream"]:
        console.print(f"    → {item}", markup=False)


@main.command()
@click.argument("ref_a")
@click.argument("ref_b")
@json_option
@handle_errors
def diff(ref_a: str, ref_b: str, as_json: bool) -> None:
    """What changed from REF_A to REF_B: code, data, config, environment, metrics."""
    from .specload import find_repo_root

    catalog = _catalog()
    try:
        result = catalog.diff(ref_a, ref_b, find_repo_root(catalog.workspace.root))
    finally:
        catalog.close()
    if as_json:
        _emit_json(result)
        return
    out = _console()
    out.print(f"{result['from']} → {result['to']}", markup=False)
    code = result["code"]
    out.print(f"code: {code['from'][:12]} → {code['to'][:12]}", markup=False)
    for path in code["paths_changed"] or []:
        out.print(f"  changed {path}", markup=False)
    if code["stages_changed"]:
        out.print(f"  stages whose code changed: {', '.join(code['stages_changed'])}", markup=False)
    out.print("data:" + ("" if result["data"] else " unchanged"), markup=False)
    for name, change in result["data"].items():
        out.print(f"  {name}: {change['from']} → {change['to']}", markup=False)
    out.print("config:" + ("" if result["config"] else " unchanged"), markup=False)
    for key, (old, new) in result["config"].items():
        out.print(f"  {key}: {old!r} → {new!r}", markup=False)
    env = result["environment"]
    out.print("environment:" + ("" if env["from"] != env["to"] else " unchanged"), markup=False)
    for name, version in env["added"].items():
        out.print(f"  + {name} {version}", markup=False)
    for name, version in env["removed"].items():
        out.print(f"  - {name} {version}", markup=False)
    for name, (old, new) in env["changed"].items():
        out.print(f"  ~ {name} {old} → {new}", markup=False)
    out.print("metrics:", markup=False)
    for key, m in result["metrics"].items():
        delta = f"{m['delta']:+.6g}" if m["delta"] is not None else "n/a"
        out.print(f"  {key}: {m['from']} → {m['to']} ({delta})", markup=False)


@main.command()
@click.argument("ref")
@click.argument("alias")
@click.option("--weight", type=float, help="Serve this share of traffic (0..1) beside the current targets.")
@json_option
@handle_errors
def promote(ref: str, alias: str, weight: float | None, as_json: bool) -> None:
    """Point ALIAS (production, staging, ...) at the version REF; the history is kept."""
    from .registration import actor

    catalog = _catalog()
    try:
        targets = catalog.registry.promote(ref, alias, actor(catalog.workspace.root), weight)
        name = catalog.registry.resolve(ref).name
    finally:
        catalog.close()
    _emit_json({"alias": f"{name}@{alias}", "targets": targets}) if as_json else click.echo(
        f"{name}@{alias} → " + ", ".join(f"{v} ({w:g})" if len(targets) > 1 else v for v, w in targets)
    )


@main.command()
@click.argument("name")
@click.argument("alias")
@json_option
@handle_errors
def rollback(name: str, alias: str, as_json: bool) -> None:
    """Point NAME@ALIAS back at its previous target."""
    from .registration import actor

    catalog = _catalog()
    try:
        targets = catalog.registry.rollback(name, alias, actor(catalog.workspace.root))
    finally:
        catalog.close()
    _emit_json({"alias": f"{name}@{alias}", "targets": targets}) if as_json else click.echo(
        f"{name}@{alias} rolled back → " + ", ".join(v for v, _w in targets)
    )


@main.group()
def alias() -> None:
    """Aliases: movable names for versions."""


@alias.command("history")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--at", "at", help="Also say what the alias pointed to at this date (UTC), e.g. 2026-11-30T12:00.")
@json_option
@handle_errors
def alias_history(name: str, alias_name: str, at: str | None, as_json: bool) -> None:
    """Every move of NAME@ALIAS: when, who, from, to."""
    catalog = _catalog()
    try:
        result = catalog.alias_history(name, alias_name, _parse_when(at) if at else None)
    finally:
        catalog.close()
    if as_json:
        _emit_json(result)
        return

    def shown(targets: list[list[Any]]) -> str:
        return ", ".join(f"{v} ({w:g})" if len(targets) > 1 else str(v) for v, w in targets) or "-"

    for h in result["history"]:
        click.echo(f"{_when(h['time'])}  {h['action']:<8} {h['actor']:<16} {shown(h['from'])} → {shown(h['to'])}")
    if "at" in result:
        click.echo(f"at {_when(result['at']['time'])} UTC: {name}@{alias_name} → {shown(result['at']['targets'])}")


@main.command()
@click.argument("ref")
@click.argument("pairs", nargs=-1, required=True)
@json_option
@handle_errors
def tag(ref: str, pairs: tuple[str, ...], as_json: bool) -> None:
    """Set tags KEY=VALUE on the version REF."""
    from .registration import actor

    catalog = _catalog()
    try:
        for key, value in _key_values(pairs).items():
            version = catalog.registry.tag(ref, key, value, actor(catalog.workspace.root))
        tags = catalog.registry.tags_of(version)
    finally:
        catalog.close()
    _emit_json({"ref": version.ref, "tags": tags}) if as_json else click.echo(
        f"{version.ref}: " + ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))
    )


@main.command()
@click.argument("ref")
@json_option
@handle_errors
def lineage(ref: str, as_json: bool) -> None:
    """Where REF came from (data, specs, versions) and which versions consumed it."""
    catalog = _catalog()
    try:
        result = catalog.lineage(ref)
    finally:
        catalog.close()
    if as_json:
        _emit_json(result)
        return
    click.echo(result["ref"])
    for item in result["upstream"]:
        click.echo(f"  ← {item['kind']:<5} {item['name']}: {item.get('version') or item['ref']}  {item['digest']}")
    for item in result["downstream"]:
        click.echo(f"  → {item}")


@main.command()
@click.argument("ref")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@json_option
@handle_errors
def export(ref: str, directory: Path, as_json: bool) -> None:
    """Copy REF's artifacts into DIRECTORY with a manifest.json (digests verified)."""
    catalog = _catalog()
    try:
        manifest = catalog.export(ref, directory)
    finally:
        catalog.close()
    if as_json:
        _emit_json({k: v for k, v in manifest.items() if k != "lock"})
        return
    for name, artifact in manifest["artifacts"].items():
        click.echo(f"{name} → {directory / artifact['path']}  {artifact['digest']}")
    click.echo(f"{directory / 'manifest.json'}")


@main.command("deploy-config")
@click.argument("name")
@click.argument("alias_name", metavar="[ALIAS]", required=False)
@handle_errors
def deploy_config(name: str, alias_name: str | None) -> None:
    """A JSON document a serving system can load: per alias, versions, artifacts, weights."""
    catalog = _catalog()
    try:
        document = catalog.deploy_config(name, alias_name)
    finally:
        catalog.close()
    _emit_json(document)


@main.command()
@click.option("--verify", "check", is_flag=True, help="Check the hash chain; exit 1 if an event was tampered with.")
@click.option("--limit", type=int, default=None, help="Only the newest N events.")
@json_option
@handle_errors
def audit(check: bool, limit: int | None, as_json: bool) -> None:
    """The append-only log of builds, promotions, rollbacks, tags and retirements."""
    catalog = _catalog()
    try:
        result = catalog.audit(check, limit)
    finally:
        catalog.close()
    if as_json:
        _emit_json(result)
    else:
        for e in result["events"]:
            click.echo(f"{e['seq']:>5}  {_when(e['time'])}  {e['kind']:<9} {e['subject']:<24} {e['actor']}")
        if check:
            click.echo("audit log intact" if result["ok"] else f"TAMPERED: {result['problem']}")
    if check and not result["ok"]:
        sys.exit(1)


# -- retention ---------------------------------------------------------------------------------


@main.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be retired and freed.")
@json_option
@handle_errors
def gc(dry_run: bool, as_json: bool) -> None:
    """Retire versions by their retention policies and free the bytes nothing needs."""
    from .catalog import open_catalog
    from .gc import collect
    from .registration import actor

    workspace = _workspace_of(None)
    catalog = open_catalog(workspace)
    try:
        report = collect(workspace, catalog.registry, dry_run=dry_run, actor=actor(workspace.root))
    finally:
        catalog.close()
    if as_json:
        _emit_json(report.to_dict())
        return
    plan = report.retention.to_dict()
    verb = "would retire" if dry_run else "retired"
    for ref, reason in plan["retire"].items():
        click.echo(f"{verb} {ref}: {reason}")
    for ref, rules in plan["keep"].items():
        click.echo(f"keep    {ref}: {', '.join(rules)}")
    freed = "would free" if dry_run else "freed"
    click.echo(
        f"{freed} {len(report.objects)} objects, {_bytes(report.bytes)}; "
        f"{len(report.environments)} environments; {report.action_entries} action-cache entries "
        f"({report.seconds:.2f} s)"
    )


def _bytes(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000  # type: ignore[assignment]
    return f"{count} B"


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
    from .registration import actor

    catalog = _catalog()
    try:
        version = catalog.registry.pin(ref, actor(catalog.workspace.root), pinned)
    finally:
        catalog.close()
    _emit_json({"ref": version.ref, "pinned": pinned}) if as_json else click.echo(
        f"{'pinned' if pinned else 'unpinned'} {version.ref}"
    )


@main.command()
@json_option
@handle_errors
def du(as_json: bool) -> None:
    """Bytes per model and version (unique and shared), and what gc would free."""
    from .gc import collect, disk_usage

    catalog = _catalog()
    try:
        usage = disk_usage(catalog.workspace, catalog.registry)
        usage["gc_would_free"] = collect(catalog.workspace, catalog.registry, dry_run=True, actor="du").bytes
    finally:
        catalog.close()
    if as_json:
        _emit_json(usage)
        return
    for name, model in sorted(usage["models"].items()):
        click.echo(f"{name}: {_bytes(model['bytes'])}")
        for version, sizes in sorted(model["versions"].items(), key=lambda kv: [int(p) for p in kv[0].split(".")]):
            click.echo(f"  {version:<10} unique {_bytes(sizes['unique']):>10}   shared {_bytes(sizes['shared']):>10}")
    click.echo(f"store: {_bytes(usage['store_bytes'])}; gc would free {_bytes(usage['gc_would_free'])}")


@main.group()
def schedule() -> None:
    """Run retention on the workspace's cron schedule (retention.schedule in modelspec.yaml)."""


@schedule.command("install")
@click.option("--systemd", "kind", flag_value="systemd", help="A systemd user timer and service.")
@click.option("--cron", "kind", flag_value="cron", help="A line in the user's crontab.")
@click.option("--print", "only_print", is_flag=True, help="Print what would be installed, install nothing.")
@handle_errors
def schedule_install(kind: str | None, only_print: bool) -> None:
    """Install a timer that runs `modelspec gc` on the schedule."""
    import shutil
    import subprocess

    from .errors import UsageError
    from .schedule import cron_expression, crontab_line, systemd_units

    workspace = _workspace_of(None)
    expression = cron_expression(workspace)
    kind = kind or ("systemd" if shutil.which("systemctl") else "cron")
    if kind == "cron":
        line = crontab_line(expression, workspace)
        if only_print:
            click.echo(line)
            return
        if not shutil.which("crontab"):
            raise UsageError("crontab is not installed", hint="install cron, or use --systemd or `modelspec daemon`")
        current = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
        ours = [entry for entry in current.splitlines() if "modelspec gc" in entry and str(workspace.root) in entry]
        kept = [entry for entry in current.splitlines() if entry.strip() and entry not in ours]
        subprocess.run(["crontab", "-"], input="\n".join([*kept, line]) + "\n", text=True, check=True)
        click.echo(f"installed in crontab: {line}")
        return
    units = systemd_units(expression, workspace)
    if only_print:
        for name, text in units.items():
            click.echo(f"# ~/.config/systemd/user/{name}\n{text}")
        return
    folder = Path.home() / ".config" / "systemd" / "user"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (folder / name).write_text(text)
    timer = next(name for name in units if name.endswith(".timer"))
    click.echo(f"wrote {', '.join(str(folder / n) for n in units)}")
    click.echo(f"enable it with: systemctl --user daemon-reload && systemctl --user enable --now {timer}")


@main.command()
@click.option("--once", is_flag=True, help="Run a due (or missed) job, if any, and exit.")
@handle_errors
def daemon(once: bool) -> None:
    """Run retention in this process whenever the schedule says (catches up a missed run once)."""
    from .catalog import open_catalog
    from .gc import collect
    from .registration import actor
    from .schedule import DaemonState, cron_expression, run_daemon

    workspace = _workspace_of(None)
    expression = cron_expression(workspace)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    runs = 0

    def job(now: float, fire: float) -> None:
        nonlocal runs
        catalog = open_catalog(workspace)
        try:
            catalog.registry.record_event("schedule", "gc", "daemon", {"fire_time": fire, "started": now})
            report = collect(workspace, catalog.registry, now=now, actor=actor(workspace.root))
        finally:
            catalog.close()
        runs += 1
        click.echo(f"{_when(now)} gc: retired {len(report.retention.retire)}, freed {_bytes(report.bytes)}")

    click.echo(f"modelspec daemon: retention on {expression!r} in {workspace.root}")
    state = DaemonState(workspace.home / "schedule.json")
    run_daemon(expression, state, job, once=once)
    if once:
        click.echo("no run was due" if not runs else "done")
