"""Issue 20 item 10: a data input may not point into the workspace's own directory (the store
and the registry database), nor hold it: `validate`, `plan` and `build` refuse it with a
located error, exit 2, before anything runs.
"""

from __future__ import annotations

import pytest
from conftest import Repo

SPEC = """\
modelspec: 1
name: leak
version: "1.0"
code: {{repo: ..}}
hermetic: off
data:
  raw: {{path: {path}}}
stages:
  copy:
    cmd: sh -c 'cat ${{inputs.raw}} > ${{outputs.out}} || ls ${{inputs.raw}} > ${{outputs.out}}'
    inputs: [raw]
    outputs: {{out: out.txt}}
artifacts: [copy.out]
"""


def prepared(repo: Repo, path: str, env: dict[str, str] | None = None) -> None:
    """A workspace whose store already exists (one good build), then a spec naming `path`."""
    repo.write("data/ok.txt", "ok\n")
    repo.write("specs/leak.yaml", SPEC.format(path="data/ok.txt"), dedent=False)
    repo.commit()
    repo.modelspec("build", "specs/leak.yaml", check=True, env=env)
    repo.write("specs/leak.yaml", SPEC.format(path=path), dedent=False)


@pytest.mark.parametrize(
    ("path", "verb"),
    [(".modelspec/registry.db", "points into"), (".modelspec", "points into"), (".", "holds")],
)
def test_data_in_or_around_the_store_is_refused(repo: Repo, path: str, verb: str) -> None:
    prepared(repo, path)
    for command in ("validate", "plan", "build"):
        result = repo.modelspec(command, "specs/leak.yaml")
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert "specs/leak.yaml:7:" in result.stderr and "data.raw.path" in result.stderr, result.stderr
        assert f"{verb} the workspace's own directory .modelspec" in result.stderr


def test_a_store_moved_by_modelspec_home_is_refused_too(repo: Repo) -> None:
    env = {"MODELSPEC_HOME": str(repo.path / "data" / "store")}
    prepared(repo, "data", env)
    result = repo.modelspec("build", "specs/leak.yaml", env=env)
    assert result.returncode == 2 and "holds the workspace's own directory data/store" in result.stderr
