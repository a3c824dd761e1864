"""Commands that move aliases: promote, rollback, and the `alias` group (list, rm, history).

Apart from the commands that read versions (`versions.py`) because an alias is the one
movable name in the registry: these commands write (each move audited) or read a move's
history, where every other command on versions reads what is immutable.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import UsageError
from . import echo, emit_json, handle_errors, json_option, main, open_catalog_here, parse_when, when


@main.command()
@click.argument("ref")
@click.argument("alias")
@click.option("--weight", type=float, help="Serve this share of traffic (0..1) beside the current targets.")
@click.option("--force", is_flag=True, help="Promote a version its quality gates rejected (needs --reason).")
@click.option("--reason", help="Why a rejected version is promoted anyway (recorded in the audit log).")
@json_option
@handle_errors
def promote(ref: str, alias: str, weight: float | None, force: bool, reason: str | None, as_json: bool) -> None:
    """Point ALIAS (production, staging, ...) at the version REF; the history is kept.
    A version its quality gates rejected needs --force --reason "…" (audited)."""
    if force and not (reason or "").strip():
        raise UsageError('--force needs --reason "…": why the rejected version is promoted anyway (it is audited)')
    if reason is not None and not force:
        raise UsageError("--reason goes with --force (promoting a version its quality gates rejected)")
    with open_catalog_here() as catalog:
        name, targets = catalog.promote(ref, alias, weight, reason if force else None)
    emit_json({"alias": f"{name}@{alias}", "targets": targets}) if as_json else echo(
        f"{name}@{alias} → " + ", ".join(f"{v} ({w:g})" if len(targets) > 1 else v for v, w in targets)
    )


@main.command()
@click.argument("name")
@click.argument("alias")
@json_option
@handle_errors
def rollback(name: str, alias: str, as_json: bool) -> None:
    """Point NAME@ALIAS back at its previous target."""
    with open_catalog_here() as catalog:
        targets = catalog.rollback(name, alias)
    emit_json({"alias": f"{name}@{alias}", "targets": targets}) if as_json else echo(
        f"{name}@{alias} rolled back → " + ", ".join(v for v, _w in targets)
    )


@main.group()
def alias() -> None:
    """Aliases: movable names for versions."""


def shown_targets(targets: list[list[Any]]) -> str:
    """`1.0.0` alone; `1.0.0 (0.75), 1.0.1 (0.25)` for a split; `-` for none."""
    return ", ".join(f"{v} ({w:g})" if len(targets) > 1 else str(v) for v, w in targets) or "-"


@alias.command("list")
@click.argument("name")
@json_option
@handle_errors
def alias_list(name: str, as_json: bool) -> None:
    """The aliases of model NAME: what each points to (with traffic weights), last moved when and by whom."""
    with open_catalog_here(read_only=True) as catalog:
        found = catalog.aliases(name)
    if as_json:
        emit_json(found)
        return
    if not found:
        echo(f"{name} has no aliases")
    width = max((len(a["alias"]) for a in found), default=0)
    for a in found:
        moved = a["moved"]
        since = f"  ({moved['action']} {when(moved['time'])} UTC by {moved['actor']})" if moved else ""
        echo(f"{a['alias']:<{width}}  {shown_targets(a['targets'])}{since}")


@alias.command("rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@json_option
@handle_errors
def alias_rm(name: str, alias_name: str, as_json: bool) -> None:
    """Remove NAME@ALIAS (audited; its history stays, and `rollback` restores it)."""
    with open_catalog_here() as catalog:
        before = catalog.remove_alias(name, alias_name)
    if as_json:
        emit_json({"alias": f"{name}@{alias_name}", "removed": before})
    else:
        echo(f"removed {name}@{alias_name} (it pointed to {shown_targets(before)})")


@alias.command("history")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--at", "at", help="Also say what the alias pointed to at this date (UTC), e.g. 2026-11-30T12:00.")
@json_option
@handle_errors
def alias_history(name: str, alias_name: str, at: str | None, as_json: bool) -> None:
    """Every move of NAME@ALIAS: when, who, from, to."""
    with open_catalog_here(read_only=True) as catalog:
        result = catalog.alias_history(name, alias_name, parse_when(at) if at else None)
    if as_json:
        emit_json(result)
        return

    for h in result["history"]:
        moved = f"{shown_targets(h['from'])} → {shown_targets(h['to'])}"
        echo(f"{when(h['time'])}  {h['action']:<8} {h['actor']:<16} {moved}")
    if "at" in result:
        targets = shown_targets(result["at"]["targets"])
        echo(f"at {when(result['at']['time'])} UTC: {name}@{alias_name} → {targets}")
