"""`modelspec resident`: keep a modelspec in memory, so commands start in milliseconds."""

from __future__ import annotations

import datetime
import sys

import click

from . import echo, emit_json, handle_errors, json_option, main


@main.group()
def resident() -> None:
    """A resident modelspec: commands start in milliseconds instead of importing modelspec
    each time (registry reads, plan and no-op builds gain the most).

    \b
    modelspec resident start    start one for this installation (idles out after --idle)
    modelspec resident status   whether one runs, since when, how many commands it ran
    modelspec resident stop     stop it

    Commands then run in a child of the resident with this shell's working directory,
    environment, umask and terminal, and give the same output and exit codes; without a
    resident (or with MODELSPEC_NO_RESIDENT=1) they run as before. An upgrade or edit of
    modelspec is never served by an older resident: it answers only its own installation.
    """


@resident.command()
@click.option("--idle", default="3h", show_default=True, help="Stop after this long without a command (30m, 3h, 1d).")
@json_option
@handle_errors
def start(idle: str, as_json: bool) -> None:
    """Start this installation's resident modelspec (nothing if it already runs)."""
    from ..api import parse_duration, resident_start
    from ..errors import UsageError

    seconds = parse_duration(idle)
    try:
        status = resident_start(seconds)
    except OSError as exc:
        raise UsageError(f"the resident could not start: {exc}", hint="MODELSPEC_RUNTIME_DIR moves it") from None
    if as_json:
        emit_json(status)
        return
    verb = "started" if status["started"] else "already running"
    echo(f"resident modelspec {verb}: pid {status['pid']}, socket {status['socket']}")


@resident.command()
@json_option
@handle_errors
def status(as_json: bool) -> None:
    """Whether this installation's resident runs (exit 1 if not)."""
    from ..api import resident_control, resident_socket

    found = resident_control("status")
    if as_json:
        emit_json(found or {"running": False, "socket": str(resident_socket())})
    elif found is None:
        echo(f"no resident modelspec (its socket would be {resident_socket()}); `modelspec resident start`")
    else:
        since = datetime.datetime.fromtimestamp(found["since"]).isoformat(timespec="seconds")
        echo(f"resident modelspec: pid {found['pid']}, since {since}, {found['served']} commands, {found['socket']}")
    sys.exit(0 if found else 1)


@resident.command()
@json_option
@handle_errors
def stop(as_json: bool) -> None:
    """Stop this installation's resident (running commands finish)."""
    from ..api import resident_control

    found = resident_control("stop")
    if as_json:
        emit_json({"stopped": found is not None, **(found or {})})
    else:
        echo(f"stopped the resident modelspec (pid {found['pid']})" if found else "no resident modelspec was running")
