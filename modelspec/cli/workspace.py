"""Commands about the workspace itself: init."""

from __future__ import annotations

import os
from pathlib import Path

import click

from . import echo, emit_json, handle_errors, json_option, main


@main.command()
@click.option("--force", is_flag=True, help="Replace an existing modelspec.yaml.")
@json_option
@handle_errors
def init(force: bool, as_json: bool) -> None:
    """Make this repository a workspace: modelspec.yaml with every setting's default
    (commented) at the repository root, and .gitignore lines for what modelspec writes."""
    from ..api import init as init_here

    report = init_here(Path.cwd(), force=force)
    if as_json:
        emit_json(report.to_dict())
        return
    echo(f"{'replaced' if report.overwritten else 'wrote'} {_shown(report.workspace_file)}")
    if report.added:
        echo(f"added to {_shown(report.gitignore)}: {' '.join(report.added)}")
    else:
        echo(f"{_shown(report.gitignore)} already ignores {' '.join(report.ignored)}")
    echo(f"commit: {' '.join(_shown(p) for p in report.to_commit)}")
    echo(
        "commit too: your specs, and the code, config, data and environment locks they name; "
        "never .modelspec/, artifacts/ or a spec's .lock (build writes it; each version keeps its own)"
    )


def _shown(path: Path) -> str:
    return os.path.relpath(path)
