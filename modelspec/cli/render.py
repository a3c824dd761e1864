"""Rendering for the terminal: the build's progress reporter and the summary table.

On a TTY, running stages show with a spinner and elapsed time; otherwise each event is
one plain line, so logs of CI runs stay readable.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape as escape_markup
from rich.table import Table

from ..events import Event
from ..text import printable
from .live import LiveProgress


def escape(text: str, multiline: bool = False) -> str:
    """A user string inside rich markup: its control characters and its `[` shown, never obeyed."""
    return escape_markup(printable(text, multiline))


def listing(header: list[str], rows: list[list[str]]) -> Table:
    """A listing of plain cells (`printable` text, no markup) as rich prints it."""
    table = Table(box=None, pad_edge=False)
    for column in header:
        table.add_column(escape_markup(column))
    for row in rows:
        table.add_row(*map(escape_markup, row))
    return table


def plain_table(header: list[str], rows: list[list[str]], width: int) -> str | None:
    """What rich prints for `listing(header, rows)`, without
    styles (each cell padded to its column's width, two spaces between columns), or None when
    it would not fit `width`, where rich wraps cells instead. For output that is not a terminal:
    rich takes ~1.5 ms a row (a model's 1,000 versions: 1.5 s), this a few microseconds."""
    from rich.cells import cell_len

    lines = [header, *rows]  # cells are `printable`: one line each
    widths = [max(cell_len(line[i]) for line in lines) for i in range(len(header))]
    if sum(widths) + 2 * (len(widths) - 1) > width:
        return None
    return "".join(
        "  ".join(cell + " " * (w - cell_len(cell)) for cell, w in zip(line, widths, strict=True)) + "\n"
        for line in lines
    )


class ConsoleReporter(LiveProgress):
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        if console.is_terminal:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
            )

    def _line(self, text: str) -> None:
        (self.progress.console if self.progress is not None else self.console).print(text, highlight=False)

    def _start(self, ident: str, text: str) -> None:
        if self.progress is not None:
            self.tasks[ident] = self.progress.add_task(text, total=None)
        else:
            self._line(text)

    def _stop(self, ident: str) -> None:
        task = self.tasks.pop(ident, None)
        if task is not None:
            self.progress.remove_task(task)

    def __call__(self, event: Event) -> None:
        node = escape(event.node)
        data = event.data
        if event.kind == "stage-start":
            where = f"  [dim]on {escape(data['worker'])}[/]" if data.get("worker") else ""
            self._stop(event.node)  # a stage retried on another worker starts again
            self._start(event.node, f"[bold]run[/]     {node}{where}")
        elif event.kind == "stage-cached":
            pass  # the summary counts them: a line each would cost a no-op build of 1,000 stages ~0.3 s
        elif event.kind == "stage-done":
            self._stop(event.node)
            self._line(f"[green]done[/]    {node}  {data['seconds']:.1f} s")
        elif event.kind == "stage-failed":
            self._stop(event.node)
            self._line(f"[red bold]FAILED[/]  {node}: {escape(data['reason'], multiline=True)}")
            if data.get("log_tail"):
                self._line(f"[dim]--- last lines of the log ---[/]\n{escape(data['log_tail'], multiline=True)}")
            if data.get("log"):
                self._line(f"[dim]full log: {escape(data['log'])}[/]")
        elif event.kind == "stage-skipped":
            self._line(f"[yellow]skipped[/] {node}: {escape(data['reason'], multiline=True)}")
        elif event.kind == "env-create":
            self._start("env:" + data["digest"], f"creating {data['kind']} environment {data['digest'][7:19]}")
        elif event.kind == "env-ready":
            self._stop("env:" + data["digest"])
            self._line(f"[green]env[/]     {data['digest'][7:19]} ready in {data['seconds']:.1f} s")
        elif event.kind == "warning":
            self._line(f"[yellow]warning:[/] {escape(data['message'], multiline=True)}")


def summary_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("stage", "state", "seconds", "detail"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    styles = {"ran": "green", "cached": "dim", "failed": "red", "skipped": "yellow"}
    for row in rows:
        seconds = f"{row['seconds']:.1f}" if row.get("seconds") is not None else ""
        state = row["state"]
        reason = escape(row.get("reason", ""), multiline=True)
        table.add_row(escape(row["node"]), f"[{styles[state]}]{state}[/]", seconds, reason)
    return table
