"""`validate` checks what `plan` checks (issue 11), through the CLI on a real git
repository: located problems, exit 2, no traceback, nothing written. The commands run
in-process (click's CliRunner); a few run the real CLI in a subprocess, end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import Repo

SPEC = """\
modelspec: 1
name: x
version: "1.0"
hermetic: off
code:
  repo: ..
data:
  raw:
    path: data/raw.csv
config:
  dir: conf
stages:
  train:
    cmd: sh -c "cp ${inputs.raw} ${outputs.model}; echo ${config.optimizer.lr}"
    code: [src]
    inputs: [raw]
    params: [optimizer, train]
    outputs: {model: model.bin}
artifacts: [train.model]
"""
FILES = {
    "specs/x.yaml": SPEC,
    "conf/config.yaml": "defaults:\n  - optimizer: gd\n  - _self_\ntrain:\n  seed: 1\n",
    "conf/optimizer/gd.yaml": "lr: 0.1\n",
    "conf/optimizer/slow.yaml": "lr: 0.001\n",
    "src/train.py": "TRAIN = 1\n",
    "data/raw.csv": "a\n1\n",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """One committed repository; each test writes its own spec file beside `x.yaml`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELSPEC_HOME", raising=False)
        repo = Repo(tmp_path_factory.mktemp("validate") / "repo")
        for name, text in FILES.items():
            repo.write(name, text, dedent=False)
        repo.commit("x")
        return repo


def write_spec(repo: Repo, name: str, text: str) -> str:
    """A variant of the spec under another name (uncommitted: specs are not code paths)."""
    repo.write(f"specs/{name}.yaml", text.replace("name: x", f"name: {name}"), dedent=False)
    return f"specs/{name}.yaml"


def position(text: str, marker: str) -> str:
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return f"{number}:{line.index(marker) + 1}"
    raise AssertionError(marker)


def failing(repo: Repo, *args: str) -> str:
    result = repo.cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_valid_spec_validates_and_nothing_is_written(workspace: Repo) -> None:
    result = workspace.modelspec("validate", "specs/x.yaml")  # the real CLI, end to end
    assert result.returncode == 0, result.stderr
    assert "specs/x.yaml: ok (x, 1 stage)" in result.stdout
    assert not (workspace.path / ".modelspec").exists()


def test_validate_catches_missing_paths_at_the_resolved_commit(workspace: Repo) -> None:
    text = (
        SPEC.replace("data/raw.csv", "data/gone.csv")
        .replace("code: [src]", "code: [src, src/missing.py]")
        .replace("dir: conf", "dir: confs")
    )
    spec = write_spec(workspace, "paths", text)
    stderr = failing(workspace, "validate", spec)
    assert f"{spec}:{position(text, 'data/gone.csv')}: data.raw.path: data/gone.csv does not exist" in stderr
    assert f"{spec}:{position(text, 'confs')}: config.dir: confs is not a directory" in stderr
    assert (
        f"{spec}:{position(text, 'src/missing.py')}: stages.train.code[1]: "
        "src/missing.py holds no files at the resolved commit (is it committed?)"
    ) in stderr
    assert "3 problems found" in stderr
    assert not (workspace.path / ".modelspec").exists()


def test_a_spec_whose_only_code_path_is_missing_is_rejected(workspace: Repo) -> None:
    text = SPEC.replace("code: [src]", "code: [srcs]")
    spec = write_spec(workspace, "nocode", text)
    stderr = failing(workspace, "validate", spec)
    assert f"{spec}:{position(text, 'srcs')}: stages.train.code[0]: srcs holds no files" in stderr


def test_params_and_placeholders_naming_missing_config_keys(workspace: Repo) -> None:
    text = SPEC.replace("params: [optimizer, train]", "params: [optimizer, trian]").replace(
        "${config.optimizer.lr}", "${config.optimizer.learning_rate}"
    )
    spec = write_spec(workspace, "keys", text)
    stderr = failing(workspace, "validate", spec)
    assert (
        f"{spec}:{position(text, 'trian')}: stages.train.params[1]: config key 'trian' does not exist; "
        "did you mean 'train'?"
    ) in stderr
    assert (
        f"{spec}:{position(text, 'sh -c')}: stages.train.cmd: placeholder ${{config.optimizer.learning_rate}} "
        "names no key of the composed config"
    ) in stderr


def test_a_placeholder_naming_a_missing_key_fails_plan_build_and_lock_cleanly(workspace: Repo) -> None:
    text = SPEC.replace("${config.optimizer.lr}", "${config.optimizer.learning_rate}")
    spec = write_spec(workspace, "placeholder", text)
    for command in ("validate", "plan", "build", "lock"):
        stderr = failing(workspace, command, spec)
        assert re.search(r"stages\.train\.cmd: placeholder \$\{config\.optimizer\.learning_rate\}", stderr), stderr
    assert not (workspace.path / "specs/placeholder.lock").exists()


def test_validate_composes_with_overrides(workspace: Repo) -> None:
    assert workspace.cli("validate", "specs/x.yaml", "optimizer=slow").returncode == 0
    stderr = failing(workspace, "validate", "specs/x.yaml", "optimizer=fast")
    assert "optimizer/fast" in stderr


def test_validate_of_a_dirty_code_path_says_what_plan_says(workspace: Repo) -> None:
    path = Path(workspace.path / "src/train.py")
    path.write_text("TRAIN = 2\n")
    try:
        stderr = failing(workspace, "validate", "specs/x.yaml")
        assert "src/train.py" in stderr and "--allow-dirty" in stderr
        assert workspace.cli("validate", "specs/x.yaml", "--allow-dirty").returncode == 0
    finally:
        path.write_text(FILES["src/train.py"])


@pytest.mark.parametrize(
    "command",
    [["validate"], ["lock"], ["plan"], ["build"], ["checkout"], ["env", "create"], ["build", "--json"]],
)
def test_a_lock_file_given_as_the_spec_names_the_spec(workspace: Repo, command: list[str]) -> None:
    workspace.write("specs/x.lock", "{}\n")
    try:
        result = workspace.cli(*command, "specs/x.lock")
    finally:
        (workspace.path / "specs/x.lock").unlink()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "specs/x.lock: this is a lock file, pass the spec (specs/x.yaml)" in result.stdout + result.stderr


def test_a_command_line_override_is_located_on_the_command_line_with_hydras_help(workspace: Repo) -> None:
    stderr = failing(workspace, "plan", "specs/x.yaml", "train.seed=2", "optimzer=slow")
    assert (
        "command-line override 2 'optimzer=slow': specs/x.yaml: cannot compose the config: "
        "Could not override 'optimzer' (did you mean 'optimizer'?). To append to your config use +optimzer=slow"
    ) in stderr
    assert "specs/x.yaml:1" not in stderr  # not on a line of the spec
    stderr = failing(workspace, "validate", "specs/x.yaml", "optimizer=fast")
    assert "command-line override 1 'optimizer=fast'" in stderr
    assert "Could not find 'optimizer/fast'; the options of the group are optimizer: gd, slow" in stderr
    assert "Config search path" not in stderr
    stderr = failing(workspace, "validate", "specs/x.yaml", "~train.sede")
    assert "'train.sede' does not exist (did you mean 'train.seed'?)" in stderr


def test_an_override_in_the_spec_is_located_on_its_yaml_line(workspace: Repo) -> None:
    text = SPEC.replace("dir: conf", "dir: conf\n  overrides: [optimizer=gd, train.sed=1]")
    spec = write_spec(workspace, "ownoverride", text)
    stderr = failing(workspace, "validate", spec, "train.seed=2")
    assert (
        f"{spec}:{position(text, 'train.sed=1')}: config.overrides[1]: cannot compose the config: "
        "Could not override 'train.sed' (did you mean 'train.seed'?)"
    ) in stderr


def two_specs(repo: Repo) -> tuple[str, str]:
    churn = write_spec(repo, "churn", SPEC)
    plain = write_spec(
        repo,
        "noconfig",
        SPEC.replace("config:\n  dir: conf\n", "").replace("; echo ${config.optimizer.lr}", "").replace(
            "params: [optimizer, train]", "params: []"
        ),
    )
    return churn, plain


def test_scoped_overrides_apply_to_their_spec_only(workspace: Repo) -> None:
    churn, _ = two_specs(workspace)
    workspace.cli("lock", "specs/x.yaml", churn, "churn:optimizer=slow", "train.seed=3", check=True)
    x = json.loads((workspace.path / "specs/x.lock").read_text())["config"]
    scoped = json.loads((workspace.path / "specs/churn.lock").read_text())["config"]
    assert x == {"optimizer": {"lr": 0.1}, "train": {"seed": 3}}
    assert scoped == {"optimizer": {"lr": 0.001}, "train": {"seed": 3}}


def test_a_scope_naming_no_spec_of_the_build_names_the_specs(workspace: Repo) -> None:
    churn, _ = two_specs(workspace)
    stderr = failing(workspace, "plan", "specs/x.yaml", churn, "fraud:optimizer=slow")
    assert (
        "command-line override 1 'fraud:optimizer=slow' is scoped to 'fraud', which is no spec of this build "
        "(specs: churn, x)"
    ) in stderr


def test_an_unscoped_override_a_spec_cannot_take_is_an_error_with_a_hint(workspace: Repo) -> None:
    churn, plain = two_specs(workspace)
    stderr = failing(workspace, "validate", plain, churn, "train.seed=3")
    assert f"command-line override 1 'train.seed=3': {plain} has no `config` to override" in stderr
    assert "scope it to one as NAME:KEY=VALUE" in stderr
    stderr = failing(workspace, "validate", churn, "specs/x.yaml", "trian.seed=3")
    assert stderr.count("command-line override 1 'trian.seed=3'") == 2  # one problem per spec
    assert workspace.cli("validate", plain, churn, "churn:train.seed=3", "churn:~train.seed").returncode == 0


def test_plan_reasons_say_they_compare_with_the_last_build_and_its_overrides(workspace: Repo, tmp_path: Path) -> None:
    home = {"MODELSPEC_HOME": str(tmp_path / "home")}  # this workspace's other tests expect no store

    def plan(*overrides: str) -> dict[str, list[str]]:
        result = workspace.cli("plan", "specs/x.yaml", *overrides, "--json", env=home)
        assert result.returncode == 0, result.stderr
        return {row["node"]: row["reasons"] for row in json.loads(result.stdout)["nodes"]}

    assert plan() == {"x:train": ["never built"]}
    workspace.cli("build", "specs/x.yaml", "train.seed=5", env=home, check=True)
    assert plan() == {
        "x:train": ["since the last build, which had the override train.seed=5", "config key train.seed: 5 → 1"]
    }
    assert plan("train.seed=5", "optimizer=slow") == {
        "x:train": ["since the last build, which had the override train.seed=5", "config key optimizer.lr: 0.1 → 0.001"]
    }
    workspace.cli("build", "specs/x.yaml", env=home, check=True)
    assert plan("optimizer=slow")["x:train"][0] == "since the last build, which had no overrides"
    text = workspace.cli("plan", "specs/x.yaml", "train.seed=7", env=home).stdout
    assert "- since the last build, which had no overrides\n" in text
    assert "- config key train.seed: 1 → 7" in text


BAD_WORKSPACE = """\
stor: elsewhere
retention:
  keep_lats: 3
  max_age: 90 days
  schedule: "0 3 * * *"
  grace: 1h
"""
WORKSPACE_PROBLEMS = [
    "modelspec.yaml:1:1: stor: unknown key 'stor'; did you mean 'store'?",
    "modelspec.yaml:3:3: retention.keep_lats: unknown key 'keep_lats'; did you mean 'keep_last'?",
    "modelspec.yaml:4:12: retention.max_age: '90 days' must be a duration such as 90d, 12h or 2w",
]


def test_validate_checks_the_workspace_file_as_one(repo: Repo) -> None:
    repo.write("modelspec.yaml", BAD_WORKSPACE, dedent=False)
    result = repo.modelspec("validate", "modelspec.yaml")  # the real CLI, end to end
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[:3] == WORKSPACE_PROBLEMS
    assert "3 problems found" in result.stderr
    assert "modelspec:" not in result.stderr  # not checked as a spec (`missing required key 'modelspec'`)
    repo.write("modelspec.yaml", 'retention:\n  keep_last: 3\n  schedule: "0 3 * * *"\n', dedent=False)
    result = repo.cli("validate", "modelspec.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "modelspec.yaml: ok (workspace file)\n"


def test_every_problem_of_the_workspace_file_is_reported_at_once(repo: Repo) -> None:
    repo.write("modelspec.yaml", BAD_WORKSPACE, dedent=False)
    result = repo.cli("versions", "x")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for problem in WORKSPACE_PROBLEMS:
        assert problem in result.stderr
    assert "`modelspec validate modelspec.yaml` checks it" in result.stderr


def test_the_workspace_file_given_as_a_spec_is_named_as_such(repo: Repo) -> None:
    repo.write("modelspec.yaml", "retention:\n  keep_last: 3\n", dedent=False)
    result = repo.modelspec("plan", "modelspec.yaml")  # the real CLI, end to end
    assert result.returncode == 2, result.stdout + result.stderr
    assert "modelspec.yaml: this is the workspace file, not a spec" in result.stderr
    assert "`modelspec validate modelspec.yaml` checks the workspace file" in result.stderr
