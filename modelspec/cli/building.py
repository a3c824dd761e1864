"""Commands that build: validate, lock, plan, build, checkout."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from ..text import plural, printable
from . import (
    echo,
    emit_json,
    handle_errors,
    json_option,
    main,
    make_console,
    metric_text,
    raise_interrupt,
    split_targets,
)
from .quality import gate_lines, verdict_text


@main.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--allow-dirty", is_flag=True, help="Use the working files of uncommitted code paths.")
@json_option
@handle_errors
def validate(args: tuple[str, ...], allow_dirty: bool, as_json: bool) -> None:
    """Check SPEC... [OVERRIDES...]: the schema, consistency, paths at the resolved commit and
    the composed config; everything `plan` checks except data digests (exit 2 on problems)."""
    from ..api import validate_paths

    paths, overrides = split_targets(args)
    validated = validate_paths(paths, overrides, allow_dirty=allow_dirty)  # a SpecError lists every problem
    workspace_files, loaded = validated.workspace_files, validated.specs
    if as_json:
        emit_json(
            {
                "ok": True,
                "specs": [{"name": s.name, "path": s.shown, "stages": list(s.stages)} for s in loaded.values()],
                "workspace_files": [os.path.relpath(p) for p in workspace_files],
            }
        )
    else:
        for path in workspace_files:
            echo(f"{os.path.relpath(path)}: ok (workspace file)")
        for spec in loaded.values():
            echo(f"{spec.shown}: ok ({spec.name}, {plural(len(spec.stages), 'stage')})")


@main.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--allow-dirty", is_flag=True, help="Use the working files of uncommitted code paths.")
@json_option
@handle_errors
def lock(args: tuple[str, ...], allow_dirty: bool, as_json: bool) -> None:
    """Resolve SPEC [OVERRIDES...] and write its lock file beside it (<spec>.lock)."""
    from ..api import load_graph, lock_bytes, lock_path, write_locks

    specs, overrides = split_targets(args)
    _ws, graph, _ctx = load_graph(specs, overrides, allow_dirty)
    write_locks(graph)
    if as_json:
        emit_json({name: json.loads(lock_bytes(graph.specs[name].lock)) for name in graph.targets})
    else:
        for name in graph.targets:
            echo(f"wrote {os.path.relpath(lock_path(graph.specs[name].spec))}")


@main.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--allow-dirty", is_flag=True, help="Use the working files of uncommitted code paths.")
@click.option("--hermetic", type=click.Choice(["strict", "auto", "off"]), help="Override the spec's sandbox policy.")
@json_option
@handle_errors
def plan(args: tuple[str, ...], allow_dirty: bool, hermetic: str | None, as_json: bool) -> None:
    """Show SPEC's nodes in build order with their keys: cached, or will run and why."""
    from rich.markup import escape

    from ..api import plan as make_plan

    specs, overrides = split_targets(args)
    _graph, planned = make_plan(specs, overrides, allow_dirty=allow_dirty, hermetic=hermetic)
    if as_json:
        emit_json({"nodes": [p.to_dict() for p in planned]})
        return
    lines = []  # printed at once: a rich print per line costs a millisecond, a second at 1,000 stages
    for item in planned:
        status = "[dim]cached[/]   " if item.cached else "[bold]will run[/] "
        lines.append(f"{status} {escape(printable(item.node))}  [dim]{item.key[7:19]}[/]")
        lines += [f"           - {escape(printable(reason))}" for reason in item.reasons]
    runs = sum(1 for p in planned if not p.cached)
    lines.append(f"{runs} of {plural(len(planned), 'stage')} will run")
    make_console().print("\n".join(lines), highlight=False)


@main.command()
@click.argument("args", nargs=-1, required=True)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Stages run at once (default: CPU count).")
@click.option("--keep-going", is_flag=True, help="After a failure, finish the stages that do not depend on it.")
@click.option("--force", is_flag=True, help="Run every stage, ignoring the action cache.")
@click.option("--hermetic", type=click.Choice(["strict", "auto", "off"]), help="Override the spec's sandbox policy.")
@click.option("--allow-dirty", is_flag=True, help="Use the working files of uncommitted code paths.")
@click.option("--offline", is_flag=True, help="Create environments from uv's cache only.")
@click.option("--no-remote", is_flag=True, help="Do not ask the workspace's remote cache (modelspec.yaml `remote:`).")
@click.option("--no-push", is_flag=True, help="Do not upload what ran to the workspace's remote.")
@click.option(
    "--no-download",
    is_flag=True,
    help="Leave the versions' artifacts on the remote when their stages hit its cache (`modelspec fetch` gets them).",
)
@click.option("--no-gate-exit", is_flag=True, help="Exit 0 when a version fails its quality gates (it stays rejected).")
@click.option(
    "--executor",
    metavar="URL",
    help="Where stages that must run go: dask://HOST:PORT (a Dask cluster) or local (default: modelspec.yaml's "
    "`executor:`, else local).",
)
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
    no_remote: bool,
    no_push: bool,
    no_download: bool,
    no_gate_exit: bool,
    executor: str | None,
    as_json: bool,
) -> None:
    """Build SPEC... [OVERRIDES...]: run the stages whose inputs changed, reuse the rest.

    Exit 0 on success, 1 when a stage failed or a version failed its quality gates (unless
    --no-gate-exit), 2 for a bad spec or argument.
    """
    from ..api import BuildOptions
    from ..api import build as run_build
    from ..events import ignore
    from .render import ConsoleReporter

    specs, overrides = split_targets(args)
    options = BuildOptions(
        overrides=tuple(overrides),
        jobs=jobs or 0,  # 0: the CPU count, or as many as a cluster takes
        keep_going=keep_going,
        force=force,
        hermetic=hermetic,
        allow_dirty=allow_dirty,
        offline=offline,
        remote=not no_remote,
        push=not no_push,
        download=not no_download,
        executor=executor,
    )
    signal.signal(signal.SIGTERM, raise_interrupt)
    console = make_console(stderr=as_json)
    if as_json:
        report = run_build(specs, options, ignore)
    else:
        with ConsoleReporter(console) as reporter:
            report = run_build(specs, options, reporter)
    rows = [_outcome_row(o) for o in report.outcomes]
    if as_json:
        versions: dict[str, dict[str, Any]] = {
            name: {"ref": ref, "new": created} for name, (ref, created) in report.versions.items()
        }
        for name, differ in report.differs.items():
            versions[name]["differs"] = differ
        for name, revival in report.revived.items():
            versions[name]["revived"] = revival.to_dict()
        for name, judged in report.gates.items():
            versions[name]["gates"] = judged.to_dict()
        emit_json(
            {
                "ok": report.ok,
                "seconds": round(report.seconds, 3),
                "nodes": rows,
                "specs": {name: _without_key_documents(record) for name, record in report.records.items()},
                "versions": versions,
            },
            depth=2,  # a node or a spec's record a line: 1,000 stages indented took a third of a small change
        )
    else:
        _print_build_summary(console, report, rows)
    rejected = any(judged.rejected for judged in report.gates.values())
    sys.exit(0 if report.ok and (no_gate_exit or not rejected) else 1)


def _without_key_documents(record: dict[str, Any]) -> dict[str, Any]:
    """A build record as `--json` shows it: without each node's key document (what its key
    was computed from, which `plan` compares with; three quarters of the output's bytes)."""
    nodes = {node: {k: v for k, v in info.items() if k != "key_document"} for node, info in record["nodes"].items()}
    return {**record, "nodes": nodes}


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
    if outcome.worker:
        row["worker"] = outcome.worker  # the cluster worker that ran it
    if outcome.failure is not None:
        row["log"] = str(outcome.failure.log_path)
    return row


def _print_build_summary(console: Any, report: Any, rows: list[dict[str, Any]]) -> None:
    from ..api import NodeState
    from .render import summary_table

    if any(r["state"] != "cached" for r in rows):
        console.print(summary_table(rows))
    counts = ", ".join(f"{report.count(s)} {s.value}" for s in NodeState if report.count(s))
    remote = sum(1 for r in rows if r["reason"] == "from the remote cache")
    if remote:  # a hit on the remote was downloaded: say so, it explains the time and the traffic
        counts += f" ({remote} from the remote)"
    console.print(f"{'[green]ok[/]' if report.ok else '[red]failed[/]'}: {counts} in {report.seconds:.2f} s")
    for name, (ref, created) in report.versions.items():
        if name in report.differs:
            echo(
                f"warning: outputs differ from the registered {ref}: {'; '.join(report.differs[name])}. The registered "
                "version keeps its outputs: a stage is not deterministic, or its environment changed "
                "(`modelspec verify --all`, `modelspec reproduce " + ref + "`)"
            )
        elif name in report.revived:
            echo(f"revived {ref} ({report.revived[name].describe()}): this build restored its artifacts")
        else:
            echo(f"registered {ref}" if created else f"already registered as {ref}")
    for name, record in report.records.items():
        if record["metrics"]:
            shown = "  ".join(f"{k}={metric_text(v)}" for k, v in sorted(record["metrics"].items()))
            echo(f"{name} metrics: {shown}")
    for judged in report.gates.values():
        echo(f"gates of {judged.ref}: {verdict_text(judged.verdict)}")
        for line in gate_lines(judged.verdict, judged.to_dict()["results"]):
            echo(line)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put the artifacts (default: artifacts/<name> under the workspace root).",
)
@json_option
@handle_errors
def checkout(spec: Path, out_dir: Path | None, as_json: bool) -> None:
    """Copy SPEC's built artifacts out of the store (read-only copies), by default into
    artifacts/<name> at the workspace root, from whatever directory it runs in."""
    from ..api import checkout as do_checkout

    placed = do_checkout(spec, out_dir)
    if as_json:
        emit_json({ref: os.path.abspath(path) for ref, path in placed.items()})
    else:
        for ref, path in placed.items():
            echo(f"{ref} → {os.path.relpath(path)}")
