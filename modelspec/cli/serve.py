"""`modelspec serve`: the registry's read-only web view (modelspec/web/)."""

from __future__ import annotations

import click

from . import echo, handle_errors, main, make_console, open_catalog_here


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="The port to listen on.")
@handle_errors
def serve(host: str, port: int) -> None:
    """Serve a read-only web view of this workspace's registry: models, versions (sorted,
    filtered, paged), a version with its lineage, metrics over versions, alias history,
    diff, drift and the audit log; the same data as JSON under /api/. Needs the `web`
    extra: pip install 'modelspec[web]'."""
    from .. import web

    web.require()  # before anything else: say which extra to install
    if not web.is_loopback(host):
        make_console(stderr=True).print(
            f"warning: listening on {host}, not loopback: anyone who can reach this machine on port {port} "
            "can read the registry (the view has no login)",
            style="yellow",
            markup=False,
        )
    with open_catalog_here(read_only=True) as catalog:
        web.serve(catalog, host, port, lambda url: echo(f"serving {url} (read-only; Ctrl-C stops)"))
