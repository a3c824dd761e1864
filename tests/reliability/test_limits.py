"""Stages are bounded: wall time, memory, processes and /tmp, per stage or as workspace
defaults; a stage past a limit fails with a message naming the limit. In the sandbox,
ptrace is refused (a stage could otherwise stop the sandbox's init and hang the build), and
bubblewrap's own command line shows no host path."""

from __future__ import annotations

import json

import pytest
from conftest import Repo

HEAD = """\
modelspec: 1
name: b
version: "1.0"
code: {repo: ..}
hermetic: HERMETIC
stages:
  s:
"""


def build(repo: Repo, stage: str, hermetic: str = "strict", workspace: str | None = None) -> tuple[int, str]:
    repo.write("specs/b.yaml", HEAD.replace("HERMETIC", hermetic) + stage)
    if workspace is not None:
        repo.write("modelspec.yaml", workspace)
    repo.commit()
    result = repo.modelspec("build", "specs/b.yaml")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


def python_stage(code: str, extra: str = "") -> str:
    return (
        f"    cmd: [python3, -c, {json.dumps(code)}, '${{outputs.o}}']\n"
        "    outputs: {o: o.txt}\n" + extra + "artifacts: [s.o]\n"
    )


@pytest.mark.parametrize("hermetic", ["strict", "off"])
def test_a_stage_past_its_timeout_is_stopped_and_named(repo: Repo, hermetic: str) -> None:
    code, out = build(repo, python_stage("import time; time.sleep(600)", "    timeout: 1s\n"), hermetic)
    assert code == 1
    assert "ran out of time" in out and "timeout = 1 s" in out


def test_the_workspace_file_sets_a_default_timeout(repo: Repo) -> None:
    code, out = build(repo, python_stage("import time; time.sleep(600)"), workspace="limits: {timeout: 1s}\n")
    assert code == 1 and "timeout = 1 s" in out


def test_an_unknown_workspace_limit_is_a_located_error(repo: Repo) -> None:
    code, out = build(repo, python_stage("open(__import__('sys').argv[1], 'w')"), workspace="limits: {memroy: 1G}\n")
    assert code == 2
    assert "modelspec.yaml:1" in out and "limits.memroy" in out and "memory" in out


def test_a_stage_past_its_memory_limit_fails_naming_it(repo: Repo) -> None:
    code, out = build(repo, python_stage("b = bytearray(1 << 30)", "    limits: {memory: 256M}\n"))
    assert code == 1
    assert "ran out of memory" in out and "memory = 256M" in out


def test_a_stage_past_its_process_limit_fails_naming_it(repo: Repo) -> None:
    spawn = (
        "import subprocess, sys\n"
        "children = [subprocess.Popen(['sleep', '5']) for _ in range(60)]\n"
    )
    code, out = build(repo, python_stage(spawn, "    limits: {processes: 20}\n"))
    assert code == 1
    assert "more processes than allowed" in out and "processes = 20" in out


def test_a_stage_that_fills_its_tmp_fails_naming_the_limit(repo: Repo) -> None:
    fill = "open('/tmp/big', 'wb').write(b'x' * (8 << 20))"
    code, out = build(repo, python_stage(fill, "    limits: {tmp: 1M}\n"))
    assert code == 1
    assert "filled its /tmp" in out and "tmp = 1M" in out


def test_ptrace_is_refused_in_the_sandbox_and_the_build_ends(repo: Repo) -> None:
    attach = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "rc = libc.ptrace(16, 1, 0, 0)\n"  # PTRACE_ATTACH to the sandbox's init
        "open(sys.argv[1], 'w').write(f'{rc} {ctypes.get_errno()}')\n"
    )
    code, out = build(repo, python_stage(attach))
    assert code == 0, out
    repo.modelspec("checkout", "specs/b.yaml", "--out", "co", check=True)
    assert (repo.path / "co" / "s" / "o.txt").read_text() == "-1 1"  # EPERM


def test_the_sandbox_init_shows_no_host_path(repo: Repo) -> None:
    look = "import sys; open(sys.argv[1], 'w').write(open('/proc/1/cmdline').read())"
    code, out = build(repo, python_stage(look))
    assert code == 0, out
    repo.modelspec("checkout", "specs/b.yaml", "--out", "co", check=True)
    cmdline = (repo.path / "co" / "s" / "o.txt").read_text()
    assert "bwrap" in cmdline and "python3" in cmdline
    assert str(repo.path) not in cmdline and ".modelspec" not in cmdline
