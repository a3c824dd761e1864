"""The `registry` group: the registry as a whole (`info`: backend, URL, schema, counts;
`copy`: every row into another database).

Apart from the commands on versions (`versions.py`) because these name no model or
version: they are about the database the workspace's registry lives in.
"""

from __future__ import annotations

import click

from . import echo, emit_json, handle_errors, json_option, main, open_catalog_here


@main.group("registry")
def registry_group() -> None:
    """The registry as a whole: what it is and holds; a copy into another database."""


_COUNTED = (
    ("models", "models"),
    ("versions", "versions"),
    ("aliases", "alias targets"),
    ("alias_history", "alias moves"),
    ("tags", "tags"),
    ("reproductions", "reproductions"),
    ("pins", "pins"),
    ("gate_results", "gate verdicts"),
    ("events", "audit events"),
)


def shown_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[key]} {label}" for key, label in _COUNTED)


@registry_group.command("info")
@json_option
@handle_errors
def registry_info(as_json: bool) -> None:
    """The workspace's registry: backend, URL (never its password), schema version and counts."""
    with open_catalog_here(read_only=True) as catalog:
        info = catalog.info()
    if as_json:
        emit_json(info)
        return
    echo(f"backend:  {info['backend']}")
    echo(f"url:      {info['url']}")
    echo(f"schema:   {info['schema_version']}")
    echo(f"identity: {info['registry_id']}")
    echo(f"holds:    {shown_counts(info['counts'])}")


@registry_group.command("copy")
@click.option("--to", "url", required=True, help="The target database URL, e.g. postgresql+psycopg://host/db.")
@json_option
@handle_errors
def registry_copy(url: str, as_json: bool) -> None:
    """Copy the whole registry (versions, aliases with their history, tags, reproductions, pins
    and the audit log) into an empty database, SQLite or PostgreSQL; the copy is verified."""
    with open_catalog_here(read_only=True) as catalog:
        copied = catalog.copy_registry(url)
    if as_json:
        emit_json(copied)
        return
    echo(f"copied {shown_counts(copied['counts'])}")
    echo(f"  from {copied['from']}")
    echo(f"  to   {copied['to']} ({copied['backend']}); audit --verify on the copy: intact")
    echo(f"to use it, set in modelspec.yaml:  registry: {copied['to']}")
