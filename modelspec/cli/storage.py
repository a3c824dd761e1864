"""Commands on the store: verify, reproduce, and environments."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from ..text import plural
from . import (
    echo,
    emit_json,
    handle_errors,
    json_option,
    main,
    make_console,
    primary_ref,
    raise_interrupt,
    workspace_of,
)


@main.command()
@click.argument("ref", required=False)
@click.option("--all", "everything", is_flag=True, help="Every object in the store (the default without REF).")
@click.option(
    "--remote",
    "on_remote",
    is_flag=True,
    help="Every object and action-cache entry of the workspace's remote instead: corrupt objects, "
    "entries naming missing objects, and stages with two different results (not deterministic).",
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=16, show_default=True, help="With --remote.")
@click.option(
    "--provenance",
    is_flag=True,
    help="Check REF's signed provenance instead (REF: a version, or a directory `export` wrote, "
    "which needs no workspace): artifacts re-hashed, signature, predicate against the registry.",
)
@click.option("--key", "keys", multiple=True, help="With --provenance: also trust this public key (base64, PEM).")
@click.option("--allow-unsigned", is_flag=True, help="With --provenance: accept a statement no trusted key signed.")
@json_option
@handle_errors
def verify(
    ref: str | None,
    everything: bool,
    on_remote: bool,
    jobs: int,
    provenance: bool,
    keys: tuple[str, ...],
    allow_unsigned: bool,
    as_json: bool,
) -> None:
    """Re-hash the objects of version REF, or of the whole store and every environment;
    corrupt objects are quarantined, never served (exit 1 if any object is corrupt or
    missing, or an environment's files changed). With --provenance, check REF's provenance
    (exit 1 naming each altered artifact, statement or signature)."""
    from ..api import verify as do_verify
    from ..errors import UsageError

    if (ref and everything) or (on_remote and (ref or everything)):
        raise UsageError("give a version, --all or --remote: one of them")
    if provenance:
        _verify_provenance(ref, keys, allow_unsigned, as_json)
    if keys or allow_unsigned:
        raise UsageError("--key and --allow-unsigned go with --provenance")
    if on_remote:
        _verify_remote(jobs, as_json)
    workspace = workspace_of(None)
    report = do_verify(workspace, ref)
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "checked": report.checked,
                "bytes": report.bytes,
                "corrupt": [{"digest": d, "what": report.what.get(d, "object")} for d in report.corrupt],
                "missing": [{"digest": d, "what": report.what.get(d, "object")} for d in report.missing],
                "bad_action_cache_entries": report.bad_entries,
                "retired": report.retired or None,
                "removed_by_retention": len(report.removed),
                "on_remote_only": len(report.on_remote),
                "changed_environments": [{"digest": d, "changes": c} for d, c in report.environments.items()],
                "registry": report.registry,
            }
        )
    else:
        quarantine = workspace.store.quarantine_dir
        for digest in report.corrupt:
            echo(f"corrupt: {report.what.get(digest, 'object')} {digest} (quarantined in {quarantine})")
        for digest in report.missing:
            echo(f"missing: {report.what.get(digest, 'object')} {digest}")
        for key in report.bad_entries:
            echo(f"edited or damaged action-cache entry {key}: dropped (the stage will run again)")
        if report.retired:
            echo(report.retired)
        if report.on_remote:
            echo(f"{plural(len(report.on_remote), 'object')} left on the remote by cache hits (fetched when needed)")
        for env_digest, changes in report.environments.items():
            echo(f"environment {env_digest} changed after it was created:")
            for change in changes:
                echo(f"  {change}")
            echo(f"  remove it with `modelspec env rm {env_digest[7:19]}`; the next build re-creates it")
        for problem in report.registry:
            echo(f"registry: {problem}")
        problems = len(report.corrupt) + len(report.missing) + len(report.bad_entries) + len(report.environments)
        problems += len(report.registry)
        verdict = "ok" if report.ok else plural(problems, "problem")
        echo(f"{plural(report.checked, 'object')}, {plural(report.bytes, 'byte')} checked: {verdict}")
    sys.exit(0 if report.ok else 1)


def _verify_provenance(ref: str | None, keys: tuple[str, ...], allow_unsigned: bool, as_json: bool) -> None:
    from ..api import verify_export, verify_provenance
    from ..errors import UsageError

    if not ref:
        raise UsageError("--provenance needs a version or an exported directory", hint="e.g. fraud@production")
    workspace = workspace_of(None)
    if os.path.isdir(ref):
        report = verify_export(Path(ref), workspace.settings, keys, allow_unsigned, workspace)
    else:
        report = verify_provenance(workspace, ref, keys, allow_unsigned)
    if as_json:
        emit_json(report.to_dict())
        sys.exit(0 if report.ok else 1)
    for problem in report.problems:
        echo(f"TAMPERED: {problem}")
    signers = ", ".join(k[:16] for k in report.signed_by)
    signed = f"signed by {signers}" if signers else "not signed by a trusted key"
    verdict = "ok" if report.ok else plural(len(report.problems), "problem")
    rate = report.bytes / report.seconds / (1 << 30) if report.seconds else 0.0
    echo(
        f"{report.subject}: {signed}; {plural(report.files, 'artifact file')}, {plural(report.bytes, 'byte')}"
        f" re-hashed ({rate:.2f} GiB/s): {verdict}"
    )
    sys.exit(0 if report.ok else 1)


def _verify_remote(jobs: int, as_json: bool) -> None:
    from ..api import verify_remote

    report = verify_remote(workspace_of(None), jobs=jobs)
    if as_json:
        emit_json(report.to_dict())
        sys.exit(0 if report.ok else 1)
    for digest in report.corrupt:
        echo(f"corrupt: {digest} on the remote (moved to its quarantine/; push it again from a workspace that has it)")
    for name in report.dangling:
        echo(f"action-cache entry {name} names an object the remote lacks (a lookup treats it as a miss)")
    for key, found in report.nondeterministic.items():
        echo(f"not deterministic: {found['node']} gave {len(found['results'])} different results for key {key[:19]}")
        for result in found["results"]:
            echo("  " + ", ".join(f"{name}={digest[:19]}" for name, digest in result.items()))
    problems = len(report.corrupt) + len(report.dangling) + len(report.nondeterministic)
    verdict = "ok" if report.ok else plural(problems, "problem")
    large = f" ({report.large_objects} large, in {plural(report.chunks, 'chunk')})" if report.chunks else ""
    objects = plural(report.checked, "object") + large
    echo(f"remote {report.url}: {objects}, {plural(report.bytes, 'byte')} checked: {verdict}")
    if report.orphan_chunks:
        orphans = plural(report.orphan_chunks, "chunk")
        echo(f"  {orphans} no recipe names (a killed push's, or a deleted large object's): `gc --remote` reclaims them")
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("ref")
@click.option("--into", "into", type=click.Path(file_okay=False, path_type=Path), help="Also write the artifacts here.")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Relative tolerance for metrics.")
@click.option("--offline", is_flag=True, help="Re-create the environment from uv's cache only.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Stages run at once (default: CPU count).")
@click.option(
    "--executor",
    metavar="URL",
    help="Run the stages on a Dask cluster (dask://HOST:PORT) or local (default: modelspec.yaml's `executor:`).",
)
@json_option
@handle_errors
def reproduce(
    ref: str, into: Path | None, rtol: float, offline: bool, jobs: int | None, executor: str | None, as_json: bool
) -> None:
    """Rebuild version REF from its recorded lock and inputs, and compare bit for bit.

    Exit 0 when identical (or every metric is within --rtol), 1 when different.
    """
    from ..api import DIFFERENT, WITHIN, open_catalog
    from ..api import reproduce as reproduce_version
    from .render import ConsoleReporter

    signal.signal(signal.SIGTERM, raise_interrupt)
    with open_catalog() as catalog:
        exact = primary_ref(catalog, ref)
        options: dict[str, Any] = {"rtol": rtol, "into": into, "offline": offline}
        options["jobs"] = jobs or 0  # 0: the CPU count, or as many as a cluster takes
        options["executor"] = executor
        if as_json:
            report = reproduce_version(catalog, exact, **options)
        else:
            with ConsoleReporter(make_console()) as reporter:
                report = reproduce_version(catalog, exact, reporter=reporter, **options)
    if as_json:
        emit_json(report.to_dict())
    else:
        for comparison in report.outputs:
            if not comparison.identical:
                fresh = comparison.reproduced
                size = plural(fresh["size"], "byte") if fresh else "not produced"
                recorded = plural(comparison.recorded["size"], "byte")
                echo(f"differs: {comparison.stage}.{comparison.output}: recorded {recorded}, reproduced {size}")
        if report.verdict != "identical":
            for key, m in report.metrics.items():
                echo(f"  metric {key}: recorded {m['recorded']}, reproduced {m['reproduced']}")
        if report.failure:
            echo(report.failure, multiline=True)  # a failure may quote a tool's output, lines and all
        echo(
            f"{report.ref}: {report.verdict} ({plural(len(report.outputs), 'output')} compared) "
            f"in {report.seconds:.1f} s; "
            f"its stages originally took {report.original_seconds:.1f} s"
        )
        if report.verdict == WITHIN:
            echo(f"warning: outputs differ, but every metric is within rtol={rtol}")
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
    from ..api import create_environment
    from ..events import ignore
    from .render import ConsoleReporter

    if as_json:
        created = create_environment(spec, offline=offline, reporter=ignore)
    else:
        with ConsoleReporter(make_console()) as reporter:
            created = create_environment(spec, offline=offline, reporter=reporter)
    if created is None:
        message = {"environment": None}
        emit_json(message) if as_json else echo(f"{spec} declares no environment")
        return
    info = {"digest": created.digest, "path": str(created.path), "bin": created.host_bin}
    emit_json(info) if as_json else echo(f"{created.digest}  {created.path}")


@env.command("list")
@click.option("--spec", type=click.Path(dir_okay=False, path_type=Path), help="A spec of the workspace.")
@json_option
@handle_errors
def env_list(spec: Path | None, as_json: bool) -> None:
    """List the environments of the workspace."""
    from ..api import list_environments

    found = list_environments(workspace_of(spec).envs_dir)
    if as_json:
        emit_json(found)
        return
    for item in found:
        echo(f"{item['digest']}  {item['kind']:<3}  {item['bytes'] / 1e6:8.1f} MB  {item.get('file', '')}")
    if not found:
        echo("no environments")


@env.command("rm")
@click.argument("digest")
@click.option("--spec", type=click.Path(dir_okay=False, path_type=Path), help="A spec of the workspace.")
@json_option
@handle_errors
def env_rm(digest: str, spec: Path | None, as_json: bool) -> None:
    """Remove the environment DIGEST (a unique prefix of its hex is enough)."""
    from ..api import remove_environment

    removed = remove_environment(workspace_of(spec).envs_dir, digest)
    emit_json({"removed": removed}) if as_json else echo(f"removed {removed}")


@env.command("lock")
@click.argument("requirements", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The lock file to write."
)
@click.option("--python", "python", default="3.11", show_default=True, help="Python version to lock for.")
@handle_errors
def env_lock(requirements: Path, output: Path, python: str) -> None:
    """Write a hash-pinned lock of REQUIREMENTS (uv pip compile --generate-hashes)."""
    from ..api import lock_requirements

    lock_requirements(requirements, output, python)
    echo(f"wrote {output}")
