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

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


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
        except KeyboardInterrupt:
            _console(stderr=True).print(
                "[yellow]interrupted[/]: running stages were stopped; nothing half-written was kept"
            )
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


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
        _emit_json({"ok": report.ok, "seconds": round(report.seconds, 3), "nodes": rows, "specs": report.records})
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
@click.option(
    "--spec",
    "spec",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A spec whose workspace to verify (default: the workspace of the current directory).",
)
@json_option
@handle_errors
def verify(spec: Path | None, as_json: bool) -> None:
    """Re-hash every object in the store; quarantine corrupt ones (exit 1 if any)."""
    from .api import verify as do_verify

    workspace = _workspace_of(spec)
    report = do_verify(workspace)
    if as_json:
        _emit_json({"ok": report.ok, "checked": report.checked, "bytes": report.bytes, "corrupt": report.corrupt})
    else:
        for digest in report.corrupt:
            click.echo(f"corrupt: {digest} (quarantined in {workspace.store.quarantine_dir})")
        click.echo(
            f"{report.checked} objects, {report.bytes} bytes checked: "
            f"{'ok' if report.ok else str(len(report.corrupt)) + ' corrupt'}"
        )
    sys.exit(0 if report.ok else 1)


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
