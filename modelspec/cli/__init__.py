"""The command line: click commands → api → rich output. The only place that prints or exits.

Commands live in one module per concern (building, storage, versions, retention); each
parses its arguments, calls `modelspec.api` and prints what it returns. Of modelspec, the
CLI imports only `api`, `errors`, `text` and `events` (an import-linter contract checks it);
they are imported inside the commands so that `modelspec --help` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from .. import __version__, indented
from ..text import printable

F = TypeVar("F", bound=Callable[..., Any])


def make_console(stderr: bool = False) -> Any:
    console = _console_class()(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)
    if not console.is_terminal:
        console.width = 160  # tables in logs and pipes: wide enough not to truncate columns
    return console


@functools.cache
def _console_class() -> Any:
    from rich.console import Console

    class QuietConsole(Console):
        def on_broken_pipe(self) -> None:  # rich would exit 1; every command exits the same way
            self.quiet = True
            stop_writing()

    return QuietConsole


def emit_json(value: Any, depth: int | None = None) -> None:
    """`value` indented; with `depth`, only its outer `depth` levels are, each value below
    them on a line of its own: json's C encoder only writes without indent, and 1,000 build
    records or 10,000 versions indented in pure Python take over a second."""
    click.echo(indented.dumps(value, default=str) if depth is None else _outer(value, depth, ""))


def _outer(value: Any, depth: int, pad: str) -> str:
    if depth == 0 or not value or not isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    inner = pad + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(str(k))}: {_outer(v, depth - 1, inner)}" for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [inner + _outer(v, depth - 1, inner) for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def echo(text: str, multiline: bool = False) -> None:
    """One line of text output; control characters in it (from user strings) are shown escaped."""
    click.echo(printable(text, multiline))


def handle_errors(func: F) -> F:
    """Turn modelspec errors into a message, a hint and an exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import ModelspecError, SpecError

        as_json = bool(kwargs.get("as_json", False))
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            raise  # not an error of the command: the reader left (see `quiet_when_the_reader_leaves`)
        except SpecError as exc:
            report_problems(exc, as_json)
        except ModelspecError as exc:
            fail(as_json, type(exc).__name__, exc.message, exc.hint, exc.exit_code, extra=exc.to_dict())
        except OSError as exc:  # the machine, not the user: a full disk, a read-only store...
            message, hint = describe_os_error(exc)
            fail(as_json, "OSError", message, hint, 1)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] != "sqlalchemy":
                raise
            # The registry's database failed under us (read-only, full, damaged).
            hint = "check that the store directory is writable and has free space (MODELSPEC_HOME moves it)"
            fail(as_json, "RegistryError", f"the registry cannot be used: {getattr(exc, 'orig', exc)}", hint, 1)
        except KeyboardInterrupt:
            make_console(stderr=True).print(
                "[yellow]interrupted[/]: running stages were stopped; nothing half-written was kept"
            )
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def fail(as_json: bool, kind: str, message: str, hint: str, code: int, extra: dict[str, Any] | None = None) -> None:
    """Report an error (as JSON on stdout with --json) and exit with `code`."""
    if as_json:
        emit_json(extra or {"error": kind, "message": message, "hint": hint})
    else:
        err = make_console(stderr=True)
        err.print(printable(f"error: {message}", multiline=True), style="red", markup=False)
        if hint:
            err.print(printable(f"hint: {hint}", multiline=True), style="dim", markup=False)
    sys.exit(code)


def report_problems(exc: Any, as_json: bool) -> NoReturn:
    """A SpecError the same way from every command: each located problem on a line, then
    the count and the hint (as JSON on stdout with --json); exit 2."""
    from rich.text import Text

    from ..text import plural

    if as_json:
        emit_json(exc.to_dict())
    else:
        err = make_console(stderr=True)
        for problem in exc.problems:
            where = f"{problem.yaml_path}: " if problem.yaml_path else ""
            line = (printable(str(problem.location)), "red"), printable(f": {where}{problem.message}")
            err.print(Text.assemble(*line), soft_wrap=True)
        err.print(f"{plural(len(exc.problems), 'problem')} found")
        if exc.hint:
            err.print(printable(f"hint: {exc.hint}", multiline=True), style="dim", markup=False)
    sys.exit(exc.exit_code)


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
    """Spec files and Hydra overrides (`key=value`, `+key=value`, `~key`, each optionally
    scoped to one spec as `name:key=value`) from one argument list."""
    from ..errors import UsageError

    specs, overrides = [], []
    for arg in args:
        if arg.endswith((".yaml", ".yml", ".lock")) or (os.path.exists(arg) and "=" not in arg):
            specs.append(Path(arg))
        elif "=" in arg or arg.partition(":")[2].startswith("~") or arg.startswith("~"):
            overrides.append(arg)
        else:
            raise UsageError(f"{arg!r} is neither a spec file nor a config override (key=value)")
    if not specs:
        raise UsageError("no spec file given", hint="e.g. modelspec build specs/fraud.yaml")
    return specs, overrides


def raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def workspace_of(spec: Path | None) -> Any:
    from ..api import workspace_of as find

    return find(spec)


def open_catalog_here(guard: bool = True, read_only: bool = False) -> Any:
    """The registry of the workspace here, for a `with` block; `read_only` for commands that
    only read it, so that they work on a full disk."""
    from ..api import open_catalog

    return open_catalog(guard=guard, read_only=read_only)


def primary_ref(catalog: Any, ref: str) -> str:
    """The exact version REF names. An alias that splits traffic names its primary target,
    and a notice on stderr says so (stdout stays what the command prints)."""
    resolution = catalog.resolve(ref)
    if resolution.notice:
        make_console(stderr=True).print(printable(f"note: {resolution.notice}"), style="yellow", markup=False)
    return str(resolution.version.ref)


def when(timestamp: float | None) -> str:
    import datetime

    if timestamp is None:
        return ""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_when(text: str) -> float:
    import datetime

    from ..errors import UsageError

    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a date", hint="write e.g. 2026-11-30 or 2026-11-30T14:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def key_values(pairs: tuple[str, ...]) -> dict[str, str]:
    from ..errors import UsageError

    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{pair!r} is not KEY=VALUE")
        result[key] = value
    return result


def metric_text(value: float, form: str = "g") -> str:
    """A metric as a person reads it: an integer whole (epochs 12, 123456; `+` kept from
    `form`), a float in `form`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:+d}" if form.startswith("+") else str(value)
    return format(value, form)


def human_bytes(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000  # type: ignore[assignment]
    return f"{count} B"


# What `modelspec … | head -1` exits with when head has gone: 128 + SIGPIPE, as a shell
# reports git, which dies by the signal.
BROKEN_PIPE_EXIT = 128 + signal.SIGPIPE


def stop_writing() -> NoReturn:
    """The reader of our output has gone: exit quietly with BROKEN_PIPE_EXIT. Standard output
    now points at /dev/null, so that flushing what is buffered at exit raises nothing."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(BROKEN_PIPE_EXIT)


@contextlib.contextmanager
def quiet_when_the_reader_leaves() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        stop_writing()


class Modelspec(click.Group):
    """The command group; output to a closed pipe (`modelspec audit | head -1`) ends the
    command quietly, like git: no traceback, no "Broken pipe" on stderr."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with quiet_when_the_reader_leaves():  # `modelspec --help | head -1`
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with quiet_when_the_reader_leaves():
            return super().invoke(ctx)


@click.group(cls=Modelspec, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelspec")
def main() -> None:
    """modelspec: declarative, reproducible builds of ML models.

    \b
    modelspec init                                 make this repository a workspace
    modelspec validate specs/fraud.yaml            check a spec, every error at once
    modelspec plan specs/fraud.yaml train.lr=0.05  what would run, and why
    modelspec build specs/fraud.yaml               build what changed, reuse the rest
    modelspec checkout specs/fraud.yaml            copy out the built artifacts
    """


# Importing the command modules registers their commands on `main`.
from . import (  # noqa: E402, F401
    aliases,
    building,
    mlflow,
    quality,
    registry,
    remote,
    resident,
    retention,
    serve,
    signing,
    storage,
    versions,
    workspace,
)
