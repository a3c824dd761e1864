"""Registered inputs through the command line: `{spec: churn@^1.0, output: model}` takes the
newest active version that is clean (built from committed code) and sandboxed, unless the
spec's `allow:` accepts the marks; `{spec: churn@production, ...}` takes the alias's primary
target. Dirty and unsandboxed versions are marked in `versions` and `show`.

Every test builds a small upstream model `churn` (real git, real builds) and locks a
consumer `app` that reads its artifact. Commands run in-process (click's CliRunner); one
build runs the real CLI in a subprocess, end to end.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from conftest import Repo, states

CHURN = """\
modelspec: 1
name: churn
version: "1.0"
code: {repo: ..}
stages:
  train:
    cmd: sh src/train.sh ${outputs.model}
    code: [src/train.sh]
    outputs: {model: model.txt}
artifacts: [train.model]
"""
APP = """\
modelspec: 1
name: app
version: "1.0"
code: {repo: ..}
data:
  churn: {spec: "churn@SELECTOR", output: modelALLOW}
stages:
  serve:
    cmd: sh -c 'cat ${inputs.churn} > ${outputs.out}'
    inputs: [churn]
    outputs: {out: out.txt}
artifacts: [serve.out]
"""


def run(repo: Repo, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """The CLI in-process: exit `code`, never a traceback."""
    result = repo.cli(*args)
    assert result.returncode == code, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


def as_json(repo: Repo, *args: str) -> Any:
    return json.loads(run(repo, *args, "--json").stdout)


def make(repo: Repo) -> None:
    repo.write("specs/churn.yaml", CHURN, dedent=False)
    repo.write("src/train.sh", 'echo committed-1 > "$1"\n')
    repo.commit("churn")


def app(repo: Repo, selector: str = "^1.0", allow: str = "") -> None:
    """Write the consumer (committed, so that it is never what is dirty)."""
    repo.write("specs/app.yaml", APP.replace("SELECTOR", selector).replace("ALLOW", allow), dedent=False)
    repo.git("add", "specs/app.yaml")
    repo.git("commit", "-q", "--allow-empty", "-m", "app")


def locked_input(repo: Repo, selector: str = "^1.0", allow: str = "") -> dict[str, Any]:
    """The lock's entry for app's registered input, written by `modelspec lock`."""
    app(repo, selector, allow)
    run(repo, "lock", "specs/app.yaml")
    entry: dict[str, Any] = json.loads((repo.path / "specs/app.lock").read_text())["data"]["churn"]
    return entry


def build_churn(repo: Repo, *args: str) -> str:
    report = repo.build_json("specs/churn.yaml", *args, in_process=True)
    return str(report["versions"]["churn"]["ref"])


def test_a_range_skips_dirty_and_unsandboxed_versions_unless_allowed(repo: Repo) -> None:
    make(repo)
    assert build_churn(repo) == "churn@1.0.0"
    repo.write("src/train.sh", 'echo uncommitted > "$1"\n')  # not committed
    assert build_churn(repo, "--allow-dirty") == "churn@1.0.1"
    repo.git("checkout", "--", "src/train.sh")
    assert build_churn(repo, "--hermetic", "off") == "churn@1.0.2"

    # Marked in `versions` (JSON fields and a text column) and in `show`.
    rows = {r["version"]: r for r in as_json(repo, "versions", "churn")}
    assert {v: r["marks"] for v, r in rows.items()} == {"1.0.0": [], "1.0.1": ["dirty"], "1.0.2": ["unsandboxed"]}
    assert (rows["1.0.1"]["dirty"], rows["1.0.1"]["hermetic"]) == (True, True)
    assert (rows["1.0.2"]["dirty"], rows["1.0.2"]["hermetic"]) == (False, False)
    table = run(repo, "versions", "churn").stdout.splitlines()
    assert "marks" in table[0].split()
    marks_of = {line.split()[0]: line.split()[-1] for line in table[1:]}
    assert marks_of == {"1.0.0": "active", "1.0.1": "dirty", "1.0.2": "unsandboxed"}
    shown = as_json(repo, "show", "churn@1.0.1")
    assert shown["marks"] == ["dirty"] and shown["dirty"] is True
    text = run(repo, "show", "churn@1.0.2").stdout
    assert "active (unsandboxed)" in text.splitlines()[0]
    assert "marks        unsandboxed (ran without a sandbox)" in text
    assert "marks        -" in run(repo, "show", "churn@1.0.0").stdout

    # The newest in the range that carries no mark the spec does not allow.
    assert locked_input(repo)["registered"] == "churn@1.0.0"
    assert locked_input(repo, allow=", allow: [dirty]")["registered"] == "churn@1.0.1"
    assert locked_input(repo, allow=", allow: [unsandboxed]")["registered"] == "churn@1.0.2"
    assert locked_input(repo, allow=", allow: [dirty, unsandboxed]")["registered"] == "churn@1.0.2"
    app(repo, allow=", allow: [dirty]")
    built = repo.build_json("specs/app.yaml")  # the real CLI, end to end
    assert built["versions"]["app"]["ref"] == "app@1.0.0"
    run(repo, "checkout", "specs/app.yaml", "--out", "out")
    assert (repo.path / "out/serve/out.txt").read_text() == "uncommitted\n"

    # Committing what the dirty build used makes a clean version of its own, its stage cached.
    repo.write("src/train.sh", 'echo uncommitted > "$1"\n')
    repo.commit("train")
    report = repo.build_json("specs/churn.yaml", in_process=True)
    assert report["versions"]["churn"]["ref"] == "churn@1.0.3" and states(report) == {"churn:train": "cached"}
    assert as_json(repo, "show", "churn@1.0.3")["marks"] == []
    assert locked_input(repo)["registered"] == "churn@1.0.3"


def test_allow_dirty_on_committed_files_is_a_clean_build(repo: Repo) -> None:
    make(repo)
    assert build_churn(repo, "--allow-dirty") == "churn@1.0.0"
    assert as_json(repo, "show", "churn@1.0.0")["marks"] == []
    report = repo.build_json("specs/churn.yaml", in_process=True)
    assert report["versions"]["churn"]["ref"] == "churn@1.0.0"  # the same version: nothing was dirty
    assert "marks" not in run(repo, "versions", "churn").stdout.splitlines()[0].split()


def test_no_qualifying_version_says_which_were_skipped_and_how_to_allow_them(repo: Repo) -> None:
    make(repo)
    repo.write("src/train.sh", 'echo uncommitted > "$1"\n')
    assert build_churn(repo, "--allow-dirty") == "churn@1.0.0"
    assert build_churn(repo, "--allow-dirty", "--hermetic", "off") == "churn@1.0.1"
    app(repo)
    for command in ("lock", "validate", "build"):
        stderr = run(repo, command, "specs/app.yaml", code=2).stderr
        assert "specs/app.yaml:6:" in stderr and "data.churn.spec" in stderr, stderr
        assert "no version of churn in '^1.0' is active, clean and sandboxed" in stderr
        assert "skipped 1.0.1 (dirty, unsandboxed), 1.0.0 (dirty)" in stderr
        assert "allow: [dirty, unsandboxed]" in stderr and "built from uncommitted files" in stderr
    assert not (repo.path / "specs/app.lock").exists()
    # Allowing one mark is not enough for a version that has both.
    assert locked_input(repo, allow=", allow: [dirty]")["registered"] == "churn@1.0.0"
    # A range that nothing matches says so, as before.
    app(repo, selector="^2.0")
    stderr = run(repo, "lock", "specs/app.yaml", code=2).stderr
    assert "no active version of churn matches '^2.0' (versions: 1.0.0 (active), 1.0.1 (active))" in stderr


def test_an_alias_input_is_pinned_to_its_primary_target(repo: Repo) -> None:
    make(repo)
    assert build_churn(repo) == "churn@1.0.0"
    repo.write("src/train.sh", 'echo committed-2 > "$1"\n')
    repo.commit("train 2")
    assert build_churn(repo) == "churn@1.0.1"
    run(repo, "promote", "churn@1.0.0", "production")

    entry = locked_input(repo, selector="production")
    assert (entry["registered"], entry["alias"], entry["output"]) == ("churn@1.0.0", "production", "train.model")
    built = repo.build_json("specs/app.yaml", in_process=True)
    assert built["versions"]["app"]["ref"] == "app@1.0.0"
    lineage = as_json(repo, "lineage", "app@1.0.0")["upstream"]
    assert [(item["kind"], item.get("version")) for item in lineage] == [("version", "churn@1.0.0")]
    assert as_json(repo, "reproduce", "app@1.0.0")["verdict"] == "identical"

    # A canary beside it: the primary target (the largest weight) is used.
    run(repo, "promote", "churn@1.0.1", "production", "--weight", "0.2")
    assert locked_input(repo, selector="production")["registered"] == "churn@1.0.0"
    run(repo, "promote", "churn@1.0.1", "production")
    assert locked_input(repo, selector="production")["registered"] == "churn@1.0.1"

    # An alias pointing at a dirty version is held to the same rule as a range.
    repo.write("src/train.sh", 'echo uncommitted > "$1"\n')
    assert build_churn(repo, "--allow-dirty") == "churn@1.0.2"
    repo.git("checkout", "--", "src/train.sh")
    run(repo, "promote", "churn@1.0.2", "staging")
    app(repo, selector="staging")
    stderr = run(repo, "lock", "specs/app.yaml", code=2).stderr
    assert "specs/app.yaml:6:" in stderr and "churn@staging points to churn@1.0.2, which is dirty" in stderr
    assert "allow: [dirty]" in stderr
    assert locked_input(repo, selector="staging", allow=", allow: [dirty]")["registered"] == "churn@1.0.2"


def test_an_unknown_alias_is_a_located_error(repo: Repo) -> None:
    make(repo)
    build_churn(repo)
    run(repo, "promote", "churn@1.0.0", "production")
    app(repo, selector="prodution")
    for command in ("lock", "validate", "build"):
        stderr = run(repo, command, "specs/app.yaml", code=2).stderr
        assert "specs/app.yaml:6:" in stderr and "no alias churn@prodution" in stderr, stderr
        assert "aliases of churn: production" in stderr
    assert not (repo.path / "specs/app.lock").exists()


def test_allow_takes_known_marks_on_registered_inputs_only(repo: Repo) -> None:
    make(repo)
    app(repo, allow=", allow: [dirty, sandboxless]")
    stderr = run(repo, "validate", "specs/app.yaml", code=2).stderr
    assert "specs/app.yaml:6:" in stderr and "data.churn.allow[1]" in stderr
    assert "'sandboxless' is not one of: dirty, unsandboxed" in stderr
    repo.write("specs/app.yaml", APP.replace("churn@SELECTOR", "churn").replace("ALLOW", ", allow: [dirty]"))
    stderr = run(repo, "validate", "specs/app.yaml", code=2).stderr
    assert "specs/app.yaml:6:" in stderr and "data.churn.allow: allow applies to a registered version only" in stderr
