"""A real Dask cluster on loopback for the tests: `dask scheduler` and two `dask worker`s.

Each worker has one thread and a folder of its own as its "machine" (its store and
environment cache, `MODELSPEC_WORKER_HOME`); it never sees a test's workspace, only the
remote. The scheduler gives up on a task whose worker died twice (`allowed-failures: 1`):
a stage is retried once.

`.ci/run` starts one for the whole run (`python tests/daskcluster.py start DIR` prints its
URL) and passes it in MODELSPEC_TEST_DASK; without it the first test that needs a cluster
starts one for the session. In CI (`CI` set) a missing cluster is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ENV = "MODELSPEC_TEST_DASK"
WORKERS = 2
_started: list[subprocess.Popen[bytes]] = []  # kept, and reaped by `stop`, when this process started them


def _dask() -> list[str]:
    beside = Path(sys.executable).parent / "dask"
    found = str(beside) if beside.exists() else shutil.which("dask")
    if found is None:
        raise RuntimeError("the `dask` command is not installed (pip install -e '.[test]')")
    return [found]


def start(folder: Path, workers: int = WORKERS) -> str:
    """Start the cluster (its logs and the pids in `folder`); its dask:// URL."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    env.pop("MODELSPEC_HOME", None)
    scheduler_file = folder / "scheduler.json"
    pids = []
    argv = [*_dask(), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    argv += ["--scheduler-file", str(scheduler_file)]
    with open(folder / "scheduler.log", "ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    pids.append(process.pid)
    _started.append(process)
    (folder / "pids").write_text(json.dumps(pids))
    address = _wait_for_address(scheduler_file, process)
    for n in range(1, workers + 1):
        home = folder / f"worker{n}"
        home.mkdir(exist_ok=True)
        argv = [*_dask(), "worker", address, "--nthreads", "1", "--name", f"worker{n}", "--host", "127.0.0.1"]
        argv += ["--local-directory", str(home / "dask"), "--no-dashboard"]
        with open(folder / f"worker{n}.log", "ab") as log:
            worker = subprocess.Popen(
                argv,
                stdout=log,
                stderr=log,
                env={**env, "MODELSPEC_WORKER_HOME": str(home / "modelspec")},
                start_new_session=True,
            )
        pids.append(worker.pid)
        _started.append(worker)
        (folder / "pids").write_text(json.dumps(pids))
    url = "dask://" + address.removeprefix("tcp://")
    if workers:
        wait_for_workers(address, workers)
    return url


def _wait_for_address(scheduler_file: Path, process: subprocess.Popen[bytes]) -> str:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {process.returncode} (see its log)")
        try:
            return str(json.loads(scheduler_file.read_text())["address"])
        except (FileNotFoundError, ValueError, KeyError):
            time.sleep(0.1)
    raise RuntimeError("dask scheduler did not start within a minute")


def wait_for_workers(address: str, count: int, timeout: float = 120) -> None:
    from distributed import Client

    with Client(address, timeout="30s", set_as_default=False) as client:
        client.wait_for_workers(count, timeout=timeout)


def stop(folder: Path) -> None:
    try:
        pids = json.loads((folder / "pids").read_text())
    except FileNotFoundError:
        return
    for pid in reversed(pids):  # each started a session of its own: its nanny and worker go with it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    ours = {p.pid: p for p in _started if p.pid in pids}  # a child of ours stays a zombie until reaped
    for pid in pids:
        while time.monotonic() < deadline:
            if pid in ours and ours[pid].poll() is not None:
                break
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for process in ours.values():
        process.wait(timeout=10)
        _started.remove(process)


if __name__ == "__main__":
    command, where = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        print(start(where))
    else:
        stop(where)
