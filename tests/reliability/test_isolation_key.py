"""Issue 20 item 13 / issue 11 §4: the action key holds the isolation actually used, not the
policy asked for. `auto` with bubblewrap present is the same sandbox as `strict` (no rebuild);
`auto` without bubblewrap runs unsandboxed, and such a result is never reused by a build that
has the sandbox. bubblewrap is hidden with MODELSPEC_BWRAP="" (how `bwrap_path` finds it).
"""

from __future__ import annotations

import json

from conftest import Repo, states

SPEC = """\
modelspec: 1
name: iso
version: "1.0"
code: {{repo: ..}}
hermetic: {hermetic}
stages:
  make:
    cmd: sh -c 'echo made > ${{outputs.out}}'
    outputs: {{out: out.txt}}
artifacts: [make.out]
"""
NO_BWRAP = {"MODELSPEC_BWRAP": ""}


def build(repo: Repo, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    result = repo.modelspec("build", "specs/iso.yaml", "--json", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    return {**report["nodes"][0], "states": states(report)}


def plan(repo: Repo, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    result = repo.modelspec("plan", "specs/iso.yaml", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)["nodes"]
    return rows[0]


def write(repo: Repo, hermetic: str) -> None:
    repo.write("specs/iso.yaml", SPEC.format(hermetic=hermetic), dedent=False)
    repo.commit()


def test_auto_with_bubblewrap_reuses_a_strict_result(repo: Repo) -> None:
    write(repo, "strict")
    strict = build(repo)
    assert strict["state"] == "ran" and strict["hermetic"] is True
    assert plan(repo, "--hermetic", "auto")["status"] == "cached"
    auto = build(repo, "--hermetic", "auto")
    assert auto["state"] == "cached" and auto["key"] == strict["key"]
    write(repo, "auto")  # the policy in the spec itself, too
    assert build(repo)["state"] == "cached"


def test_an_unsandboxed_auto_result_is_not_reused_once_bubblewrap_is_there(repo: Repo) -> None:
    write(repo, "auto")
    bare = build(repo, env=NO_BWRAP)
    assert bare["state"] == "ran" and bare["hermetic"] is False
    assert build(repo, env=NO_BWRAP)["state"] == "cached"
    planned = plan(repo)
    assert planned["status"] == "will run"
    assert "sandbox changed: no sandbox → bubblewrap" in planned["reasons"]  # type: ignore[operator]
    boxed = build(repo)
    assert boxed["state"] == "ran" and boxed["hermetic"] is True and boxed["key"] != bare["key"]
    assert build(repo, "--hermetic", "strict")["state"] == "cached"
    assert build(repo, "--hermetic", "off")["key"] == bare["key"]  # off is the same unsandboxed run
