"""Integer metrics stay integers: a metrics file with {"epochs": 12, "auc": 0.91} shows
`epochs 12`, not 12.0, in build, show, versions, diff and every --json; `--where` compares
them as numbers; true/false are not metrics; an integer past 2**53 is a float.

Two real builds of one small model, made once for the module:

    m@1.0.0  epochs 12, auc 0.91      m@1.0.1  epochs 8, auc 0.92
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import GIT_ENV, Repo

SPEC = """\
modelspec: 1
name: m
version: "1.0"
code: {repo: ..}
config: {dir: conf}
stages:
  fit:
    cmd: sh src/fit.sh ${config.epochs} ${config.tail} ${outputs.metrics}
    code: [src/fit.sh]
    params: [epochs, tail]
    outputs: {metrics: metrics.json}
    metrics: metrics
artifacts: [fit.metrics]
"""
FIT = """\
printf '{"epochs": %s, "auc": 0.9%s, "converged": true, "run": {"steps": 300}, "tokens": 1152921504606846976}' \\
  "$1" "$2" > "$3"
"""


class Model:
    def __init__(self, repo: Repo, builds: list[str]) -> None:
        self.repo = repo
        self.builds = builds  # the text output of each build

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        """In-process (click's CliRunner): exit `code`, never a traceback."""
        result = self.repo.cli(*args)
        assert result.returncode == code, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stdout + result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MODELSPEC_HOME", raising=False)
        for key, value in GIT_ENV.items():
            mp.setenv(key, value)
        repo = Repo(tmp_path_factory.mktemp("metrics") / "repo")
        repo.write("specs/m.yaml", SPEC, dedent=False)
        repo.write("conf/config.yaml", "epochs: 12\ntail: 1\n")
        repo.write("src/fit.sh", FIT, dedent=False)
        repo.commit("m")
        builds = []
        for run, overrides in ((repo.modelspec, ["epochs=12", "tail=1"]), (repo.cli, ["epochs=8", "tail=2"])):
            result = run("build", "specs/m.yaml", *overrides, check=True)  # the first through the real CLI
            builds.append(result.stdout + result.stderr)
        yield Model(repo, builds)


EXPECTED = {"epochs": 12, "auc": 0.91, "run.steps": 300, "tokens": 1.152921504606847e18}


def test_show_and_its_json_keep_integers(model: Model) -> None:
    metrics = model.json("show", "m@1.0.0")["metrics"]
    assert metrics == EXPECTED  # `converged: true` is not a metric
    assert [type(metrics[k]) for k in ("epochs", "run.steps", "auc", "tokens")] == [int, int, float, float]
    text = model.run("show", "m@1.0.0").stdout
    assert "    epochs = 12\n" in text and "    run.steps = 300\n" in text and "    auc = 0.91\n" in text
    assert "12.0" not in text
    assert "m metrics: auc=0.91  epochs=12  run.steps=300  tokens=1.15292e+18" in model.builds[0]


def test_versions_keeps_integers_and_where_compares_them(model: Model) -> None:
    rows = model.json("versions", "m")
    assert [r["metrics"] for r in rows] == [EXPECTED, {**EXPECTED, "epochs": 8, "auc": 0.92}]
    assert type(rows[0]["metrics"]["epochs"]) is int
    table = model.run("versions", "m").stdout.splitlines()
    assert table[0].split()[5:9] == ["auc", "epochs", "run.steps", "tokens"]
    assert table[1].split()[4:8] == ["0.91", "12", "300", "1.153e+18"]
    assert [r["version"] for r in model.json("versions", "m", "--where", "epochs>=10")] == ["1.0.0"]
    assert [r["version"] for r in model.json("versions", "m", "--where", "epochs<12, run.steps==300")] == ["1.0.1"]


def test_diff_keeps_integers(model: Model) -> None:
    metrics = model.json("diff", "m@1.0.0", "m@1.0.1")["metrics"]
    assert metrics["epochs"] == {"from": 12, "to": 8, "delta": -4}
    assert type(metrics["epochs"]["delta"]) is int
    assert metrics["run.steps"] == {"from": 300, "to": 300, "delta": 0}
    text = model.run("diff", "m@1.0.0", "m@1.0.1").stdout
    assert "  epochs: 12 → 8 (-4)\n" in text and "  run.steps: 300 → 300 (+0)\n" in text
    assert "  auc: 0.91 → 0.92 (+0.01)\n" in text


def test_export_and_verify_keep_integers(model: Model, tmp_path_factory: pytest.TempPathFactory) -> None:
    target = tmp_path_factory.mktemp("export") / "out"
    model.run("export", "m@1.0.0", str(target))
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["metrics"] == EXPECTED and type(manifest["metrics"]["epochs"]) is int
    # The registry's rows still agree with the metrics objects in the store.
    model.run("verify", "--all")
    assert model.run("audit", "--verify").stdout.strip().endswith("audit log intact")
