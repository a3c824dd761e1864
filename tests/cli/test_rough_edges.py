"""Rough edges a new user met (issue 11, "build what users expect"), each through the CLI on
a real workspace (git, bubblewrap, SQLite): what a command says must match what it did. The
commands run in-process (click's CliRunner); `init` outside a repository and a stage killed
by SIGKILL run the real CLI in a subprocess."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import Repo

SPEC = """\
modelspec: 1
name: line
version: "0.1"
code: {repo: ..}
data:
  raw: {path: data/raw.txt}
config: {dir: conf}
stages:
  make:
    cmd: sh -c 'cat ${inputs.raw} > ${outputs.out}; echo ${config.make.v} >> ${outputs.out}'
    inputs: [raw]
    params: [make]
    outputs: {out: out.txt}
artifacts: [make.out]
retention:
  keep_last: 1
"""


def make(repo: Repo) -> None:
    repo.write("specs/line.yaml", SPEC, dedent=False)
    repo.write("data/raw.txt", "raw\n")
    repo.write("conf/config.yaml", "make: {v: 0}\n")
    repo.write("modelspec.yaml", "retention:\n  grace: 0s\n")
    repo.commit("line workspace")


def audit_kinds(repo: Repo) -> list[str]:
    with closing(sqlite3.connect(repo.path / ".modelspec" / "registry.db")) as db:
        return [kind for (kind,) in db.execute("SELECT kind FROM events ORDER BY seq")]


@pytest.fixture
def retired(repo: Repo) -> Repo:
    """line@0.1.0 retired by keep_last: 1 (and swept), line@0.1.1 active."""
    make(repo)
    repo.build_json("specs/line.yaml", "make.v=0", in_process=True)
    repo.build_json("specs/line.yaml", "make.v=1", in_process=True)
    gc = json.loads(repo.cli("gc", "--json", check=True).stdout)
    assert "line@0.1.0" in gc["retire"], gc
    return repo


def test_a_build_that_revives_a_retired_version_says_so(retired: Repo) -> None:
    text = retired.cli("build", "specs/line.yaml", "make.v=0", check=True)
    assert "revived line@0.1.0 (it was retired on 20" in text.stdout, text.stdout
    assert "not among the last 1" in text.stdout and "already registered" not in text.stdout
    assert audit_kinds(retired)[-1] == "revive"
    # Built again while active: nothing was revived, and it says the plain thing.
    again = retired.build_json("specs/line.yaml", "make.v=0", in_process=True)
    assert again["versions"]["line"] == {"ref": "line@0.1.0", "new": False}
    assert audit_kinds(retired)[-1] == "revive"


def test_build_json_names_what_the_revived_version_was(retired: Repo) -> None:
    report: dict[str, Any] = retired.build_json("specs/line.yaml", "make.v=0", in_process=True)
    revived = report["versions"]["line"]["revived"]
    assert report["versions"]["line"]["ref"] == "line@0.1.0" and report["versions"]["line"]["new"] is False
    assert revived["status"] == "retired" and "not among the last 1" in revived["reason"]
    assert revived["time"] > 0


def test_reproduce_of_a_retired_version_is_a_bad_reference_like_export(retired: Repo) -> None:
    reproduce = retired.cli("reproduce", "line@0.1.0")
    export = retired.cli("export", "line@0.1.0", "out")
    for said in (reproduce, export):
        assert said.returncode == 2, said.stderr
        assert "line@0.1.0 is retired by retention since 20" in said.stderr and "not among the last 1" in said.stderr
        assert "its artifacts are gone" in said.stderr and "Traceback" not in said.stderr
    assert reproduce.stderr.splitlines()[0] == export.stderr.splitlines()[0]
    assert not (retired.path / "out").exists()
    assert "reproduce" not in audit_kinds(retired)


def test_pin_and_unpin_that_change_nothing_say_so_and_write_no_audit_event(repo: Repo) -> None:
    make(repo)
    repo.build_json("specs/line.yaml", in_process=True)
    before = audit_kinds(repo)
    never = repo.cli("unpin", "line@0.1.0")
    assert (never.returncode, never.stdout) == (0, "line@0.1.0 is not pinned\n"), never.stderr
    assert audit_kinds(repo) == before
    assert repo.cli("pin", "line@0.1.0", check=True).stdout == "pinned line@0.1.0\n"
    again = repo.cli("pin", "line@0.1.0")
    assert (again.returncode, again.stdout) == (0, "line@0.1.0 is already pinned\n")
    assert json.loads(repo.cli("pin", "line@0.1.0", "--json", check=True).stdout)["changed"] is False
    assert audit_kinds(repo) == [*before, "pin"]
    assert repo.cli("unpin", "line@0.1.0", check=True).stdout == "unpinned line@0.1.0\n"
    twice = repo.cli("unpin", "line@0.1.0", "--json", check=True)
    assert json.loads(twice.stdout) == {"ref": "line@0.1.0", "pinned": False, "changed": False}
    assert audit_kinds(repo) == [*before, "pin", "unpin"]
    assert repo.cli("audit", "--verify").returncode == 0


def test_an_explicit_bubblewrap_path_that_is_not_there_is_named(repo: Repo) -> None:
    make(repo)
    missing = {"MODELSPEC_BWRAP": "/nonexistent/bwrap"}
    auto = repo.cli("build", "specs/line.yaml", env=missing)
    assert auto.returncode == 0, auto.stderr
    said = auto.stdout + auto.stderr
    assert said.count("MODELSPEC_BWRAP=/nonexistent/bwrap does not exist: stages run without a sandbox") == 1, said
    assert "not installed" not in said
    strict = repo.cli("build", "specs/line.yaml", "make.v=1", "--hermetic", "strict", env=missing)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert "hermetic: strict but MODELSPEC_BWRAP=/nonexistent/bwrap does not exist" in strict.stderr, strict.stderr
    assert "point MODELSPEC_BWRAP at a bubblewrap binary, or unset it" in strict.stderr
    plain = repo.write("not-bwrap", "just a file\n")
    refused = repo.cli("build", "specs/line.yaml", "--hermetic", "strict", env={"MODELSPEC_BWRAP": str(plain)})
    assert refused.returncode == 1 and f"MODELSPEC_BWRAP={plain} is not executable" in refused.stderr


@pytest.mark.parametrize("command", ["validate", "lock", "plan", "build"])
def test_every_command_puts_the_located_problems_first_then_the_count(repo: Repo, command: str) -> None:
    make(repo)
    repo.write("specs/line.yaml", SPEC.replace("code: {repo: ..}", "code: {repo: .., rfe: HEAD}"), dedent=False)
    repo.commit("a misspelt key")
    result = repo.cli(command, "specs/line.yaml")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("specs/line.yaml:4:"), result.stderr
    assert "rfe" in lines[0] and lines[1] == "1 problem found", result.stderr
    assert "error: 1 problem found" not in result.stderr
    as_json = json.loads(repo.cli(command, "specs/line.yaml", "--json").stdout)
    assert as_json["error"] == "SpecError" and len(as_json["problems"]) == 1


def test_init_outside_a_git_repository_refuses_and_writes_nothing(tmp_path: Path) -> None:
    plain = tmp_path / "not-a-repo" / "sub"
    plain.mkdir(parents=True)
    for extra in ((), ("--json",)):
        result = subprocess.run(
            [sys.executable, "-m", "modelspec", "init", *extra], cwd=plain, capture_output=True, text=True
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr
        said = result.stdout + result.stderr
        assert "not in a git repository" in said and "git init" in said, said
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    # `git init` as the hint says, and init works.
    Repo(plain)
    done = subprocess.run([sys.executable, "-m", "modelspec", "init"], cwd=plain, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (plain / "modelspec.yaml").is_file() and (plain / ".gitignore").is_file()


@pytest.mark.parametrize(
    ("command", "hermetic", "said"),
    [
        ("kill -9 $$", "strict", "line:make: command was killed by signal 9 (SIGKILL; exit status 137)"),
        ("kill -TERM $$", "strict", "line:make: command was killed by signal 15 (SIGTERM; exit status 143)"),
        ("kill -9 $$", "off", "line:make: command was killed by signal 9 (SIGKILL)"),
        ("kill -SEGV $$", "off", "line:make: command was killed by signal 11 (SIGSEGV)"),
        ("exit 3", "strict", "line:make: command exited with status 3"),
    ],
)
def test_a_stage_killed_by_a_signal_is_reported_by_it(repo: Repo, command: str, hermetic: str, said: str) -> None:
    make(repo)
    spec = SPEC.replace("cmd: sh -c 'cat", f"cmd: sh -c '{command}; cat")
    repo.write("specs/line.yaml", spec, dedent=False)
    repo.commit("a stage that dies")
    real = command == "kill -9 $$" and hermetic == "strict"  # one case through the real CLI, end to end
    result = (repo.modelspec if real else repo.cli)("build", "specs/line.yaml", "--hermetic", hermetic)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert said in result.stdout + result.stderr, result.stdout + result.stderr


def test_a_stage_stopped_by_a_limit_names_the_limit_not_the_signal(repo: Repo) -> None:
    make(repo)
    spec = SPEC.replace("cmd: sh -c 'cat", "timeout: 1s\n    cmd: sh -c 'sleep 30; cat")
    repo.write("specs/line.yaml", spec, dedent=False)
    repo.commit("a stage that outlives its timeout")
    result = repo.cli("build", "specs/line.yaml")
    said = result.stdout + result.stderr
    assert result.returncode == 1 and "timeout" in said and "signal" not in said, said


def test_the_readme_plan_example_says_what_plan_prints(repo: Repo) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("$ modelspec plan specs/fraud.yaml train.seed=7\n", 1)[1].split("```", 1)[0]
    since = {line for line in block.splitlines() if line.strip().startswith("- since")}
    assert since == {"           - since the last build, which had no overrides"}, block
    make(repo)
    repo.build_json("specs/line.yaml", in_process=True)  # the last build, with no overrides, as in the README
    printed = repo.cli("plan", "specs/line.yaml", "make.v=7", check=True).stdout.splitlines()
    assert since <= set(printed), printed
    assert "           - config key make.v: 0 → 7" in printed
    assert printed[-1] == "1 of 1 stage will run"
    assert block.splitlines()[-1] == "2 of 3 stages will run"
