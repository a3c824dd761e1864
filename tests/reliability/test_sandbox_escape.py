"""Sandbox escapes (real bubblewrap, `hermetic: strict`), beyond tests/integration/test_sandbox.py:
a stage that tries every path it might guess cannot read another stage's undeclared output
(through /ms/in or the host path of its object), the registry or the store, the caller's
environment through /proc, host processes, nor reach host services over TCP (IPv4 and IPv6
loopback) or an abstract unix socket; and it cannot write to an upstream output it reads,
which is a hardlink of a store object.

    a ──▶ b ──▶ probe          probe declares b.out only; a.out is what it must not see

The probe reports what it saw instead of failing, and positive controls (its declared input,
a loopback server inside the sandbox, its own PID namespace) show that each attempt ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Repo, states

from modelspec.digest import digest_bytes

SECRET_OUTPUT = "A-SECRET-OUTPUT\n"
SECRET_ENV = "caller-secret-8d1f2e"

SPEC = """\
modelspec: 1
name: esc
version: "1.0"
code: {repo: ..}
config: {dir: conf}
hermetic: strict
stages:
  a:
    cmd: sh -c 'printf "A-SECRET-OUTPUT\\n" > ${outputs.out}'
    outputs: {out: a.txt}
  b:
    cmd: sh -c 'tr A-Z a-z < ${inputs.a.out} > ${outputs.out}'
    inputs: [a.out]
    outputs: {out: b.txt}
  probe:
    cmd: python3 src/probe.py ${inputs.b.out} ${outputs.out}
    code: [src]
    inputs: [b.out]
    params: [probe]
    outputs: {out: report.json}
artifacts: [probe.out]
"""

PROBE = r'''
"""Try everything in /ms/config.json; write what happened as JSON; always exit 0."""
import glob, json, os, socket, sys

declared, report_path = sys.argv[1], sys.argv[2]
probe = json.load(open("/ms/config.json"))["probe"]
report = {"pid": os.getpid(), "inputs": sorted(os.listdir("/ms/in")), "read": {}, "tcp": {}}


def attempt(action):
    try:
        return action()
    except Exception as exc:
        return f"DENIED {type(exc).__name__}: {exc}"


def read(path):
    if os.path.isdir(path):
        return "LISTED " + " ".join(sorted(os.listdir(path)))
    with open(path, "rb") as f:
        return "READ " + f.read(200).decode("latin-1")


def connect(family, address):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(address)
        return "CONNECTED"


def append_to_declared():
    with open(declared, "a") as f:
        f.write("tampered\n")
    return "WROTE"


def serve_and_connect_locally():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        return connect(socket.AF_INET, server.getsockname())


report["declared"] = attempt(lambda: open(declared).read())
for path in probe["paths"]:
    report["read"][path] = attempt(lambda: read(path))
report["write_input"] = attempt(append_to_declared)
report["chmod_input"] = attempt(lambda: os.chmod(declared, 0o666) or "CHMODDED")
report["environ"] = " ".join(os.environ.values()) + " " + " ".join(
    attempt(lambda: open(p, "rb").read().decode("latin-1")) for p in glob.glob("/proc/*/environ")
)
for host, port in probe["tcp"]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    report["tcp"][f"{host} {port}"] = attempt(lambda: connect(family, (host, port)))
report["loopback_inside"] = attempt(serve_and_connect_locally)
report["abstract"] = attempt(lambda: connect(socket.AF_UNIX, "\0" + probe["abstract"]))
if probe["pid"] > 0:  # 0 would be our own process group
    report["kill_host_process"] = attempt(lambda: os.kill(probe["pid"], 9) or "KILLED")
with open(report_path, "w") as f:
    json.dump(report, f, indent=1, sort_keys=True)
'''


@dataclass
class HostServices:
    """Listening sockets and a process on the host that the stage must not reach."""

    tcp: list[socket.socket]
    abstract: socket.socket
    abstract_name: str
    process: subprocess.Popen[bytes]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self.tcp]

    def accepted_nothing(self) -> bool:
        for server in [*self.tcp, self.abstract]:
            server.setblocking(False)
            try:
                connection, _ = server.accept()
            except BlockingIOError:
                continue
            connection.close()
            return False
        return True


def listen(family: socket.AddressFamily, address: Any) -> socket.socket:
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind(address)
    server.listen()
    return server


@pytest.fixture
def host_services() -> Iterator[HostServices]:
    tcp = [listen(socket.AF_INET, ("127.0.0.1", 0))]
    if socket.has_ipv6:
        with contextlib.suppress(OSError):  # no IPv6 loopback on this host
            tcp.append(listen(socket.AF_INET6, ("::1", 0)))
    name = f"modelspec-escape-{os.getpid()}"
    abstract = listen(socket.AF_UNIX, "\0" + name)
    process = subprocess.Popen(["sleep", "120"])
    try:
        yield HostServices(tcp, abstract, name, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        for server in [*tcp, abstract]:
            server.close()


@pytest.fixture
def workspace() -> Iterator[Repo]:
    """A repository outside /tmp: the sandbox mounts a fresh tmpfs on /tmp, which would hide
    a workspace under /tmp whatever else the sandbox let through."""
    root = Path(tempfile.mkdtemp(prefix="modelspec-escape-", dir="/var/tmp"))
    try:
        yield Repo(root / "repo")
    finally:
        shutil.rmtree(root)


def configure(repo: Repo, probe: dict[str, Any]) -> None:
    repo.write("conf/config.yaml", yaml.safe_dump({"probe": probe}))
    repo.commit("probe config")


def run_probe(repo: Repo) -> tuple[dict[str, Any], str]:
    report = repo.build_json("specs/esc.yaml")
    assert states(report) == {"esc:a": "cached", "esc:b": "cached", "esc:probe": "ran"}, report["nodes"]
    repo.modelspec("checkout", "specs/esc.yaml", "--out", "o", check=True)
    text = (repo.path / "o" / "probe" / "report.json").read_text()
    return json.loads(text), text


def test_a_stage_sees_only_what_it_declares(workspace: Repo, host_services: HostServices, monkeypatch: Any) -> None:
    repo = workspace
    repo.write("specs/esc.yaml", SPEC, dedent=False)
    repo.write("src/probe.py", PROBE)
    configure(repo, {"paths": [], "tcp": [], "abstract": "none", "pid": 0})
    first = repo.build_json("specs/esc.yaml")  # the store, registry and a's object now exist
    assert first["ok"], first["nodes"]

    home = repo.path / ".modelspec"
    a_object = digest_bytes(SECRET_OUTPUT.encode()).removeprefix("blake3:")
    a_object_path = home / "objects" / a_object[:2] / a_object
    assert a_object_path.read_text() == SECRET_OUTPUT
    b_digest = first["specs"]["esc"]["nodes"]["esc:b"]["outputs"]["out"]["digest"]
    guesses = [
        "/ms/in/a.out/a.txt",  # where a.out would be mounted had probe declared it
        "/ms/in/a.out",
        str(a_object_path),  # the host path of a's output object
        str(home / "objects"),
        str(home / "registry.db"),
        str(home / "tmp"),  # the host scratch directories of running stages
        str(home),
        str(repo.path),
        "/root",
        "/etc/shadow",
    ]
    configure(
        repo,
        {
            "paths": guesses,
            "tcp": [list(address) for address in host_services.addresses],
            "abstract": host_services.abstract_name,
            "pid": host_services.process.pid,
        },
    )
    monkeypatch.setenv("MODELSPEC_CALLER_SECRET", SECRET_ENV)
    report, text = run_probe(repo)

    # Positive controls: the probe ran, read its declared input and used sockets.
    assert report["declared"] == SECRET_OUTPUT.lower()
    assert report["inputs"] == ["b.out"]
    assert report["loopback_inside"] == "CONNECTED"
    assert report["pid"] < 10, "the stage should have its own PID namespace"

    assert str(repo.path).startswith("/var/tmp/")
    assert SECRET_OUTPUT.strip() not in text, "the probe read stage a's undeclared output"
    assert "SQLite format 3" not in text, "the probe read the registry"
    for path in guesses:
        assert report["read"][path].startswith("DENIED FileNotFoundError"), (path, report["read"][path])
    assert "HOME=/ms/home" in report["environ"]  # /proc/*/environ was readable: the stage's own
    assert SECRET_ENV not in report["environ"]
    assert "MODELSPEC_CALLER_SECRET" not in text

    assert len(report["tcp"]) == len(host_services.addresses) >= 1
    for address, outcome in report["tcp"].items():
        assert outcome.startswith("DENIED"), (address, outcome)
    assert report["abstract"].startswith("DENIED"), report["abstract"]
    assert host_services.accepted_nothing()
    assert report["kill_host_process"].startswith("DENIED ProcessLookupError")
    assert host_services.process.poll() is None, "the stage killed a host process"

    assert report["write_input"].startswith("DENIED"), report["write_input"]
    assert report["chmod_input"].startswith("DENIED"), report["chmod_input"]
    assert repo.modelspec("verify", "--all").returncode == 0
    b_path = home / "objects" / b_digest.removeprefix("blake3:")[:2] / b_digest.removeprefix("blake3:")
    assert b_path.read_text() == SECRET_OUTPUT.lower()
    assert b_path.stat().st_mode & 0o222 == 0
