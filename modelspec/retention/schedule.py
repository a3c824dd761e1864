"""Scheduled cleanup: when retention runs (a cron expression in the workspace file) and
the ways to run it: a crontab line, a systemd user timer (both written here for
`modelspec schedule install`), or `modelspec daemon`.

The daemon remembers its last run in `<home>/schedule.json`; after downtime it catches
up once (however many fire times it missed), then waits for the next one. Its clock and
its sleep are injected, so tests control time.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..store.files import write_atomic
from ..store.workspace import Workspace

DEFAULT_SCHEDULE = "0 3 * * *"  # daily at 03:00, when no schedule is configured
DAY_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@dataclass(frozen=True)
class Schedule:
    """When gc runs, and where that was said: "--at", "modelspec.yaml" or "default"."""

    expression: str
    source: str

    def describe(self) -> str:
        if self.source == "default":
            return f"{self.expression!r} (the default: daily at 03:00; change it with --at CRON or retention.schedule)"
        if self.source == "--at":
            return f"{self.expression!r} (from --at)"
        return f"{self.expression!r} (retention.schedule in modelspec.yaml)"


def cron_expression(workspace: Workspace, at: str | None = None) -> Schedule:
    """`--at` if given, else the workspace file's `retention.schedule`, else the default."""
    if at is not None:
        check_cron(at, "--at")
        return Schedule(at.strip(), "--at")
    expression = (workspace.settings.get("retention") or {}).get("schedule")
    if not expression:
        return Schedule(DEFAULT_SCHEDULE, "default")
    check_cron(str(expression), f"{workspace.root / 'modelspec.yaml'}: retention.schedule")
    return Schedule(str(expression).strip(), "modelspec.yaml")


def check_cron(expression: str, where: str = "") -> None:
    """A five-field cron expression croniter accepts; `where` says where it was written."""
    from croniter import croniter

    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        prefix = f"{where}: " if where else ""
        raise UsageError(
            f"{prefix}{expression!r} is not a cron expression",
            hint='write five fields (minute hour day-of-month month day-of-week), e.g. "0 3 * * *" for daily at 03:00',
        )


def next_fire(expression: str, after: float) -> float:
    from croniter import croniter

    return float(croniter(expression, after).get_next(float))


@dataclass
class DaemonState:
    file: Path

    def last_run(self) -> float | None:
        try:
            return float(json.loads(self.file.read_bytes())["last_run"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def record(self, when: float) -> None:
        write_atomic(self.file, json.dumps({"last_run": when}).encode(), self.file.parent / "tmp")


def run_daemon(
    expression: str,
    state: DaemonState,
    job: Callable[[float, float], None],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], bool] = lambda: False,
    max_sleep: float = 60.0,
    once: bool = False,
) -> None:
    """Run `job(now, fire_time)` whenever a fire time has passed since the last run.

    Missed fire times collapse into one catch-up run. A daemon that never ran before
    starts counting from now. With `once`, handle what is due now and return.
    """
    if state.last_run() is None:
        state.record(clock())
    while not stop():
        now = clock()
        last = state.last_run() or now
        fire = next_fire(expression, last)
        if fire <= now:
            job(now, fire)
            state.record(now)
            if once:
                return
            continue
        if once:
            return
        sleep(min(fire - now, max_sleep))


def crontab_line(expression: str, workspace: Workspace) -> str:
    command = f"cd {shlex.quote(str(workspace.root))} && {shlex.quote(sys.executable)} -m modelspec gc"
    log = shlex.quote(str(workspace.logs_dir / "gc.log"))
    return f"{expression} {command} >> {log} 2>&1"


def on_calendar(expression: str) -> str:
    """The systemd OnCalendar= form of a five-field cron expression."""
    minute, hour, dom, month, dow = expression.split()

    def field(text: str, first: int) -> str:
        parts = []
        for part in text.split(","):
            base, _, step = part.partition("/")
            if base == "*":
                base = str(first) if step else "*"  # systemd repeats from a start value: 0/15
            else:
                base = base.replace("-", "..")
            parts.append(f"{base}/{step}" if step else base)
        return ",".join(parts)

    days = ""
    if dow != "*":
        names = []
        for part in dow.split(","):
            low, _, high = part.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise UsageError(f"cannot turn the day-of-week field {dow!r} into a systemd timer", hint="use --cron")
            names.append(DAY_NAMES[int(low)] + (f"..{DAY_NAMES[int(high)]}" if high else ""))
        days = ",".join(names) + " "
    return f"{days}*-{field(month, 1)}-{field(dom, 1)} {field(hour, 0)}:{field(minute, 0)}:00"


def systemd_units(expression: str, workspace: Workspace) -> dict[str, str]:
    """The service and timer files, named after the workspace so several can coexist."""
    import hashlib

    tag = hashlib.sha1(str(workspace.root).encode(), usedforsecurity=False).hexdigest()[:8]
    name = f"modelspec-gc-{tag}"
    service = (
        "[Unit]\n"
        f"Description=modelspec retention and garbage collection in {workspace.root}\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"WorkingDirectory={workspace.root}\n"
        f"ExecStart={sys.executable} -m modelspec gc\n"
    )
    timer = (
        "[Unit]\n"
        f"Description=Run {name}.service on its schedule ({expression})\n\n"
        "[Timer]\n"
        f"OnCalendar={on_calendar(expression)}\n"
        "Persistent=true\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {f"{name}.service": service, f"{name}.timer": timer}


def timer_kind() -> str:
    """The timer `schedule install` writes unless told: systemd's where it runs, else cron."""
    return "systemd" if shutil.which("systemctl") else "cron"


def install_crontab(line: str, workspace: Workspace) -> None:
    """Put `line` in the user's crontab in place of this workspace's earlier gc line, if any;
    every other entry is kept."""
    if not shutil.which("crontab"):
        raise UsageError("crontab is not installed", hint="install cron, or use --systemd or `modelspec daemon`")
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    ours = [entry for entry in current.splitlines() if "modelspec gc" in entry and str(workspace.root) in entry]
    kept = [entry for entry in current.splitlines() if entry.strip() and entry not in ours]
    subprocess.run(["crontab", "-"], input="\n".join([*kept, line]) + "\n", text=True, check=True)


def install_systemd_units(units: dict[str, str], folder: Path | None = None) -> list[Path]:
    """Write the units into the user's systemd folder (`~/.config/systemd/user`); the files
    written. Enabling the timer is left to the user (`systemctl --user enable --now`)."""
    folder = folder or Path.home() / ".config" / "systemd" / "user"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written
