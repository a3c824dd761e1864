"""Which executor a build uses, and whether a cluster's parties can run its stages: pure
checks, without Dask or any I/O, so that a build that names no cluster never loads
cluster.py (nor the remote's modules it needs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

from ..errors import UsageError
from ..units import parse_duration

CLUSTER_JOBS = 64  # stages in flight on a cluster when -j is not given (Dask queues what waits)
DEFAULT_WAIT = 60.0  # how long a stage waits for a worker that offers its resources
CONNECT_TIMEOUT = "10s"
CHECKED_PACKAGES = ("dask", "distributed", "cloudpickle", "msgpack", "modelspec")


@dataclass(frozen=True)
class ExecutorURL:
    text: str  # as written: dask://HOST:PORT[?wait=DURATION]
    address: str  # tcp://HOST:PORT
    wait: float = DEFAULT_WAIT


def executor_of(option: str | None, settings: Mapping[str, Any]) -> ExecutorURL | None:
    """The executor a build uses: `--executor`, else the workspace file's `executor:`; None
    for the build's own threads."""
    return parse_executor(option or settings.get("executor"))


def parse_executor(text: str | None) -> ExecutorURL | None:
    """`dask://HOST:PORT` (with `?wait=30s`: how long an unplaceable stage waits), or None
    for `local` and for nothing at all: the build's own thread pool."""
    if text is None or text == "local":
        return None
    parsed = urlparse(text)
    if parsed.scheme != "dask" or not parsed.hostname or parsed.port is None or parsed.path not in ("", "/"):
        raise UsageError(f"executor {text!r}: expected dask://HOST:PORT or local", hint="e.g. dask://10.0.0.5:8786")
    query = parse_qs(parsed.query)
    unknown = sorted(set(query) - {"wait"})
    if unknown:
        raise UsageError(f"executor {text!r}: unknown option {unknown[0]!r}", hint="the only option is ?wait=DURATION")
    wait = parse_duration(query["wait"][-1]) if "wait" in query else DEFAULT_WAIT
    return ExecutorURL(text, f"tcp://{parsed.hostname}:{parsed.port}", wait)


def version_mismatches(versions: Mapping[str, Any]) -> list[str]:
    """What differs between this client and the scheduler or a worker (`Client.get_versions`):
    Python's minor version, the OS and machine (both are in every action key), and the
    packages that carry a task there and back."""
    client = versions["client"]
    problems = []
    parties = {"the scheduler": versions["scheduler"], **{f"worker {w}": v for w, v in versions["workers"].items()}}
    for party, info in sorted(parties.items()):
        if not isinstance(info, dict):
            problems.append(f"{party} did not say its versions")
            continue
        mine, theirs = client["packages"], info.get("packages", {})
        if mine.get("python", "").split(".")[:2] != str(theirs.get("python", "")).split(".")[:2]:
            problems.append(f"{party} runs Python {theirs.get('python')} (here: {mine.get('python')})")
        for field in ("OS", "machine"):
            if party != "the scheduler" and client["host"].get(field) != info.get("host", {}).get(field):
                problems.append(f"{party} is {info.get('host', {}).get(field)} (here: {client['host'].get(field)})")
        for package in CHECKED_PACKAGES:
            if party == "the scheduler" and package == "modelspec":
                continue  # the scheduler never runs a stage
            if mine.get(package) != theirs.get(package):
                problems.append(f"{party} has {package} {theirs.get(package) or 'missing'} (here: {mine.get(package)})")
    return problems
