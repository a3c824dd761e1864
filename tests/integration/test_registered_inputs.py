"""Data from registered versions: `{spec: baseline@^2.0, output: model}` resolves to the
newest active version in the range, pinned in the lock, with lineage both ways."""

from __future__ import annotations

import json

from conftest import Repo, states

from modelspec.build.loading import lock_bytes
from modelspec.spec.lockdata import RegisteredData
from modelspec.spec.model import Lock

BASELINE = """\
modelspec: 1
name: baseline
version: "2.0"
code: {repo: ..}
config: {dir: conf/baseline}
stages:
  train:
    cmd: sh -c 'echo baseline-${config.train.v} > ${outputs.model}'
    params: [train]
    outputs: {model: baseline.bin}
artifacts: [train.model]
"""
CONSUMER = """\
modelspec: 1
name: consumer
version: "1.0"
code: {repo: ..}
data:
  reference: {spec: "baseline@RANGE", output: model}
stages:
  compare:
    cmd: sh -c 'cat ${inputs.reference} > ${outputs.report}; echo read ${inputs.reference} >> ${outputs.report}'
    inputs: [reference]
    outputs: {report: report.txt}
artifacts: [compare.report]
"""


def make(repo: Repo, version_range: str = "^2.0") -> None:
    repo.write("specs/baseline.yaml", BASELINE, dedent=False)
    repo.write("specs/consumer.yaml", CONSUMER.replace("RANGE", version_range), dedent=False)
    repo.write("conf/baseline/config.yaml", "train: {v: 1}\n")
    repo.commit("specs")


def report_of(repo: Repo) -> str:
    repo.modelspec("checkout", "specs/consumer.yaml", "--out", "out", check=True)
    return (repo.path / "out/compare/report.txt").read_text()


def test_a_registered_version_is_an_input_pinned_in_the_lock(repo: Repo) -> None:
    make(repo)
    repo.build_json("specs/baseline.yaml")
    first = repo.build_json("specs/consumer.yaml")
    assert first["versions"]["consumer"]["ref"] == "consumer@1.0.0"
    assert report_of(repo) == "baseline-1\nread /ms/in/reference/baseline.bin\n"
    lock = json.loads((repo.path / "specs/consumer.lock").read_text())
    assert lock["data"]["reference"]["registered"] == "baseline@2.0.0"
    assert lock["data"]["reference"]["output"] == "train.model"
    # The typed lock reads and writes the very bytes of the file (its digest does not change).
    lock_file = (repo.path / "specs/consumer.lock").read_bytes()
    assert isinstance(Lock.from_dict(lock).data["reference"], RegisteredData)
    assert lock_bytes(Lock.from_dict(lock)) == lock_file

    up = json.loads(repo.modelspec("lineage", "consumer@1.0.0", "--json", check=True).stdout)["upstream"]
    assert [(item["kind"], item.get("version")) for item in up] == [("version", "baseline@2.0.0")]
    down = json.loads(repo.modelspec("lineage", "baseline@2.0.0", "--json", check=True).stdout)["downstream"]
    assert down == ["consumer@1.0.0"]

    # A newer baseline in the range: the consumer picks it up, as new content.
    repo.build_json("specs/baseline.yaml", "train.v=2")
    second = repo.build_json("specs/consumer.yaml")
    assert states(second) == {"consumer:compare": "ran"} and second["versions"]["consumer"]["ref"] == "consumer@1.0.1"
    assert report_of(repo).startswith("baseline-2\n")
    assert json.loads(repo.modelspec("reproduce", "consumer@1.0.0", "--json", check=True).stdout)["verdict"] == (
        "identical"
    )


def test_no_version_in_the_range_is_a_located_error(repo: Repo) -> None:
    make(repo, version_range="^3.0")
    repo.build_json("specs/baseline.yaml")
    result = repo.modelspec("build", "specs/consumer.yaml")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "specs/consumer.yaml:6:" in result.stderr and "no active version of baseline matches '^3.0'" in result.stderr
