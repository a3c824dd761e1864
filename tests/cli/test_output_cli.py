"""How text output reads: counts with the right plural, a closed pipe ends it quietly, and
mistaken queries (an unknown metric, a short content-id prefix, an unknown model) say what is known.

One small model with one stage and a one-byte artifact is built once for the module (a real
git repository, a real build).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import GIT_ENV, Repo

ONE = """\
modelspec: 1
name: one
version: "1.0"
code: {repo: ..}
config: {dir: conf}
stages:
  s:
    cmd: sh src/s.sh ${config.v} ${outputs.out} ${outputs.m}
    code: [src/s.sh]
    params: [v]
    outputs: {out: out.txt, m: metrics.json}
    metrics: m
artifacts: [s.out]
"""
S_SH = """\
printf 'x' > "$2"
printf '{"auc": 0.%s, "f1": 0.5}\\n' "$1" > "$3"
"""


def run(repo: Repo, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """The real CLI: a clean exit with `code`, never a traceback."""
    result = repo.modelspec(*args)
    assert result.returncode == code, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MODELSPEC_HOME", raising=False)
        for key, value in GIT_ENV.items():
            mp.setenv(key, value)
        repo = Repo(tmp_path_factory.mktemp("output") / "repo")
        repo.write("specs/one.yaml", ONE, dedent=False)
        repo.write("conf/config.yaml", "v: 7\n")
        repo.write("src/s.sh", S_SH, dedent=False)
        repo.commit("one")
        repo.build_json("specs/one.yaml")
        yield repo


def test_counts_of_one_are_singular(repo: Repo) -> None:
    assert "specs/one.yaml: ok (one, 1 stage)" in run(repo, "validate", "specs/one.yaml").stdout
    assert "0 of 1 stage will run" in run(repo, "plan", "specs/one.yaml").stdout
    assert "1 byte\n" in run(repo, "show", "one@1.0.0").stdout  # the one-byte artifact
    verified = run(repo, "verify", "one@1.0.0").stdout
    assert " objects, " in verified and " bytes checked: ok" in verified
    assert "1 problem found" in run(repo, "plan", "specs/one.yaml", "nosuch=1", code=2).stderr
    dry = run(repo, "gc", "--dry-run").stdout
    assert "would free 0 objects" in dry and "0 environments; 0 action-cache entries" in dry


def test_output_to_a_closed_pipe_ends_quietly_like_git(repo: Repo) -> None:
    """`modelspec audit | head -1`: once the reader has gone, the command exits 141 (what a
    shell reports for git, killed by SIGPIPE) with nothing on stderr."""
    run(repo, "tag", "one@1.0.0", *(f"k{i}=v" for i in range(80)))  # an audit log longer than the pipe
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 4096)  # the writer blocks after 4 KiB, before the end
    with open(read_end, "rb") as reader:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelspec", "audit"], cwd=repo.path, stdout=write_end, stderr=subprocess.PIPE
        )
        os.close(write_end)
        assert reader.readline().strip()  # head -1
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 141, stderr
    assert stderr == b""


@pytest.mark.parametrize("args", [["audit"], ["versions", "one"], ["show", "one@1.0.0"], ["--help"]])
def test_a_pipe_closed_before_the_first_line_is_just_as_quiet(repo: Repo, args: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelspec", *args], cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before modelspec writes anything
    _, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stderr) == (141, b"")


def test_head_in_a_shell_pipeline_leaves_no_noise(repo: Repo) -> None:
    command = f"set -o pipefail; {sys.executable} -m modelspec audit | head -1"
    result = subprocess.run(["bash", "-c", command], cwd=repo.path, capture_output=True, text=True, timeout=60)
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == ""
    assert result.returncode in (0, 141)  # 0 when the whole log fit in the pipe before head left


def test_where_on_an_unknown_metric_is_an_error_naming_the_known_ones(repo: Repo) -> None:
    stderr = run(repo, "versions", "one", "--where", "aux>0.5", code=2).stderr
    assert "error: --where: no version of one has a metric 'aux'; did you mean 'auc'?" in stderr
    assert "hint: the metrics of one: auc, f1" in stderr
    assert "'aux'" in run(repo, "versions", "one", "--where", "auc>0.5, aux<1", "--json", code=2).stdout
    assert run(repo, "versions", "one", "--where", "auc>0.5, f1<1").stdout.count("1.0.0") == 1


@pytest.mark.parametrize("ref", ["one@3f2", "one@abc", "one-3f2", "one@one-3f2"])
def test_a_content_id_prefix_shorter_than_four_digits_says_the_minimum(repo: Repo, ref: str) -> None:
    stderr = run(repo, "show", ref, code=2).stderr
    assert "a content-id prefix has at least 4 hex digits" in stderr


def test_deploy_config_of_an_unknown_model_says_so(repo: Repo) -> None:
    stderr = run(repo, "deploy-config", "nosuch", code=2).stderr
    assert "error: no model named 'nosuch'" in stderr and "registered: one" in stderr
    run(repo, "promote", "one@1.0.0", "production")
    stderr = run(repo, "deploy-config", "one", "prodction", code=2).stderr
    assert "no alias one@prodction; did you mean 'production'?" in stderr
