"""The resident modelspec itself (`modelspec resident start`; `resident` is the client's
half, `launch` the script that asks it): it imports the CLI and what commands use once, then per
command receives the caller's standard streams, arguments, working directory, environment
and umask, and forks a child that runs the command with them and reports its exit code.
The resident holds no connection, file or thread at a fork: each child starts from the
state just after the imports, as a fresh process would, opening its own registry.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import struct
import sys
import time
from typing import Any

from . import resident

# What a command may need, imported once by the resident (missing extras are skipped).
WARM = (
    "modelspec.cli",
    "modelspec.cli.render",  # a build's summary
    "difflib",  # click imports it for any short option (`-j 2`: tried as a long one first)
    "modelspec.api",
    "modelspec.catalog",
    "modelspec.build.engine",
    "modelspec.registry.registry",
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite.pysqlite",  # the default registry: 8 ms of every registering build
    "rich.console",
    "rich.table",
    "rich.progress",
    "rich.live",
    "yaml",
    "jsonschema",
    "omegaconf",  # a config read (a plain one needs OmegaConf's YAML loader; any other, Hydra)
    "hydra",
    "psycopg",  # a PostgreSQL registry
    "sqlalchemy.dialects.postgresql.psycopg",
    "obstore",  # an s3:// remote
    "cryptography.hazmat.primitives.asymmetric.ed25519",  # signing provenance
)


def serve(idle: float, path: str) -> None:
    """Answer commands on `path`, this installation's socket, until `idle` seconds pass
    without one, or `modelspec resident stop`."""
    if path != resident.socket_path():
        sys.exit(f"modelspec resident: {path} is not the socket of the modelspec in {resident.PACKAGE}")
    resident.collect_less()  # for its children, which inherit it
    for name in WARM:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # What the imports made lives as long as the resident: out of the collector's sight, a
    # child's full collection walks only what its command made (a one-stage change at 1,000
    # stages: 44 -> 6 ms), and no collection writes to the pages it shares with the resident.
    gc.collect()
    gc.freeze()
    folder = resident.private_dir()
    if folder is None:
        sys.exit(f"modelspec resident: {resident.runtime_dir()} is not private to this user")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temp = f"{path}.{os.getpid()}"
    listener.bind(temp)
    os.replace(temp, path)  # a resident that starts while another runs takes over the name
    own = os.stat(path).st_ino
    listener.listen(64)
    listener.settimeout(idle)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave by `finally`: the socket is removed
    started, served = time.time(), 0
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return
            with conn:
                request, fds = _receive(conn)
                if request is None:
                    _close(fds)
                    continue
                action = request.get("control")
                if action is not None:
                    status = {"pid": os.getpid(), "socket": path, "since": started, "served": served}
                    if action == "stop":  # gone before it says so: a command after `stop` runs alone
                        _unlink_own(path, own)
                    conn.sendall(json.dumps(status).encode() + b"\n")
                    if action == "stop":
                        return
                    continue
                if len(fds) != 3:
                    _close(fds)
                    continue
                served += 1
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    _run_child(conn, request, fds)  # never returns
                _close(fds)
    finally:
        _unlink_own(path, own)
        listener.close()


def _unlink_own(path: str, inode: int) -> None:
    """Remove the socket file if it is still this resident's (not a newer one's)."""
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_ino == inode:
            os.unlink(path)


def _receive(conn: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The caller's request and the descriptors it passed; None from a stranger or garbage."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    conn.settimeout(10)
    fds: list[int] = []
    try:
        data, ancillary, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(3 * 4))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]))
        while 0 < len(data) < 4:  # the header, then the body
            more = conn.recv(4 - len(data))
            if not more:
                break
            data += more
        if uid != os.getuid() or len(data) < 4:
            return None, fds
        (length,) = struct.unpack("!I", data[:4])
        body = data[4:]
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                return None, fds
            body += chunk
        return json.loads(body), fds
    except (OSError, ValueError):
        return None, fds


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _run_child(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command waits for its own children
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setsid()  # its own process group: what it starts is stopped with it, not with the resident
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        _close(fds)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(int(request["umask"]))
        import tempfile

        tempfile.tempdir = None  # chosen again from the caller's TMPDIR
        encodings = request.get("encoding") or ["utf-8"] * 3
        sys.stdin = os.fdopen(0, "r", encoding=encodings[0], closefd=False)
        sys.stdout = _text_stream(1, encodings[1])
        sys.stderr = _text_stream(2, encodings[2], errors="backslashreplace")
        sys.argv = list(request["argv"])
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        from .cli import main as cli_main

        try:
            cli_main(args=sys.argv[1:], prog_name="modelspec")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except KeyboardInterrupt:
            code = 130
        _finalize()
    except BaseException:  # report it as a fresh process would, then the exit code
        import traceback

        with contextlib.suppress(Exception):
            traceback.print_exc()
            sys.stderr.flush()
    finally:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
        os._exit(code)


def _finalize() -> None:
    """What the interpreter does at exit, before the exit code is reported (the child then
    leaves by `os._exit`, never through the resident's own code): join the threads the
    command left (a thread pool's workers), run the exit handlers, flush the streams."""
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _text_stream(fd: int, encoding: str, errors: str = "strict") -> Any:
    """A standard stream as Python makes it at start-up: line-buffered on a terminal."""
    return os.fdopen(fd, "w", buffering=1 if os.isatty(fd) else -1, encoding=encoding, errors=errors, closefd=False)


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"] and len(sys.argv) == 4:
    serve(float(sys.argv[2]), sys.argv[3])
