"""Aliases through the command line: canary splits, listing, removal, names and history.

One small model is built three times for the module (a real git repository, real builds;
the first through the real CLI in a subprocess, the rest of the commands in-process):

    tiny@1.0.0  v=1      tiny@1.0.1  v=2      tiny@1.0.2  v=3
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import GIT_ENV, Repo

TINY = """\
modelspec: 1
name: tiny
version: "1.0"
code: {repo: ..}
config: {dir: conf}
stages:
  s:
    cmd: sh src/s.sh ${config.v} ${outputs.out} ${config.n} ${outputs.m}
    code: [src/s.sh]
    params: [v, n]
    outputs: {out: out.txt, m: metrics.json}
    metrics: m
artifacts: [s.out]
"""
S_SH = """\
echo "$1" > "$2"
printf '{"n": %s, "auc": 0.5}\\n' "$3" > "$4"
"""


class Model:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        """The CLI in-process: a clean exit with `code`, never a traceback."""
        result = self.repo.cli(*args)
        assert result.returncode == code, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stdout + result.stderr
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", code=code).stdout)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MODELSPEC_HOME", raising=False)
        for key, value in GIT_ENV.items():
            mp.setenv(key, value)
        repo = Repo(tmp_path_factory.mktemp("aliases") / "repo")
        repo.write("specs/tiny.yaml", TINY, dedent=False)
        repo.write("conf/config.yaml", "v: 1\nn: 3\n")
        repo.write("src/s.sh", S_SH, dedent=False)
        repo.commit("tiny")
        repo.build_json("specs/tiny.yaml", "v=1")  # the real CLI, end to end
        for v in (2, 3):
            repo.build_json("specs/tiny.yaml", f"v={v}", in_process=True)
        yield Model(repo)


def test_a_canary_split_is_shown_whole_and_used_by_its_primary_target(model: Model) -> None:
    model.run("promote", "tiny@1.0.0", "canary-a")
    model.run("promote", "tiny@1.0.1", "canary-a", "--weight", "0.25")

    shown = model.json("show", "tiny@canary-a")
    assert shown["ref"] == "tiny@1.0.0"  # the primary target: the largest weight
    assert shown["traffic"]["targets"] == [
        {"ref": "tiny@1.0.0", "weight": 0.75, "primary": True},
        {"ref": "tiny@1.0.1", "weight": 0.25, "primary": False},
    ]
    text = model.run("show", "tiny@canary-a").stdout
    assert "tiny@canary-a splits traffic: tiny@1.0.0 (0.75, primary: shown here), tiny@1.0.1 (0.25)" in text

    notice = "note: tiny@canary-a splits traffic across 1.0.0 (0.75), 1.0.1 (0.25): using its primary target tiny@1.0.0"
    diff = model.run("diff", "tiny@canary-a", "tiny@1.0.2", "--json")
    assert json.loads(diff.stdout)["from"] == "tiny@1.0.0" and notice in diff.stderr
    out = model.repo.path / "exported-canary"
    exported = model.run("export", "tiny@canary-a", str(out))
    assert notice in exported.stderr and json.loads((out / "manifest.json").read_text())["version"] == "1.0.0"
    reproduced = model.run("reproduce", "tiny@canary-a", "--json")
    assert notice in reproduced.stderr
    assert json.loads(reproduced.stdout)["ref"] == "tiny@1.0.0"

    rows = {r["version"]: r for r in model.json("versions", "tiny")}
    assert rows["1.0.0"]["alias_weights"] == {"canary-a": 0.75}
    assert rows["1.0.1"]["alias_weights"] == {"canary-a": 0.25}
    listing = model.run("versions", "tiny").stdout
    assert "canary-a (0.75)" in listing and "canary-a (0.25)" in listing



def test_alias_list_and_an_audited_rm_that_rollback_undoes(model: Model) -> None:
    model.run("promote", "tiny@1.0.2", "staging")
    listed = {a["alias"]: a for a in model.json("alias", "list", "tiny")}
    assert listed["staging"]["targets"] == [["1.0.2", 1.0]]
    assert listed["staging"]["moved"]["action"] == "promote"
    assert listed["staging"]["moved"]["actor"] == GIT_ENV["GIT_AUTHOR_NAME"]
    text = model.run("alias", "list", "tiny").stdout
    assert any(line.startswith("staging ") and " 1.0.2  (promote " in line for line in text.splitlines()), text

    removed = model.run("alias", "rm", "tiny", "staging")
    assert removed.stdout == "removed tiny@staging (it pointed to 1.0.2)\n"
    assert "staging" not in {a["alias"] for a in model.json("alias", "list", "tiny")}
    assert "no version tiny@staging" in model.run("show", "tiny@staging", code=2).stderr
    event = model.json("audit")["events"][-1]
    assert (event["kind"], event["subject"]) == ("alias.rm", "tiny@staging")
    moves = model.json("alias", "history", "tiny", "staging")["history"]
    assert event["payload"] == {"from": [["1.0.2", 1.0]], "at": moves[-1]["time"]}
    assert [(m["action"], m["from"], m["to"]) for m in moves][-1] == ("alias.rm", [["1.0.2", 1.0]], [])
    assert "audit log intact" in model.run("audit", "--verify").stdout

    assert model.json("rollback", "tiny", "staging")["targets"] == [["1.0.2", 1.0]]  # the removal undone

    missing = model.run("alias", "rm", "tiny", "nosuch", code=2).stderr
    assert "error: no alias tiny@nosuch" in missing and "aliases of tiny:" in missing and "staging" in missing


@pytest.mark.parametrize("name", ["Production", "latest", "beef", "pro.d", "9lives", "x" * 65])
def test_alias_names_are_lowercase_words(model: Model, name: str) -> None:
    result = model.run("promote", "tiny@1.0.0", name, code=2)
    assert f"error: {name!r} cannot be an alias name" in result.stderr
    assert "lowercase letters, digits, - and _" in result.stderr
    assert name not in {a["alias"] for a in model.json("alias", "list", "tiny")}


def test_the_history_of_an_alias_never_set_says_so(model: Model) -> None:
    model.run("promote", "tiny@1.0.0", "prod-like")
    result = model.run("alias", "history", "tiny", "never-set", code=2)
    assert "error: tiny@never-set has never been set: it has no history" in result.stderr
    assert "aliases of tiny:" in result.stderr and "prod-like" in result.stderr
    assert result.stdout == ""
    unknown = model.run("alias", "history", "nosuch", "production", code=2)
    assert "no model named 'nosuch'" in unknown.stderr
    assert "no model named 'nosuch'" in model.run("alias", "list", "nosuch", code=2).stderr
