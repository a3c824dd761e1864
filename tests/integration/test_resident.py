"""`modelspec resident`: a resident modelspec runs commands for the `modelspec` script, with
the caller's streams, directory, environment and exit codes, and Ctrl-C passed on.

Every test uses the real console script (the launcher) and a real resident process, in a
runtime directory of its own (MODELSPEC_RUNTIME_DIR), stopped at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Repo
from pipeline import make_pipeline

from modelspec import resident

SCRIPT = str(Path(sys.executable).parent / "modelspec")


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ms-run-"))  # short: a socket's path has a limit
    monkeypatch.setenv("MODELSPEC_RUNTIME_DIR", str(folder))
    monkeypatch.delenv("MODELSPEC_NO_RESIDENT", raising=False)
    try:
        yield folder
    finally:
        subprocess.run([SCRIPT, "resident", "stop"], capture_output=True, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def run(repo: Repo, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [SCRIPT, *args], cwd=cwd or repo.path, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    return done.returncode, done.stdout, done.stderr


def served() -> int:
    status = resident.control("status")
    assert status is not None
    return int(status["served"])


def test_commands_in_the_resident_answer_as_they_do_alone(repo: Repo, runtime: Path) -> None:
    spec = make_pipeline(repo)
    repo.build_json(spec)
    started = json.loads(subprocess.run([SCRIPT, "resident", "start", "--json"], capture_output=True).stdout)
    assert started["started"] and Path(started["socket"]).parent == runtime / f"modelspec-{os.getuid()}"
    alone = {"MODELSPEC_NO_RESIDENT": "1"}
    for args in (["versions", "pipe"], ["versions", "pipe", "--json"], ["show", "pipe@9.9"], ["plan", spec]):
        before = served()
        assert run(repo, *args) == run(repo, *args, env=alone), args
        assert served() == before + 1, args  # it went through the resident
    # The caller's directory and environment, not the resident's: from a subdirectory, and
    # with MODELSPEC_HOME moved (an empty workspace: no such version there).
    before = served()
    assert run(repo, "versions", "pipe", env={"LARGE": "x" * 100_000})[0] == 0  # a request of many writes
    assert served() == before + 1
    (repo.path / "sub").mkdir()
    assert run(repo, "versions", "pipe", cwd=repo.path / "sub")[0] == 0
    elsewhere = {"MODELSPEC_HOME": str(repo.path / "elsewhere")}
    code, out, err = run(repo, "show", "pipe@latest", env=elsewhere)
    assert (code, out, err) == run(repo, "show", "pipe@latest", env={**elsewhere, **alone}) and code == 2
    # A build that runs a stage, in the resident.
    before = served()
    code, out, _ = run(repo, "build", spec, "c.v=3")
    assert code == 0 and "ran" in out and served() == before + 1


def test_a_reader_that_leaves_ends_the_command_quietly(repo: Repo, runtime: Path) -> None:
    spec = make_pipeline(repo)
    repo.build_json(spec)
    subprocess.run([SCRIPT, "resident", "start"], check=True, capture_output=True)
    pipeline = f"{SCRIPT} audit | head -1; echo status=${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", pipeline], cwd=repo.path, capture_output=True, text=True)
    alone = subprocess.run(
        ["bash", "-c", pipeline],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env={**os.environ, "MODELSPEC_NO_RESIDENT": "1"},
    )
    assert done.stdout == alone.stdout and "status=" in done.stdout
    assert "Traceback" not in done.stderr


def test_ctrl_c_stops_the_command_and_its_stage(repo: Repo, runtime: Path, tmp_path: Path) -> None:
    marker = tmp_path / "stage-ran"
    spec = make_pipeline(repo, hermetic="off", a_extra=f"touch {marker}; sleep 60")
    subprocess.run([SCRIPT, "resident", "start"], check=True, capture_output=True)
    build = subprocess.Popen([SCRIPT, "build", spec], cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the stage did not start"
    build.send_signal(signal.SIGINT)
    _out, err = build.communicate(timeout=30)
    assert build.returncode == 130, err
    assert b"interrupted" in err
    sleeping = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True).stdout.split()
    assert not sleeping, "the stage outlived the interrupted build"


def test_stop_and_a_dead_resident(repo: Repo, runtime: Path) -> None:
    spec = make_pipeline(repo)
    repo.build_json(spec)
    status = json.loads(subprocess.run([SCRIPT, "resident", "start", "--json"], capture_output=True).stdout)
    again = json.loads(subprocess.run([SCRIPT, "resident", "start", "--json"], capture_output=True).stdout)
    assert again["pid"] == status["pid"] and not again["started"]
    os.kill(status["pid"], signal.SIGKILL)  # its socket file stays behind
    time.sleep(0.2)
    assert Path(status["socket"]).exists()
    assert run(repo, "versions", "pipe")[0] == 0  # run here instead
    assert subprocess.run([SCRIPT, "resident", "status"], capture_output=True).returncode == 1
    subprocess.run([SCRIPT, "resident", "start"], check=True, capture_output=True)
    stopped = subprocess.run([SCRIPT, "resident", "stop"], capture_output=True, text=True)
    assert "stopped" in stopped.stdout
    assert resident.control("status") is None and not Path(status["socket"]).exists()


def test_an_edited_installation_has_another_resident(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(resident, "PACKAGE", str(package))
    before = resident.installation_key()
    assert resident.installation_key() == before
    (package / "a.py").write_text("x = 22\n")
    assert resident.installation_key() != before


def test_a_runtime_directory_others_can_enter_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSPEC_RUNTIME_DIR", str(tmp_path))
    folder = Path(resident.runtime_dir())
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    assert resident.private_dir() is None
    assert resident.forward(["modelspec", "versions", "x"]) is None


def test_a_venvs_python_and_python3_name_one_resident() -> None:
    """The console script's interpreter may be `python3.11` where a caller's is `python`:
    the same installation, so the same resident (they had named two)."""
    folder = Path(sys.executable).parent
    names = [folder / name for name in ("python", "python3", f"python3.{sys.version_info.minor}")]
    keys = {
        subprocess.run(
            [str(exe), "-c", "from modelspec import resident; print(resident.installation_key())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for exe in names
        if exe.exists()
    }
    assert len([exe for exe in names if exe.exists()]) >= 2 and len(keys) == 1, keys
