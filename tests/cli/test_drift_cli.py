"""Data drift end to end, with real builds of a model whose input is a CSV: each version
records its data profile, `drift` compares a version with production (or a named version)
and a new file with a version's training data, exits 1 on a dataset drift, writes a plot,
and still answers once gc has retired a version and swept its data."""

from __future__ import annotations

import json
import random
import subprocess
from typing import Any
from xml.etree import ElementTree

from conftest import Repo

SPEC = """\
modelspec: 1
name: d
version: "1.0"
code: {repo: ..}
hermetic: off
data:
  table: {path: data/t.csv}
stages:
  fit:
    cmd: [sh, -c, 'wc -l < "$0" > "$1"', "${inputs.table}", "${outputs.model}"]
    inputs: [table]
    outputs: {model: model.txt}
artifacts: [fit.model]
retention: {keep_last: 1, keep_aliased: false}
"""


def table(n: int, shift: float, seed: int) -> str:
    rng = random.Random(seed)
    lines = ["id,x,y,c"]
    for i in range(n):
        x = "" if i % 25 == 0 else f"{rng.gauss(shift, 1):.4f}"
        c = rng.choices("abc", [5, 3, 2 + 20 * shift])[0]
        lines.append(f"{i},{x},{rng.random():.4f},{c}")
    return "\n".join(lines) + "\n"


def run(repo: Repo, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = repo.cli(*args)
    assert result.returncode == code, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


def as_json(repo: Repo, *args: str, code: int = 0) -> Any:
    return json.loads(run(repo, *args, "--json", code=code).stdout)


def test_drift_between_versions_and_against_a_new_file(repo: Repo) -> None:
    repo.write("specs/d.yaml", SPEC, dedent=False)
    repo.write("modelspec.yaml", "retention: {grace: 0s}\n")
    repo.write("data/t.csv", table(800, 0, 1))
    repo.commit("d")
    first = repo.modelspec("build", "specs/d.yaml")  # the real CLI, once
    assert first.returncode == 0, first.stderr
    assert "has no production alias" in run(repo, "drift", "d@1.0.0", code=2).stderr
    run(repo, "promote", "d@1.0.0", "production")
    repo.write("data/t.csv", table(800, 0.5, 2))
    run(repo, "build", "specs/d.yaml")
    repo.write("data/t.csv", table(800, 0, 3))  # a resample of the first
    run(repo, "build", "specs/d.yaml")

    shifted = run(repo, "drift", "d@1.0.1", code=1)  # against production (1.0.0)
    lines = shifted.stdout.splitlines()
    assert lines[0] == "d@1.0.1 vs d@1.0.0, input table: 2 of 4 columns drifted (50%): DATASET DRIFT (at 50%)"
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["x"][1:3] == ["numeric", "ks"] and rows["x"][6] == "DRIFT"
    assert rows["c"][1:3] == ["categorical", "chi2"] and rows["c"][6] == "DRIFT"
    assert rows["y"][6] == "no" and rows["x"][7:] == ["4%", "→", "4%"]
    found = as_json(repo, "drift", "d@1.0.2", "d@1.0.0", "--ignore", "id")
    report = found["inputs"][0]
    assert not found["dataset_drift"] and report["drifted_columns"] == 0 and report["compared_columns"] == 3
    assert (report["reference"], report["current"], report["ignored"]) == ("d@1.0.0", "d@1.0.2", ["id"])

    # gc retires what retention lets go (keep_last: 1; production stays) and sweeps its data:
    # the profiles stay, and so does drift.
    run(repo, "gc")
    assert [v["status"] for v in as_json(repo, "versions", "d")] == ["active", "retired", "active"]
    data = as_json(repo, "show", "d@1.0.1")["data"]["table"]["digest"].removeprefix("blake3:")
    kept = as_json(repo, "show", "d@1.0.2")["data"]["table"]["digest"].removeprefix("blake3:")
    objects = repo.path / ".modelspec" / "objects"
    assert (objects / kept[:2] / kept).exists() and not (objects / data[:2] / data).exists()  # its data is gone
    assert as_json(repo, "drift", "d@1.0.1", code=1)["inputs"][0]["drifted_columns"] == 2

    # The monitoring hook: a new file against a version's training data.
    repo.write("traffic/today.csv", table(500, 0, 4))
    today = run(repo, "drift", "d@1.0.0", "--data", "traffic/today.csv", "--ignore", "id")
    assert today.stdout.startswith("traffic/today.csv vs d@1.0.0 (table), input table: 0 of 3 columns drifted")
    repo.write("traffic/bad.csv", table(500, 0.8, 5))
    plot = repo.path / "drift.svg"
    bad = as_json(repo, "drift", "d@1.0.0", "--data", "traffic/bad.csv", "--plot", str(plot), code=1)
    assert bad["dataset_drift"] and bad["plot"] == str(plot)
    titles = [t.text for t in ElementTree.parse(plot).getroot().iter("{http://www.w3.org/2000/svg}text")]
    assert "table.x" in titles and "table.c" in titles and "d@1.0.0 (table)" in titles

    assert "no such file" in run(repo, "drift", "d@1.0.0", "--data", "traffic/none.csv", code=2).stderr
    assert "not both" in run(repo, "drift", "d@1.0.0", "d@1.0.1", "--data", "traffic/bad.csv", code=2).stderr
    repo.write("traffic/x.json", "{}")
    assert "as CSV (.csv) or Parquet" in run(repo, "drift", "d@1.0.0", "--data", "traffic/x.json", code=2).stderr
    other = run(repo, "drift", "d@1.0.0", "d@1.0.1", "--input", "other", code=2)
    assert "have no input 'other' in common" in other.stderr


def test_a_drift_gate_rejects_a_version_whose_data_drifted(repo: Repo) -> None:
    repo.write("specs/d.yaml", SPEC + "drift: {vs: production, ignore: [id]}\n", dedent=False)
    repo.write("data/t.csv", table(800, 0, 1))
    repo.commit("d")
    first = as_json(repo, "build", "specs/d.yaml")["versions"]["d"]["gates"]
    assert first["verdict"] == "passed"
    assert first["results"][0]["why"] == "no baseline: no version is production"
    assert first["results"][0]["gate"] == {"metric": "data", "direction": "lower", "threshold": 0.5,
                                           "vs": "production", "kind": "drift", "ignore": ["id"]}  # fmt: skip
    run(repo, "promote", "d@1.0.0", "production")
    repo.write("data/t.csv", table(800, 0.5, 2))
    drifted = run(repo, "build", "specs/d.yaml", code=1)
    assert "FAILED  no data drift vs production (dataset drift at 50% of the columns): table: 2 of 3 columns " in (
        drifted.stdout
    )
    assert "drifted (67%): x, c vs d@1.0.0" in drifted.stdout
    assert as_json(repo, "versions", "d")[1]["status"] == "rejected"
    repo.write("data/t.csv", table(800, 0, 3))
    assert as_json(repo, "build", "specs/d.yaml")["versions"]["d"]["gates"]["verdict"] == "passed"
    # `gate` judges the drift again, from the profiles, against today's production.
    run(repo, "promote", "d@1.0.1", "production", "--force", "--reason", "the new data is the real data")
    assert as_json(repo, "gate", "d@1.0.2", code=1)["results"][0]["baseline_version"] == "d@1.0.1"
