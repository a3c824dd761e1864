"""The bubblewrap sandbox: the stage sees only what it declares, at fixed paths.

No network (loopback only), new PID/IPC/UTS/user namespaces, all capabilities dropped,
a private /tmp, selected system directories read-only (never `/` itself), the
environment, code snapshot, config and inputs read-only under /ms, and /ms/out and
/ms/home (a scratch $HOME, empty for each run) as the only writable directories.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading

from .layout import SANDBOX_ROOT, code_dir, config_file, interpolate, output_dir
from .process import RunOutcome, RunRequest, fixed_environment, run_process, signal_in_status
from .seccomp import deny_ptrace

# System directories a stage may read. /etc is reduced to what programs need to start.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/mime.types",
)
SYSTEM_ETC_DIRS = ("/etc/alternatives", "/etc/ld.so.conf.d", "/etc/ssl", "/etc/ca-certificates")
HOSTNAME = "modelspec"


def bwrap_path() -> str | None:
    """bwrap on PATH, or `MODELSPEC_BWRAP` (a path; empty means: act as if not installed)."""
    configured = os.environ.get("MODELSPEC_BWRAP")
    if configured is not None:
        return configured if configured and os.access(configured, os.X_OK) else None
    return shutil.which("bwrap")


def bwrap_unavailable() -> tuple[str, str]:
    """Why `bwrap_path()` found no bubblewrap, and what to do: an explicit MODELSPEC_BWRAP
    that names nothing usable is the user's mistake, not a missing package."""
    configured = os.environ.get("MODELSPEC_BWRAP")
    if configured:  # (empty means: act as if not installed)
        problem = "is not executable" if os.path.exists(configured) else "does not exist"
        return (
            f"MODELSPEC_BWRAP={configured} {problem}",
            "point MODELSPEC_BWRAP at a bubblewrap binary, or unset it to use bwrap from PATH",
        )
    return "bubblewrap (bwrap) is not installed", "install it (apt-get install bubblewrap)"


class BubblewrapSandbox:
    name = "bubblewrap"
    hermetic = True
    isolation = "bwrap"
    protects_inputs = True  # read-only bind mounts hold even for root

    def run(self, request: RunRequest, cancel: threading.Event) -> RunOutcome:
        # Options and the seccomp filter go through file descriptors: bwrap's own command line
        # (the sandbox's /proc/1/cmdline) then shows the stage's command, and no host path.
        seccomp = _memfd("modelspec-seccomp", deny_ptrace())
        command = self.command(request, seccomp_fd=seccomp)
        end = command.index("--")
        if any("\0" in arg for arg in command):  # in the NUL-separated options it would add options
            os.close(seccomp)
            with open(request.log, "a") as log:
                log.write("modelspec: cannot start the stage: a value of its command holds a NUL byte\n")
            return RunOutcome(127)
        arguments = _memfd("modelspec-bwrap-args", b"".join(arg.encode() + b"\0" for arg in command[1:end]))
        try:
            outcome = run_process(
                [command[0], "--args", str(arguments), *command[end:]],
                {},
                request.workdir,
                request.log,
                cancel,
                limits=request.limits,
                pass_fds=(seccomp, arguments),
            )
            # bwrap exits with 128+N when the stage died of signal N (its init turns the death
            # into a status); say which signal rather than a bare 137.
            return dataclasses.replace(outcome, wrapped_signal=signal_in_status(outcome.exit_code))
        finally:
            os.close(seccomp)
            os.close(arguments)

    def command(self, request: RunRequest, *, seccomp_fd: int | None = None) -> list[str]:
        """The full bwrap command line for a request (useful to debug a stage by hand)."""
        bwrap = bwrap_path()
        assert bwrap is not None
        root = SANDBOX_ROOT
        work = request.workdir
        environment = request.environment
        env = fixed_environment(
            f"{root}/home", "/tmp", environment.sandbox_bin if environment else None, request.source_date_epoch
        )
        env.update(request.extra_env)
        command = interpolate(request.argv, root, request.inputs, request.outputs, request.params, request.shell)
        env.update(command.env)  # a shell script's placeholder values
        args = [
            bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            HOSTNAME,
            "--clearenv",
        ]
        for key, value in sorted(env.items()):
            args += ["--setenv", key, value]
        for path in SYSTEM_DIRS:
            args += _bind_system(path)
        for path in (*SYSTEM_FILES, *SYSTEM_ETC_DIRS):
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        if request.limits.tmp:
            args += ["--size", str(request.limits.tmp)]
        args += ["--tmpfs", "/tmp"]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        for host_path, inside in environment.binds if environment else ():
            args += ["--ro-bind", host_path, inside]
        for inside in environment.hidden if environment else ():  # the base interpreter's site-packages
            args += ["--tmpfs", inside, "--remount-ro", inside]
        args += [
            "--ro-bind",
            str(work / "code"),
            code_dir(root),
            "--ro-bind",
            str(work / "in"),
            f"{root}/in",
            "--ro-bind",
            str(work / "config.json"),
            config_file(root),
            "--bind",
            str(work / "out"),
            output_dir(root),
            "--bind",
            str(work / "home"),
            f"{root}/home",
            "--remount-ro",
            "/",  # the sandbox's own root: only /tmp, /ms/out and /ms/home stay writable
            "--chdir",
            code_dir(root),
        ]
        if not (work / "in").exists():
            (work / "in").mkdir()
        return [*args, "--", *command.argv]


def _bind_system(path: str) -> list[str]:
    """Bind a system directory read-only; a merged-/usr symlink (/bin → usr/bin) stays a symlink."""
    if os.path.islink(path):
        return ["--symlink", os.readlink(path), path]
    if os.path.isdir(path):
        return ["--ro-bind", path, path]
    return []


def _memfd(name: str, data: bytes) -> int:
    """An anonymous file holding `data`, positioned at its start, for a child to read."""
    fd = os.memfd_create(name, 0)  # not close-on-exec: bwrap reads it
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


NETWORK_SYMPTOMS = (
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "No address associated with hostname",
    "Could not resolve host",
    "getaddrinfo failed",
    "Connection refused",
)
