"""Commands on versions: versions, show, diff, tag, lineage, export, deploy-config.

Aliases are moved in `aliases.py`; the registry as a whole is `registry.py`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..text import plural, printable
from . import (
    echo,
    emit_json,
    handle_errors,
    human_bytes,
    json_option,
    key_values,
    main,
    make_console,
    metric_text,
    open_catalog_here,
    primary_ref,
    when,
)
from .quality import recorded_gate_lines


@main.command()
@click.argument("name")
@click.option("--where", default="", help="Metric conditions, e.g. 'auc>0.9, f1>=0.5'.")
@click.option("--tag", "tags", multiple=True, help="Only versions with this tag (KEY=VALUE); repeatable.")
@json_option
@handle_errors
def versions(name: str, where: str, tags: tuple[str, ...], as_json: bool) -> None:
    """List the versions of model NAME: content id, created, metrics, aliases, status."""
    with open_catalog_here(read_only=True) as catalog:
        rows = catalog.versions(name, where, key_values(tags))
    if as_json:
        emit_json(rows)
        return
    metric_names = sorted({k for r in rows for k in r["metrics"]})[:4]
    marked = any(r["marks"] for r in rows)  # the column appears when a version is dirty or unsandboxed
    gated = any(r["gate"] for r in rows)  # and this one when a version was judged by quality gates
    header = ["version", "content id", "created (UTC)", *metric_names, "aliases", "status"]
    header += ["gates"] * gated + ["marks"] * marked
    cells: list[list[str]] = []
    for r in rows:
        metrics = [metric_text(r["metrics"][m], ".4g") if m in r["metrics"] else "" for m in metric_names]
        status = r["status"] + (", pinned" if r["pinned"] else "")
        weights = r["alias_weights"]
        aliases = [f"{a} ({weights[a]:g})" if weights.get(a, 1.0) != 1.0 else a for a in r["aliases"]]
        marks = [", ".join(r["marks"])] if marked else []
        gates = [r["gate"] or ""] if gated else []
        listed = ", ".join(aliases)
        row = [r["version"], r["content_id"], when(r["created"]), *metrics, listed, status, *gates, *marks]
        cells.append([printable(c) for c in row])
    header = [printable(c) for c in header]
    from .render import listing, plain_table

    console = make_console()
    plain = None if console.is_terminal else plain_table(header, cells, console.width)
    if plain is not None:
        console.file.write(plain)
    else:
        console.print(listing(header, cells))


def stored_text(info: dict[str, Any], artifact: str) -> str:
    """What an artifact takes in the store, when it is not simply its size (chunked, or gone)."""
    stored = info.get("stored", {}).get(artifact)
    if not stored or stored["form"] == "whole":
        return ""
    if stored["form"] == "missing":
        return "  (not in the store)"
    how = "chunks only" if stored["form"] == "cold" else "a whole copy and chunks"
    return f"  stored {human_bytes(stored['bytes'])} ({how})"


@main.command()
@click.argument("ref")
@click.option("--statement", is_flag=True, help="Print the version's provenance statement (in-toto, SLSA) only.")
@json_option
@handle_errors
def show(ref: str, statement: bool, as_json: bool) -> None:
    """Everything recorded about one version (REF: fraud@1.3.2, fraud@production, ...)."""
    with open_catalog_here(read_only=True) as catalog:
        info = catalog.show(ref)
        if statement:
            from ..api import read_statement

            emit_json(read_statement(catalog.store, info))  # JSON either way: the statement is a document
            return
    if as_json:
        emit_json(info)
        return
    from ..api import MARKS

    marks = f" ({', '.join(info['marks'])})" if info["marks"] else ""
    make_console().print(
        printable(f"{info['ref']}  {info['short_id']}  {info['status']}{marks}"), style="bold", markup=False
    )
    fields = [
        (
            "created",
            f"{when(info['created'])} UTC by {info['author']} on {info['host']}"
            f" (modelspec {info['modelspec_version']})",
        ),
        ("commit", info["commit"] + ("  (dirty working files)" if info.get("dirty") else "")),
        ("environment", str((info.get("environment") or {}).get("digest", "none"))),
        ("hermetic", str(info["hermetic"]).lower()),
        ("marks", "; ".join(f"{mark} ({MARKS[mark]})" for mark in info["marks"]) or "-"),
        ("aliases", ", ".join(info["aliases"]) or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted(info["tags"].items())) or "-"),
        ("lock", info["lock"]),
        ("provenance", provenance_text(info.get("provenance"))),
        ("profiles", ", ".join(sorted(info.get("profiles") or {})) or "-"),  # the inputs `drift` can compare
    ]
    if info.get("traffic"):
        split = info["traffic"]
        shown = [
            f"{t['ref']} ({t['weight']:g}{', primary: shown here' if t['primary'] else ''})" for t in split["targets"]
        ]
        fields.append(("traffic", f"{split['alias']} splits traffic: " + ", ".join(shown)))
    if info.get("status_reason"):
        fields.append(("status", f"{info['status']} at {when(info['status_time'])} UTC: {info['status_reason']}"))
    if info.get("pinned"):
        fields.append(("pinned", f"{when(info['pinned']['time'])} UTC by {info['pinned']['actor']}"))
    for label, value in fields:
        echo(f"  {label:<12} {value}")
    sections = [
        ("metrics", {k: metric_text(v) for k, v in sorted(info["metrics"].items())}),
        ("params", info.get("params", {})),
        (
            "artifacts",
            {
                k: f"{a['digest']}  {plural(a['size'], 'byte')}{stored_text(info, k)}"
                for k, a in sorted(info["artifacts"].items())
            },
        ),
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
        echo(f"  {title}:")
        for key, value in values.items():
            echo(f"    {key} = {value}")
    lineage = info["lineage"]
    echo("  lineage:")
    for item in lineage["upstream"]:
        echo(f"    ← {item['kind']} {item['name']}: {item.get('version') or item['ref']}  {item['digest']}")
    for item in lineage["downstream"]:
        echo(f"    → {item}")
    echo("  gates:" + ("" if info["gates"] else " none"))
    if info["gates"]:
        for line in recorded_gate_lines(info["gates"]):
            echo(line)
    echo("  reproductions:" + ("" if info["reproductions"] else " none"))
    for item in info["reproductions"]:
        by = f" by {item['actor']}" if item.get("actor") else ""
        failure = item["details"].get("failure") or ", ".join(item["details"].get("differing") or [])
        echo(f"    {item['verdict']}  {when(item['time'])} UTC{by}" + (f"  ({failure})" if failure else ""))


@main.command()
@click.argument("ref_a")
@click.argument("ref_b")
@json_option
@handle_errors
def diff(ref_a: str, ref_b: str, as_json: bool) -> None:
    """What changed from REF_A to REF_B: code, data, config, environment, metrics."""
    with open_catalog_here(read_only=True) as catalog:
        exact_a, exact_b = primary_ref(catalog, ref_a), primary_ref(catalog, ref_b)
        result = catalog.diff(exact_a, exact_b, catalog.repo_root)
    if as_json:
        emit_json(result)
        return
    echo(f"{result['from']} → {result['to']}")
    code = result["code"]
    echo(f"code: {code['from'][:12]} → {code['to'][:12]}")
    for path in code["paths_changed"] or []:
        echo(f"  changed {path}")
    if code["stages_changed"]:
        echo(f"  stages whose code changed: {', '.join(code['stages_changed'])}")
    echo("data:" + ("" if result["data"] else " unchanged"))
    for name, change in result["data"].items():
        echo(f"  {name}: {change['from']} → {change['to']}")
    echo("config:" + ("" if result["config"] else " unchanged"))
    for key, (old, new) in result["config"].items():
        echo(f"  {key}: {old!r} → {new!r}")
    env = result["environment"]
    echo("environment:" + ("" if env["from"] != env["to"] else " unchanged"))
    for name, version in env["added"].items():
        echo(f"  + {name} {version}")
    for name, version in env["removed"].items():
        echo(f"  - {name} {version}")
    for name, (old, new) in env["changed"].items():
        echo(f"  ~ {name} {old} → {new}")
    echo("metrics:")
    for key, m in result["metrics"].items():
        delta = metric_text(m["delta"], "+.6g") if m["delta"] is not None else "n/a"
        echo(f"  {key}: {m['from']} → {m['to']} ({delta})")


@main.command()
@click.argument("ref")
@click.argument("pairs", nargs=-1, required=True)
@json_option
@handle_errors
def tag(ref: str, pairs: tuple[str, ...], as_json: bool) -> None:
    """Set tags KEY=VALUE on the version REF."""
    with open_catalog_here() as catalog:
        version, tags = catalog.tag(ref, key_values(pairs))
    emit_json({"ref": version.ref, "tags": tags}) if as_json else echo(
        f"{version.ref}: " + ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))
    )


@main.command()
@click.argument("ref")
@json_option
@handle_errors
def lineage(ref: str, as_json: bool) -> None:
    """Where REF came from (data, specs, versions) and which versions consumed it."""
    with open_catalog_here(read_only=True) as catalog:
        result = catalog.lineage(primary_ref(catalog, ref))
    if as_json:
        emit_json(result)
        return
    echo(result["ref"])
    for item in result["upstream"]:
        echo(f"  ← {item['kind']:<5} {item['name']}: {item.get('version') or item['ref']}  {item['digest']}")
    for item in result["downstream"]:
        echo(f"  → {item}")


def provenance_text(provenance: dict[str, Any] | None) -> str:
    if not provenance:
        return "none (registered before modelspec recorded provenance)"
    keys = ", ".join(keyid[:16] for keyid in provenance.get("keyids") or [])
    return f"{'signed by ' + keys if keys else 'unsigned'}  {provenance['envelope']}"


@main.command()
@click.argument("ref")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@json_option
@handle_errors
def export(ref: str, directory: Path, as_json: bool) -> None:
    """Copy REF's artifacts into DIRECTORY with a manifest.json (digests verified)."""
    with open_catalog_here(read_only=True) as catalog:
        manifest = catalog.export(primary_ref(catalog, ref), directory)
    if as_json:
        emit_json({k: v for k, v in manifest.items() if k != "lock"})
        return
    for name, artifact in manifest["artifacts"].items():
        echo(f"{name} → {directory / artifact['path']}  {artifact['digest']}")
    if manifest.get("provenance"):
        echo(f"{directory / manifest['provenance']['file']}")
    echo(f"{directory / 'manifest.json'}")


@main.command("deploy-config")
@click.argument("name")
@click.argument("alias_name", metavar="[ALIAS]", required=False)
@handle_errors
def deploy_config(name: str, alias_name: str | None) -> None:
    """A JSON document a serving system can load: per alias, versions, artifacts, weights."""
    with open_catalog_here(read_only=True) as catalog:
        document = catalog.deploy_config(name, alias_name)
    emit_json(document)
