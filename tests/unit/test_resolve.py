"""Resolution and keys on real git repositories: the library's plan in-process, the
command line in-process through click's CliRunner for the located errors, and the real CLI
in a subprocess (`modelspec plan --json`) for the baseline every test compares with and a
few end-to-end checks.

The pipeline: prep reads the data `raw`, train reads prep's output, report reads `raw`.
Each stage declares its own code directory and config subtree; `unused` is read by none.

    raw ──▶ prep ──▶ train
     └────▶ report
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Repo

from modelspec.api import plan
from modelspec.cli import main

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
  prep:
    cmd: sh -c "cp ${inputs.raw} ${outputs.out}"
    code: [src/prep]
    inputs: [raw]
    params: [prep]
    outputs: {out: prep.csv}
  train:
    cmd: sh -c "cp ${inputs.prep.out} ${outputs.model}"
    code: [src/train]
    inputs: [prep.out]
    params: [train]
    outputs: {model: model.bin}
  report:
    cmd: sh -c "cp ${inputs.raw} ${outputs.out}"
    code: [src/report]
    inputs: [raw]
    params: [report.fmt]
    outputs: {out: report.txt}
artifacts: [train.model]
"""
CONFIG = """\
prep:
  rows: 10
train:
  lr: 0.1
  epochs: 3
report:
  fmt: txt
  title: Report
unused:
  x: 1
"""
FILES = {
    "specs/x.yaml": SPEC,
    "conf/config.yaml": CONFIG,
    "data/raw.csv": "a,b\n1,2\n",
    "src/prep/prep.py": "PREP = 1\n",
    "src/train/train.py": "TRAIN = 1\n",
    "src/report/report.py": "REPORT = 1\n",
    "src/common/util.py": "UTIL = 1\n",
    "README.md": "a pipeline\n",
}
ALL = {"prep", "train", "report"}


def make_repo(path: Path) -> Repo:
    repo = Repo(path)
    for name, text in FILES.items():
        repo.write(name, text, dedent=False)
    repo.commit("pipeline")
    return repo


def cli_plan_keys(repo: Repo, *args: str) -> dict[str, str]:
    """The keys as the real CLI prints them (a subprocess)."""
    result = repo.modelspec("plan", "specs/x.yaml", *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = json.loads(result.stdout)["nodes"]
    return {row["node"].removeprefix("x:"): row["key"] for row in nodes}


def plan_keys(repo: Repo, *overrides: str, allow_dirty: bool = False) -> dict[str, str]:
    """The keys of the library's plan, run in-process from the repository root."""
    with contextlib.chdir(repo.path):
        _graph, planned = plan([Path("specs/x.yaml")], overrides, allow_dirty=allow_dirty)
    return {item.node.removeprefix("x:"): item.key for item in planned}


def plan_error(repo: Repo, *args: str, real: bool = False) -> str:
    """stderr of a `modelspec plan` that must fail as bad input: exit 2, no traceback. In-process
    through CliRunner, or with `real` the CLI in a subprocess."""
    if real:
        result = repo.modelspec("plan", "specs/x.yaml", *args)
        code, stderr = result.returncode, result.stderr
    else:
        with contextlib.chdir(repo.path):
            invoked = CliRunner().invoke(main, ["plan", "specs/x.yaml", *args])
        code, stderr = invoked.exit_code, invoked.stderr
        assert invoked.exception is None or isinstance(invoked.exception, SystemExit), invoked.exception
    assert code == 2, stderr
    assert "Traceback" not in stderr
    return str(stderr)


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert set(before) == set(after) == ALL
    return {stage for stage in before if before[stage] != after[stage]}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Keys of the unchanged pipeline. Keys hold no commit id or host path, so a fresh
    repository with the same content must produce exactly these keys."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELSPEC_HOME", raising=False)
        return cli_plan_keys(make_repo(tmp_path_factory.mktemp("baseline") / "repo"))


@pytest.fixture
def pipeline(repo: Repo) -> Repo:
    for name, text in FILES.items():
        repo.write(name, text, dedent=False)
    repo.commit("pipeline")
    return repo


def test_same_content_in_another_checkout_has_the_same_keys(pipeline: Repo,
                                                             baseline: dict[str, str]) -> None:
    assert len(set(baseline.values())) == 3
    pipeline.write("README.md", "later\n")
    pipeline.commit("a later commit, elsewhere")
    assert plan_keys(pipeline) == baseline


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lr=0.05", {"train"}),
        ("prep.rows=20", {"prep", "train"}),          # prep changes, and train through its input
        ("report.title=Other", set()),                # report declares report.fmt only
        ("unused.x=2", set()),                        # no stage reads it
        ("+extra=1", set()),
    ],
)
def test_a_config_override_changes_exactly_its_readers_and_their_dependents(
        pipeline: Repo, baseline: dict[str, str], override: str, expected: set[str]) -> None:
    assert changed(baseline, plan_keys(pipeline, override)) == expected


def test_a_committed_config_edit_changes_its_readers(pipeline: Repo,
                                                     baseline: dict[str, str]) -> None:
    pipeline.write("conf/config.yaml", CONFIG.replace("epochs: 3", "epochs: 4"), dedent=False)
    pipeline.commit("more epochs")
    assert changed(baseline, plan_keys(pipeline)) == {"train"}


def test_committed_files_outside_every_code_path_change_no_key(
        pipeline: Repo, baseline: dict[str, str]) -> None:
    pipeline.write("README.md", "rewritten\n")
    pipeline.write("src/common/util.py", "UTIL = 2\n")
    pipeline.write("src/new_module.py", "NEW = 1\n")
    pipeline.write("src/prep_extra/x.py", "shares a prefix with src/prep\n")
    pipeline.commit("unrelated")
    assert plan_keys(pipeline) == baseline


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("src/train/train.py", {"train"}),
        ("src/prep/prep.py", {"prep", "train"}),
        ("src/prep/new_helper.py", {"prep", "train"}),
    ],
)
def test_a_committed_change_in_a_code_path_changes_that_stage_and_its_dependents(
        pipeline: Repo, baseline: dict[str, str], path: str, expected: set[str]) -> None:
    pipeline.write(path, "CHANGED = True\n")
    pipeline.commit("code change")
    assert changed(baseline, plan_keys(pipeline)) == expected


def test_an_exec_bit_is_part_of_the_code(pipeline: Repo, baseline: dict[str, str]) -> None:
    (pipeline.path / "src/report/report.py").chmod(0o755)
    pipeline.commit("executable")
    assert changed(baseline, plan_keys(pipeline)) == {"report"}


def test_changed_data_changes_its_readers(pipeline: Repo, baseline: dict[str, str]) -> None:
    pipeline.write("data/raw.csv", "a,b\n1,3\n")
    assert changed(baseline, plan_keys(pipeline)) == ALL


@pytest.mark.parametrize("kind", ["modified", "untracked", "staged"])
def test_uncommitted_code_is_an_error_naming_the_file(pipeline: Repo, kind: str) -> None:
    target = "src/train/new.py" if kind != "modified" else "src/train/train.py"
    pipeline.write(target, "UNCOMMITTED = 1\n")
    if kind == "staged":
        pipeline.git("add", target)
    pipeline.write("README.md", "dirty outside the code paths\n")
    stderr = plan_error(pipeline)
    assert target in stderr
    assert "README.md" not in stderr
    assert "--allow-dirty" in stderr


def test_allow_dirty_keys_the_working_files(pipeline: Repo, baseline: dict[str, str]) -> None:
    pipeline.write("src/train/train.py", "UNCOMMITTED = 1\n")
    assert changed(baseline, plan_keys(pipeline, allow_dirty=True)) == {"train"}


def test_allow_dirty_with_committed_content_has_the_committed_keys(
        pipeline: Repo, baseline: dict[str, str]) -> None:
    assert cli_plan_keys(pipeline, "--allow-dirty") == baseline  # the real CLI, end to end


def test_dirt_outside_the_code_paths_is_no_error(pipeline: Repo,
                                                 baseline: dict[str, str]) -> None:
    pipeline.write("README.md", "edited\n")
    pipeline.write("notes/todo.txt", "untracked\n")
    assert plan_keys(pipeline) == baseline


def spec_position(text: str, marker: str) -> tuple[int, int]:
    """1-based line and column of `marker` in `text`."""
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return number, line.index(marker) + 1
    raise AssertionError(marker)


def test_params_naming_a_missing_config_key_is_located(pipeline: Repo) -> None:
    spec = SPEC.replace("params: [train]", "params: [train, trian.lr]")
    pipeline.write("specs/x.yaml", spec, dedent=False)
    line, column = spec_position(spec, "trian.lr")
    stderr = plan_error(pipeline)
    assert (f"specs/x.yaml:{line}:{column}: stages.train.params[1]: "
            "config key 'trian.lr' does not exist") in stderr


def test_a_missing_data_file_is_located(pipeline: Repo) -> None:
    (pipeline.path / "data/raw.csv").unlink()
    line, column = spec_position(SPEC, "data/raw.csv")
    stderr = plan_error(pipeline, real=True)  # the real CLI, end to end
    assert f"specs/x.yaml:{line}:{column}: data.raw.path: data/raw.csv does not exist" in stderr


def test_a_data_symlink_out_of_the_repository_is_an_error(pipeline: Repo,
                                                          tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("a,b\n1,2\n")
    (pipeline.path / "data/raw.csv").unlink()
    os.symlink(outside, pipeline.path / "data/raw.csv")
    stderr = plan_error(pipeline)
    assert "data.raw.path: data/raw.csv leads out of the repository" in stderr


@pytest.mark.parametrize("value", ["${now:%Y-%m-%d}", "${oc.env:HOME}"])
def test_a_non_deterministic_resolver_in_the_config_is_an_error(pipeline: Repo,
                                                                value: str) -> None:
    pipeline.write("conf/config.yaml", CONFIG.replace("rows: 10", f"rows: '{value}'"),
                   dedent=False)
    pipeline.commit("resolver")
    stderr = plan_error(pipeline)
    assert "is not deterministic" in stderr
    assert "prep.rows" in stderr


def test_a_non_deterministic_override_is_an_error(pipeline: Repo) -> None:
    stderr = plan_error(pipeline, "train.lr=${now:%S}")
    assert "resolver 'now'" in stderr


def test_plan_json_shape(pipeline: Repo) -> None:
    result = pipeline.modelspec("plan", "specs/x.yaml", "--json")
    nodes: list[dict[str, Any]] = json.loads(result.stdout)["nodes"]
    order = [row["node"] for row in nodes]
    assert order.index("x:prep") < order.index("x:train")
    assert all(row["status"] == "will run" and row["reasons"] == ["never built"]
               for row in nodes)
