"""Aliases through the command line: canary splits, listing, removal, names and history.

One small model is built three times for the module (a real git repository, real builds):

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
        """The real CLI: a clean exit with `code`, never a traceback."""
        result = self.repo.modelspec(*args)
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
        for v in (1, 2, 3):
            repo.build_json("specs/tiny.yaml", f"v={v}")
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

