"""Issue 20 item 16: a spec (or workspace, config or lock file) that is not a regular file is
refused before a byte is read, and a file is read only up to its size limit (1 MiB for a spec
or the workspace file). `/dev/zero` used to be read until memory ran out, and a FIFO blocked
forever: each command runs under a timeout and a memory limit, so a hang or a blow-up fails
the test instead of stalling or starving the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Repo

from modelspec.spec.yamlsource import MAX_BYTES

SPEC = """\
modelspec: 1
name: x
version: "1.0"
code: {repo: ..}
data:
  raw: {path: data/raw.txt}
config: {dir: conf}
hermetic: off
stages:
  a:
    cmd: sh -c 'cat ${inputs.raw} > ${outputs.out}'
    inputs: [raw]
    params: [a]
    outputs: {out: a.txt}
artifacts: [a.out]
"""
COMMANDS = ("validate", "plan", "build", "lock")
NOT_REGULAR = "is not a regular file"


def _limit_memory() -> None:
    limit = 3 << 30  # far above what a refused spec needs, far below what /dev/zero takes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with a timeout (a FIFO would block forever) and an address-space limit."""
    return subprocess.run(
        [sys.executable, "-m", "modelspec", *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
    )


def prepared(repo: Repo) -> None:
    repo.write("data/raw.txt", "raw\n")
    repo.write("conf/config.yaml", "a: {v: 1}\n")
    repo.write("specs/x.yaml", SPEC, dedent=False)
    repo.commit()


def assert_refused(result: subprocess.CompletedProcess[str], where: str, message: str) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-2000:]
    assert result.returncode == 2, f"exited {result.returncode}:\n{output[-2000:]}"
    located = [line for line in result.stderr.splitlines() if line.startswith(where)]
    assert any(message in line for line in located), f"expected {message!r} at {where}:\n{output[-2000:]}"


def make_fifo(repo: Repo) -> str:
    os.mkfifo(repo.path / "specs" / "fifo.yaml")
    return "specs/fifo.yaml"


def make_directory(repo: Repo) -> str:
    (repo.path / "specs" / "dir.yaml").mkdir()
    return "specs/dir.yaml"


def make_huge(repo: Repo) -> str:
    repo.write("specs/huge.yaml", SPEC + "#" * (MAX_BYTES + 1) + "\n", dedent=False)
    return "specs/huge.yaml"


def dev_zero(_repo: Repo) -> str:
    return "/dev/zero"


KINDS = {
    "dev-zero": (dev_zero, NOT_REGULAR + " (a character device)"),
    "fifo": (make_fifo, NOT_REGULAR + " (a FIFO)"),
    "directory": (make_directory, NOT_REGULAR + " (a directory)"),
    "too-big": (make_huge, f"may be at most {MAX_BYTES} bytes (8 MiB)"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_spec_path_that_is_not_a_small_regular_file_is_refused(repo: Repo, kind: str, command: str) -> None:
    prepared(repo)
    make, message = KINDS[kind]
    path = make(repo)
    result = run(repo, command, path)
    assert_refused(result, os.path.relpath(path, repo.path) if path.startswith("/") else path, message)
    assert not (repo.path / ".modelspec" / "objects").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_workspace_file_that_is_a_fifo_is_refused(repo: Repo, command: str) -> None:
    prepared(repo)
    os.mkfifo(repo.path / "modelspec.yaml")
    assert_refused(run(repo, command, "specs/x.yaml"), "modelspec.yaml", NOT_REGULAR + " (a FIFO)")


def test_a_huge_workspace_file_is_refused(repo: Repo) -> None:
    prepared(repo)
    repo.write("modelspec.yaml", "#" * (MAX_BYTES + 1) + "\n")
    assert_refused(run(repo, "validate", "specs/x.yaml"), "modelspec.yaml", f"may be at most {MAX_BYTES} bytes")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_config_file_that_is_a_fifo_is_refused(repo: Repo, command: str) -> None:
    prepared(repo)
    os.mkfifo(repo.path / "conf" / "extra.yaml")
    assert_refused(run(repo, command, "specs/x.yaml"), "specs/x.yaml:", "conf/extra.yaml " + NOT_REGULAR)


@pytest.mark.parametrize("command", ("lock", "build"))
def test_a_lock_file_that_is_a_fifo_is_refused_before_any_stage_runs(repo: Repo, command: str) -> None:
    prepared(repo)
    os.mkfifo(repo.path / "specs" / "x.lock")
    assert_refused(run(repo, command, "specs/x.yaml"), "specs/x.lock", NOT_REGULAR + " (a FIFO)")
    assert not (repo.path / ".modelspec" / "ac").exists(), "a stage ran before the lock file was refused"


def test_env_lock_refuses_a_requirements_fifo(repo: Repo) -> None:
    os.mkfifo(repo.path / "requirements.in")
    result = run(repo, "env", "lock", "requirements.in", "-o", "requirements.lock")
    assert_refused(result, "requirements.in", NOT_REGULAR + " (a FIFO)")


def test_a_regular_spec_still_builds(repo: Repo) -> None:
    prepared(repo)
    result = run(repo, "build", "specs/x.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(repo.path / "specs" / "x.lock").is_file()
