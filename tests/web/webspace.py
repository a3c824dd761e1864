"""A workspace the web view's tests look at: real builds of model `fraud` (a CSV input, so
each version has a data profile; metrics from its config; quality gates), aliases moved
over time, a tag holding an XSS payload, a pin, and a consumer model built from fraud
(lineage downstream). Built once per test session and shared, read-only, by the tests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import Repo

SPEC = """\
modelspec: 1
name: fraud
version: "1.0"
description: "Card fraud <b>scorer</b>"
code: {repo: ..}
config: {dir: conf}
hermetic: off
data:
  transactions: {path: data/transactions.csv}
stages:
  fit:
    cmd: sh src/fit.sh ${config.auc} ${config.latency} ${inputs.transactions} ${outputs.metrics} ${outputs.model}
    code: [src/fit.sh]
    params: [auc, latency]
    inputs: [transactions]
    outputs: {metrics: metrics.json, model: model.txt}
    metrics: metrics
artifacts: [fit.model, fit.metrics]
gates:
  - {metric: auc, direction: higher, threshold: 0.80}
"""
FIT = """printf '{"auc": %s, "latency_ms": %s}' "$1" "$2" > "$4"\nwc -l < "$3" > "$5"\n"""
CONSUMER = """\
modelspec: 1
name: scorer
version: "1.0"
code: {repo: ..}
hermetic: off
data:
  upstream: {spec: fraud@^1.0, output: model, allow: [unsandboxed]}
stages:
  copy:
    cmd: cp ${inputs.upstream} ${outputs.copy}
    inputs: [upstream]
    outputs: {copy: copy.txt}
artifacts: [copy.copy]
"""
XSS = '<script>alert("tag")</script><img src=x onerror=alert(1)>'


def table(n: int, shift: float, seed: int) -> str:
    rng = random.Random(seed)
    lines = ["id,amount,hour,country"]
    for i in range(n):
        lines.append(
            f"{i},{rng.gauss(50 + 40 * shift, 10):.2f},{rng.randrange(24)},{rng.choice('ab' if shift else 'abc')}"
        )
    return "\n".join(lines) + "\n"


def run(repo: Repo, *args: str, code: int = 0) -> None:
    result = repo.cli(*args)
    assert result.returncode == code, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"


def build(root: Path) -> Path:
    repo = Repo(root)
    repo.write("specs/fraud.yaml", SPEC, dedent=False)
    repo.write("conf/config.yaml", "auc: 0.85\nlatency: 20\n")
    repo.write("src/fit.sh", FIT, dedent=False)
    repo.write("data/transactions.csv", table(400, 0, 1))
    repo.commit("fraud")
    run(repo, "build", "specs/fraud.yaml")  # 1.0.0
    run(repo, "promote", "fraud@1.0.0", "production")
    repo.write("data/transactions.csv", table(400, 1, 2))  # drifted
    repo.commit("new data")
    run(repo, "build", "specs/fraud.yaml", "auc=0.88")  # 1.0.1
    run(repo, "promote", "fraud@1.0.1", "staging")
    run(repo, "build", "specs/fraud.yaml", "auc=0.87", "latency=15")  # 1.0.2
    run(repo, "tag", "fraud@1.0.2", f"note={XSS}", "team=risk")
    run(repo, "pin", "fraud@1.0.2")
    run(repo, "build", "specs/fraud.yaml", "auc=0.7", "--no-gate-exit")  # 1.0.3, rejected
    run(repo, "promote", "fraud@1.0.1", "production")
    repo.write("specs/scorer.yaml", CONSUMER, dedent=False)
    repo.commit("scorer")
    run(repo, "build", "specs/scorer.yaml")  # scorer@1.0.0 from fraud@1.0.2
    return root


_BUILT: dict[str, Path] = {}


def shared_workspace(factory: pytest.TempPathFactory) -> Path:
    """The workspace, built on first use in this session."""
    if "root" not in _BUILT:
        _BUILT["root"] = build(factory.mktemp("web") / "repo")
    return _BUILT["root"]
