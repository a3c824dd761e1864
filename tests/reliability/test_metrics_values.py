"""A metrics file holding NaN, Infinity or an integer beyond every float (all valid to Python's
json module) is a located stage failure, never a traceback and never a registered version."""

from __future__ import annotations

import pytest
from conftest import Repo

SPEC = """\
modelspec: 1
name: m
version: "1.0"
code: {repo: ..}
hermetic: off
stages:
  score:
    cmd: [python3, -c, "open('${outputs.metrics}', 'w').write('{\\"auc\\": 0.5, \\"loss\\": VALUE}')"]
    outputs: {metrics: metrics.json}
    metrics: metrics
artifacts: [score.metrics]
"""


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1" + "0" * 400])
def test_a_metric_that_is_not_a_finite_number_fails_the_stage(repo: Repo, value: str) -> None:
    repo.write("specs/m.yaml", SPEC.replace("VALUE", value))
    repo.commit()
    result = repo.modelspec("build", "specs/m.yaml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "metrics must be finite numbers" in result.stdout + result.stderr
    assert "loss=" in result.stdout + result.stderr
    versions = repo.modelspec("versions", "m", "--json")
    assert "Traceback" not in versions.stderr
    assert versions.returncode == 2 or "1.0.0" not in versions.stdout
