"""SIGKILL during `push` at seeded random instants, against a real S3 server (moto, on
loopback): the next push succeeds and sends what is missing, the remote is consistent
(`verify --remote`: no corrupt object, no action-cache entry naming a missing one), every
active version is whole on the remote, and the workspace itself is consistent. The 150
small files of each build travel in packs, so a kill may fall between a pack and its index."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crash import check, run

TRIALS = 6
SPEC = """\
modelspec: 1
name: wide
version: "1.0"
code: {repo: ..}
config: {dir: conf}
stages:
  make:
    cmd: sh -c 'mkdir ${outputs.tree}; for i in $(seq 150); do echo ${config.make.v} $i > ${outputs.tree}/f$i; done'
    params: [make]
    outputs: {tree: tree}
  pick:
    cmd: sh -c 'cat ${inputs.make.tree}/f1 > ${outputs.model}'
    inputs: [make.tree]
    outputs: {model: model.txt}
artifacts: [pick.model]
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Path:
    from s3server import new_bucket

    root = tmp_path_factory.mktemp("crashpush") / "repo"
    (root / "specs").mkdir(parents=True)
    (root / "conf").mkdir()
    (root / "specs" / "wide.yaml").write_text(SPEC)
    (root / "conf" / "config.yaml").write_text("make: {v: 0}\n")
    (root / "modelspec.yaml").write_text(
        f"remote: {{url: 's3://{new_bucket(s3_endpoint)}/x', endpoint: '{s3_endpoint}'}}\n"
    )
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "wide"]):
        subprocess.run(
            ["git", "-C", str(root), *args], check=True, env={"PATH": "/usr/bin", **env}, capture_output=True
        )
    return root


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3server import s3_environment

    s3_environment(monkeypatch)


def remote_problems(root: Path) -> list[str]:
    from modelspec.build.loading import open_registry
    from modelspec.build.needed import labelled_objects, version_entries
    from modelspec.store.remote_cache import open_remote
    from modelspec.store.workspace import find_workspace
    from modelspec.transfer import verify_remote

    workspace = find_workspace(root)
    problems = []
    report = verify_remote(workspace)
    if not report.ok:
        problems.append(f"verify --remote: {report.to_dict()}")
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    with open_registry(workspace) as registry:
        for version in registry.versions_by_status("active"):
            lacking = remote.store.missing(labelled_objects(workspace.store, version_entries(version)))
            if lacking:
                problems.append(f"{version.ref} is not whole on the remote after a second push: {sorted(lacking)[:3]}")
    return problems


def test_sigkill_during_push_then_push_again_leaves_the_remote_consistent(workspace: Path) -> None:
    rng = random.Random(2000)
    failures = []
    resumed = 0  # trials whose second push had something left to send: the kill landed mid-push
    for i in range(TRIALS):
        built = run(workspace, ["build", "specs/wide.yaml", f"make.v={i}", "--no-push"])
        assert built.returncode == 0, built.stderr
        delay = rng.uniform(0.05, 1.2)
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelspec", "push"],
            cwd=workspace,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = run(workspace, ["push", "--json"])
        problems = [] if again.returncode == 0 else [f"the next push exited {again.returncode}: {again.stderr[-500:]}"]
        if again.returncode == 0:
            report = json.loads(again.stdout)
            partial = 0 < report["transferred"] < report["objects"]
            resumed += partial or (report["transferred"] == 0 and report["action_cache_entries"] > 0)
        problems += check(workspace) + remote_problems(workspace)
        if problems:
            failures.append(f"push killed after {delay:.2f} s: {problems}")
    assert failures == []
    assert resumed >= 1, "no kill landed in the middle of a push: the trials tested nothing"
    assert packs_on_remote(workspace) >= TRIALS, "the pushes sent no packs: the trials did not test them"


def packs_on_remote(root: Path) -> int:
    from modelspec.store.remote_cache import open_remote
    from modelspec.store.remote_packs import list_packs
    from modelspec.store.workspace import find_workspace

    workspace = find_workspace(root)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    return len(list_packs(remote.blobs).indices)
