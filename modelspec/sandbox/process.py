"""Running one stage command: the `Sandbox` protocol and the plain process runner.

Every runner gives the command a cleared, fixed environment and the layout of
`layout.py`; `ProcessSandbox` runs it on the host in a scratch directory (no isolation
beyond that), `BubblewrapSandbox` (bwrap.py) runs it in namespaces.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import resource
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..children import die_with_parent
from ..env.environment import Environment
from ..store.owner import TOKEN
from . import cgroups
from .layout import code_dir, interpolate
from .limits import NO_LIMITS, Limits

FIXED_ENV = {
    "TZ": "UTC",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",  # what a stage printed before it was killed is in its log
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_TERMINATE_GRACE = 2.0
_CANCEL_CHECK_MS = 100
_runs = itertools.count()


@dataclass(frozen=True)
class RunRequest:
    """One stage run. `workdir` holds code/, in/, out/, config.json, home/ and tmp/."""

    argv: Sequence[str]  # the template, placeholders not yet interpolated
    shell: bool
    inputs: Mapping[str, str]  # input id → basename
    outputs: Mapping[str, str]
    params: Mapping[str, Any]
    workdir: Path
    log: Path
    environment: Environment | None = None  # its bin/ goes first on PATH
    source_date_epoch: int = 0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = NO_LIMITS


@dataclass(frozen=True)
class RunOutcome:
    """How a command ended: its exit status, and the limit it ran into, if one stopped it."""

    exit_code: int  # negative: killed by that signal (as subprocess reports it)
    limit: str | None = None  # a field of `Limits`
    # The signal that killed the command when only a wrapper's status says so: bubblewrap's
    # init exits with 128+N when the stage died of signal N.
    wrapped_signal: int | None = None

    @property
    def signal(self) -> int | None:
        return -self.exit_code if self.exit_code < 0 else self.wrapped_signal

    def describe(self) -> str:
        """`command exited with status 3`, or `command was killed by signal 9 (SIGKILL)`."""
        number = self.signal
        if number is None:
            return f"command exited with status {self.exit_code}"
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "an unknown signal"
        status = f"; exit status {self.exit_code}" if self.exit_code > 0 else ""
        return f"command was killed by signal {number} ({name}{status})"


def signal_in_status(status: int) -> int | None:
    """N when `status` is 128+N for a signal N: how bubblewrap reports a child killed by it."""
    number = status - 128
    return number if status > 128 and number in set(signal.Signals) else None


class Sandbox(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def hermetic(self) -> bool:
        """Recorded on results: was the command isolated?"""
        ...

    @property
    def isolation(self) -> str:
        """What the action key records: "bwrap" or "none"."""
        ...

    @property
    def protects_inputs(self) -> bool:
        """Are inputs read-only even for root (so that hardlinks into the store are safe)?"""
        ...

    def run(self, request: RunRequest, cancel: threading.Event) -> RunOutcome: ...


def fixed_environment(home: str, tmp: str, env_bin: str | None, epoch: int) -> dict[str, str]:
    path = f"{env_bin}:{SYSTEM_PATH}" if env_bin else SYSTEM_PATH
    return {**FIXED_ENV, "HOME": home, "TMPDIR": tmp, "PATH": path, "SOURCE_DATE_EPOCH": str(epoch)}


class ProcessSandbox:
    """Runs the command as a host process with a cleared environment."""

    name = "process"
    hermetic = False
    isolation = "none"

    @property
    def protects_inputs(self) -> bool:
        return os.geteuid() != 0  # root ignores the read-only bit

    def run(self, request: RunRequest, cancel: threading.Event) -> RunOutcome:
        root = str(request.workdir)
        command = interpolate(request.argv, root, request.inputs, request.outputs, request.params, request.shell)
        env = fixed_environment(
            f"{root}/home",
            f"{root}/tmp",
            request.environment.host_bin if request.environment else None,
            request.source_date_epoch,
        )
        env.update(request.extra_env)
        env.update(command.env)
        return run_process(list(command.argv), env, Path(code_dir(root)), request.log, cancel, limits=request.limits)


def run_process(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    log: Path,
    cancel: threading.Event,
    *,
    limits: Limits = NO_LIMITS,
    pass_fds: tuple[int, ...] = (),
) -> RunOutcome:
    """Run to completion (or until `cancel` or the timeout), output to `log`; kill its whole
    process group. The child dies with modelspec, even if modelspec is SIGKILLed.
    """
    group = cgroups.create(f"modelspec-{TOKEN}-{next(_runs)}", limits.processes) if limits.processes else None
    confined = _confined(argv, limits, group)
    with open(log, "ab") as out:
        try:
            if confined is not None:
                _check_executable(argv[0], env, cwd)
            proc = subprocess.Popen(
                confined or argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=pass_fds,
                preexec_fn=None if confined is not None else functools.partial(_confine, limits, group),
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument or variable
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            out.write(f"modelspec: cannot start {argv[0]!r}: {reason}\n".encode())
            if group:
                group.remove()
            return RunOutcome(127)
        try:
            ended = _wait(proc, cancel, limits.timeout)
            if ended != "exited":
                _kill_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=_TERMINATE_GRACE)
                except subprocess.TimeoutExpired:
                    _kill_group(proc, signal.SIGKILL)
                    proc.wait()
                return RunOutcome(-signal.SIGTERM, "timeout" if ended == "timeout" else None)
            code = proc.wait()
            return RunOutcome(code, "processes" if group and group.hit_limit() else None)
        except BaseException:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            _kill_group(proc, signal.SIGKILL)  # no stray children outlive the stage
            if group:
                group.remove()


def _wait(proc: subprocess.Popen[bytes], cancel: threading.Event, timeout: float | None) -> str:
    """"exited" once the process exits; "cancelled" or "timeout" if one comes first. A pidfd
    wakes us the moment the process exits, where polling `wait(timeout)` would add milliseconds."""
    deadline = time.monotonic() + timeout if timeout else None
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        poller = select.poll()
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        while True:
            if pidfd is not None:
                if poller.poll(_CANCEL_CHECK_MS):
                    return "exited"
            elif proc.poll() is not None:
                return "exited"
            else:
                time.sleep(_CANCEL_CHECK_MS / 1000)
            if cancel.is_set():
                return "cancelled"
            if deadline is not None and time.monotonic() > deadline:
                return "timeout"
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _confined(argv: list[str], limits: Limits, group: cgroups.PidsGroup | None) -> list[str] | None:
    """`argv` run through util-linux's `setpriv` (die with modelspec) and `prlimit` (the
    limits), and a shell that moves itself into the pids group before it execs the command:
    then no Python runs between fork and exec, and Python starts the child with vfork. A
    `preexec_fn` forces a real fork of this whole process, which costs ~30 ms per stage once
    a build holds 150 MB. None where the tools are missing: `_confine` does it in Python."""
    tools = _confining_tools()
    if tools is None:
        return None
    setpriv, prlimit = tools
    wrapped = [setpriv, "--pdeathsig", "KILL", "--"]
    settings = [f"--as={limits.memory}"] if limits.memory else []
    if limits.processes and group is None:
        settings.append(f"--nproc={limits.processes}")
    if settings:
        wrapped += [prlimit, *settings, "--"]
    if group is not None:
        wrapped += ["/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"', str(group.path / "cgroup.procs")]
    return wrapped + argv


@functools.cache
def _confining_tools() -> tuple[str, str] | None:
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    if setpriv is None or prlimit is None or not os.access("/bin/sh", os.X_OK):
        return None
    try:  # --pdeathsig came with util-linux 2.33
        shown = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (setpriv, prlimit) if "--pdeathsig" in shown else None


def _check_executable(program: str, env: Mapping[str, str], cwd: Path) -> None:
    """Raise the OSError that exec would: the wrappers would report it in words of their own."""
    if "/" in program:
        candidates = [program if os.path.isabs(program) else os.path.join(cwd, program)]
    else:
        candidates = [os.path.join(d or ".", program) for d in env.get("PATH", os.defpath).split(os.pathsep)]
    denied = False  # as exec searches: a file that may not be run is passed over, and said last
    for candidate in candidates:
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return
            denied = True
    if denied:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def _confine(limits: Limits, group: cgroups.PidsGroup | None) -> None:
    """In the child, before exec: die with modelspec and take the limits, which everything
    the command starts inherits."""
    die_with_parent()
    if limits.memory:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
    if group:
        group.join()
    elif limits.processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
