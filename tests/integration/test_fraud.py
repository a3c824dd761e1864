"""The fraud example end to end through the CLI: real uv environment, real scikit-learn,
real bubblewrap (hermetic: strict), in a copy of the example in a fresh git repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import Repo, states

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fraud(repo: Repo) -> Repo:
    shutil.copytree(
        ROOT / "examples" / "fraud", repo.path / "examples" / "fraud", ignore=shutil.ignore_patterns("__pycache__")
    )
    (repo.path / "specs").mkdir()
    shutil.copy(ROOT / "specs" / "fraud.yaml", repo.path / "specs" / "fraud.yaml")
    repo.commit("fraud example")
    return repo


def test_fraud_builds_then_is_a_no_op_then_rebuilds_only_what_an_override_touches(fraud: Repo) -> None:
    first = fraud.modelspec("build", "specs/fraud.yaml", check=True, timeout=900)
    assert "fraud metrics:" in first.stdout and "auc=" in first.stdout
    report = fraud.build_json("specs/fraud.yaml")
    assert set(states(report).values()) == {"cached"}
    metrics = report["specs"]["fraud"]["metrics"]
    assert 0.5 < metrics["auc"] <= 1.0
    assert all(row["hermetic"] for row in report["nodes"])
    assert "gates of fraud@1.0.0: passed" in first.stdout  # the example's gates (auc ≥ 0.70, no production yet)
    gates = report["versions"]["fraud"]["gates"]
    assert gates["verdict"] == "passed" and gates["results"][-1]["gate"]["kind"] == "drift"
    shown = json.loads(fraud.modelspec("show", "fraud@1.0.0", "--json", check=True).stdout)
    assert set(shown["profiles"]) == {"transactions"}  # the data profile the drift gate compares

    seeded = fraud.build_json("specs/fraud.yaml", "train.seed=7")
    assert states(seeded) == {"fraud:featurize": "cached", "fraud:train": "ran", "fraud:evaluate": "ran"}
    gbt = fraud.build_json("specs/fraud.yaml", "model=gbt")
    assert states(gbt)["fraud:featurize"] == "cached" and states(gbt)["fraud:train"] == "ran"
    assert gbt["specs"]["fraud"]["metrics"] != metrics

    # The first version reproduces bit for bit, from the store, after two more builds.
    assert report["versions"]["fraud"]["ref"] == "fraud@1.0.0"
    reproduced = json.loads(fraud.modelspec("reproduce", "fraud@1.0.0", "--json", check=True, timeout=900).stdout)
    assert reproduced["verdict"] == "identical" and reproduced["differing"] == []

    # The same data in every build: no drift between versions, nor against the example's file.
    fraud.modelspec("promote", "fraud@1.0.0", "production", check=True)
    drift = json.loads(fraud.modelspec("drift", "fraud@latest", "--json", check=True).stdout)
    assert drift["dataset_drift"] is False and drift["inputs"][0]["drifted_columns"] == 0
    data = "examples/fraud/data/transactions.csv"
    fraud.modelspec("drift", "fraud@production", "--data", data, "--ignore", "transaction_id", check=True)

    fraud.modelspec("checkout", "specs/fraud.yaml", "--out", "out", check=True)  # the last build: gbt
    written = json.loads((fraud.path / "out" / "evaluate" / "metrics.json").read_text())
    assert written == {k: pytest.approx(v) for k, v in gbt["specs"]["fraud"]["metrics"].items()}
