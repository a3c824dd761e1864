"""A resident modelspec: a process that has imported modelspec once and forks a child per
command, so that a command starts in milliseconds instead of importing the CLI, the
registry's SQLAlchemy and rich again (a few hundred milliseconds each time). Opt-in:
`modelspec resident start`; without one, every command runs in its own process as before.

This module is the client's half and uses only the standard library, so that asking costs
less than a millisecond or two (the server is `forkserver`). The command's own standard
input, output and error are passed to the resident (SCM_RIGHTS), so the child writes to the
caller's terminal or pipe as if it had been started there: colours, widths, `| head` and
exit codes are the same. The child takes the caller's working directory, environment,
umask and arguments; Ctrl-C and SIGTERM given to the caller are passed on to it.

One resident serves one installation: its socket is named by the Python, the package's
location and version and the stat of every module file, so an upgrade or an edit of
modelspec never talks to an old resident (it idles out). The socket lives in a directory
only its user can enter, and the resident answers only its own user (SO_PEERCRED).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

TYPE_CHECKING = False  # as typing's: the client does not import typing (~5 ms of every command)
if TYPE_CHECKING:
    import socket
    from typing import Any

PACKAGE = os.path.dirname(os.path.realpath(__file__))
# Commands a resident runs; the others (long-running servers, this one) always run here.
SERVED = frozenset(
    {
        "alias", "audit", "build", "checkout", "deploy-config", "diff", "drift", "du", "lineage",
        "lock", "metrics", "plan", "registry", "show", "status", "validate", "verify", "versions",
    }
)  # fmt: skip
HEADER = "!I"  # a message's length, before its JSON


def runtime_dir() -> str:
    base = os.environ.get("MODELSPEC_RUNTIME_DIR") or os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return os.path.join(base, f"modelspec-{os.getuid()}")


def any_running() -> bool:
    """Is any resident's socket there at all? One directory listing: without a resident, a
    command pays for nothing more (not even importing `socket`)."""
    try:
        names = os.listdir(runtime_dir())
    except OSError:
        return False
    return any(name.startswith("resident-") and name.endswith(".sock") for name in names)


def installation_key() -> str:
    """What names this installation's resident: the interpreter and its environment (a venv's
    `python` and `python3.11` are one), the package (where, which version, the stat of each
    module file) and the directory it is installed in."""
    parts = [os.path.realpath(sys.executable), sys.prefix, PACKAGE, _stamp(os.path.dirname(PACKAGE))]
    for folder, _dirs, files in sorted(os.walk(PACKAGE)):
        parts.extend(f"{folder}/{name}:{_stamp(f'{folder}/{name}')}" for name in sorted(files) if name.endswith(".py"))
    import zlib

    text = "\n".join(parts).encode()
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"


def _stamp(path: str) -> str:
    try:
        info = os.stat(path)
    except OSError:
        return "-"
    return f"{info.st_mtime_ns}/{info.st_size}"


def socket_path(key: str | None = None) -> str:
    return os.path.join(runtime_dir(), f"resident-{key or installation_key()}.sock")


def private_dir() -> str | None:
    """The runtime directory, made if needed; None if anyone else could enter it."""
    folder = runtime_dir()
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.stat(folder)
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def _connect(path: str) -> socket.socket | None:
    if private_dir() is None or not os.path.exists(path):
        return None
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def send_message(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """A length-prefixed JSON message; the descriptors ride with its first bytes (the header)."""
    import array
    import socket
    import struct

    body = json.dumps(message).encode()
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    sock.sendmsg([struct.pack(HEADER, len(body))], ancillary)
    sock.sendall(body)  # a large environment may take several writes


def read_lines(sock: socket.socket) -> Any:
    """The JSON messages the other side sends, one per line, until it closes."""
    buffer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def forward(argv: list[str]) -> int | None:
    """Run the command in this installation's resident; its exit code, or None when there
    is no resident to run it (the caller runs it itself)."""
    if not any_running():
        return None
    sock = _connect(socket_path())
    if sock is None:
        return None
    umask = os.umask(0)
    os.umask(umask)
    request = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": umask,
        "encoding": [getattr(s, "encoding", None) or "utf-8" for s in (sys.stdin, sys.stdout, sys.stderr)],
    }
    child: list[int] = []

    def pass_on(signum: int, _frame: object) -> None:
        # As a terminal does: Ctrl-C and a hang-up reach the command and what it started
        # (its process group), a SIGTERM only the command.
        if child:
            with contextlib.suppress(ProcessLookupError):
                (os.kill if signum == signal.SIGTERM else os.killpg)(child[0], signum)

    with sock:
        try:
            send_message(sock, request, [0, 1, 2])
        except OSError:
            return None  # a resident that went away: run here
        previous = {s: signal.signal(s, pass_on) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            for message in read_lines(sock):
                if "pid" in message:
                    child.append(int(message["pid"]))
                elif "exit" in message:
                    return int(message["exit"])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if not child:
        return None  # refused before it started anything: run here
    print("modelspec: the resident's process for this command ended without an exit code", file=sys.stderr)
    return 1


def control(action: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """Ask this installation's resident for its `status`, or to `stop`; None if none runs."""
    sock = _connect(socket_path())
    if sock is None:
        return None
    with sock:
        sock.settimeout(timeout)
        try:
            send_message(sock, {"control": action})
            return next(iter(read_lines(sock)), None)
        except (OSError, ValueError):
            return None


def start(idle: float, log: str | None = None) -> dict[str, Any]:
    """Start this installation's resident (if none runs) and wait until it answers; its status."""
    import subprocess

    running = control("status")
    if running is not None:
        return {**running, "started": False}
    folder = private_dir()
    if folder is None:
        raise OSError(f"{runtime_dir()} is not a directory only this user can enter (MODELSPEC_RUNTIME_DIR moves it)")
    log = log or os.path.join(folder, "resident.log")
    with open(log, "ab") as err, open(os.devnull, "rb") as devnull:
        subprocess.Popen(
            # -P and cwd /: the modelspec that started it, never one in the working directory
            [sys.executable, "-P", "-m", "modelspec.forkserver", "--serve", str(idle), socket_path()],
            cwd="/",
            stdin=devnull,
            stdout=err,
            stderr=err,
            start_new_session=True,  # not in the caller's terminal: Ctrl-C there does not stop it
            close_fds=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = control("status")
        if status is not None:
            return {**status, "started": True}
        time.sleep(0.05)
    raise OSError(f"the resident did not start within 30 s: see {log}")


def collect_less() -> None:
    """Collect cyclic garbage after 10,000 new objects, not Python's 700: one command's process
    made ~250 young collections and two full ones in a one-stage change at 1,000 stages (imports
    and the build's own objects, most of them alive until it ends), 90-115 ms of its 1.15 s.
    For a process that runs one command and exits (`launch`, `python -m modelspec`), and the
    resident, whose children inherit it."""
    import gc

    gc.set_threshold(10_000, 10, 10)
