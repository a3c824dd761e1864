"""Two workspaces, one remote: what one built, the other downloads instead of running.

Two clones of one repository in two directories stand for two machines (two stores, two
action caches, two registries); the remote is a real S3 server (moto, on loopback) or a
shared directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import GIT_ENV, Repo, states
from pipeline import expected_d, make_pipeline

from modelspec.digest import digest_bytes
from modelspec.store.objects import LocalStore
from modelspec.store.remote_objects import OBJECTS
from modelspec.store.workspace import find_workspace


def remote_setting(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "s3":
        endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        return f"remote: {{url: 's3://{bucket}/team', endpoint: '{endpoint}'}}\n"
    return f"remote: '{(tmp_path / 'shared').as_uri()}'\n"


def two_workspaces(tmp_path: Path, setting: str) -> tuple[Repo, Repo, str]:
    first = Repo(tmp_path / "a")
    first.write("modelspec.yaml", setting)
    spec = make_pipeline(first)
    subprocess.run(
        ["git", "clone", "-q", str(first.path), str(tmp_path / "b")], check=True, env={**GIT_ENV, "PATH": "/usr/bin"}
    )
    second = Repo.__new__(Repo)
    second.path = tmp_path / "b"
    return first, second, spec


def checkout_d(repo: Repo, spec: str) -> str:
    repo.cli("checkout", spec, "--out", "out", check=True)
    return (repo.path / "out" / "d" / "d.txt").read_text()


@pytest.mark.parametrize("kind", ["s3", "file"])
def test_a_second_workspace_downloads_what_the_first_built(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first, second, spec = two_workspaces(tmp_path, remote_setting(kind, tmp_path, request))
    built = first.build_json(spec)
    assert set(states(built).values()) == {"ran"}

    text = second.cli("build", spec, "--no-push", "--json", "-j", "1")
    report = json.loads(text.stdout)
    assert set(states(report).values()) == {"cached"}, report  # zero stages ran in B
    assert {row["reason"] for row in report["nodes"]} == {"from the remote cache"}
    assert checkout_d(second, spec) == expected_d("first\nmiddle\nlast\n")
    verified = second.cli("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["ok"]
    # The same inputs are the same version in both workspaces' registries.
    assert report["specs"]["pipe"]["artifacts"] == built["specs"]["pipe"]["artifacts"]
    # ...and B can rebuild it from what it recorded, bit for bit, though nothing ran there.
    reproduced = second.cli("reproduce", report["versions"]["pipe"]["ref"], "--json")
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    assert json.loads(reproduced.stdout)["verdict"] == "identical"

    again = second.cli("build", spec, "--no-push")  # text: the summary says where the hits came from
    assert "4 cached" in again.stdout and "from the remote" not in again.stdout  # now local hits
    # A change in B runs only the stages it affects there.
    changed = states(second.build_json(spec, "a.v=2"))
    assert changed == {"pipe:a": "ran", "pipe:b": "ran", "pipe:c": "cached", "pipe:d": "ran"}
    # ...and A, asking for the same change, now downloads B's results.
    assert set(states(first.build_json(spec, "a.v=2")).values()) == {"cached"}


def test_an_entry_whose_objects_are_gone_is_a_miss(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    first, second, spec = two_workspaces(tmp_path, remote_setting("file", tmp_path, request))
    built = first.build_json(spec)
    # The remote lost stage d's output (a gc, a disk): its entry must not be trusted.
    d_output = built["specs"]["pipe"]["artifacts"]["d.out"]["digest"]
    lost = tmp_path / "shared" / OBJECTS / d_output[7:9] / d_output[7:]
    assert lost.exists()
    lost.unlink()
    report = second.build_json(spec)
    assert states(report) == {"pipe:a": "cached", "pipe:b": "cached", "pipe:c": "cached", "pipe:d": "ran"}
    assert checkout_d(second, spec) == expected_d("first\nmiddle\nlast\n")
    assert lost.exists()  # B uploaded it again


def test_no_remote_and_no_push(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    first, second, spec = two_workspaces(tmp_path, remote_setting("file", tmp_path, request))
    first.build_json(spec, "--no-push")
    assert not (tmp_path / "shared" / "ac").exists()
    first.build_json(spec, "--force")  # a forced build uploads what it ran
    assert set(states(second.build_json(spec, "--no-remote")).values()) == {"ran"}


def test_a_remote_that_is_down_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "a")
    repo.write("modelspec.yaml", "remote: {url: 's3://nowhere/x', endpoint: 'http://127.0.0.1:9'}\n")
    spec = make_pipeline(repo)
    result = repo.modelspec(
        "build", spec, env={"MODELSPEC_REMOTE_RETRIES": "0", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "remote" in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_a_bad_remote_url_is_a_located_error(repo: Repo) -> None:
    repo.write("modelspec.yaml", "remote: 'ftp://host/x'\n")
    spec = make_pipeline(repo)
    result = repo.modelspec("build", spec)
    assert result.returncode == 2
    assert "modelspec.yaml:1" in result.stdout + result.stderr and "Traceback" not in result.stderr
    shutil.rmtree(repo.path / ".modelspec", ignore_errors=True)


def test_the_summary_says_how_many_hits_came_from_the_remote(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    first, second, spec = two_workspaces(tmp_path, remote_setting("file", tmp_path, request))
    first.cli("build", spec, check=True)
    text = second.cli("build", spec, check=True).stdout
    assert "ok: 4 cached (4 from the remote)" in text
    assert "registered pipe@1.0.0" in text


def local_store(repo: Repo) -> LocalStore:
    return find_workspace(repo.path).store


def test_a_remote_hit_downloads_only_the_artifacts(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    first, second, spec = two_workspaces(tmp_path, remote_setting("file", tmp_path, request))
    built = first.build_json(spec)
    outputs = {node["node"]: node for node in built["nodes"]}
    artifact = built["specs"]["pipe"]["artifacts"]["d.out"]["digest"]
    intermediates = {
        name: first_record_output(first, name) for name in ("pipe:a", "pipe:b", "pipe:c") if name in outputs
    }
    assert len(intermediates) == 3

    report = second.build_json(spec, "--no-push")
    assert set(states(report).values()) == {"cached"}
    store = local_store(second)
    assert store.has(artifact)  # the version's artifact is here...
    assert not any(store.has(d) for d in intermediates.values())  # ...the intermediates stayed on the remote
    verified = json.loads(second.cli("verify", "--json").stdout)
    assert verified["ok"] and verified["on_remote_only"] >= 3, verified
    # A no-op build now is local: the remote is not asked again.
    assert {row["reason"] for row in second.build_json(spec, "--no-push")["nodes"]} == {""}
    # A stage that must run fetches the inputs it reads (d reads c's output), nothing else.
    changed = states(second.build_json(spec, "a.v=2", "--no-push"))
    assert changed == {"pipe:a": "ran", "pipe:b": "ran", "pipe:c": "cached", "pipe:d": "ran"}
    assert store.has(intermediates["pipe:c"]) and not store.has(intermediates["pipe:b"])
    assert checkout_d(second, spec) == expected_d("first\nmiddle\nlast\n", a=2)


def test_no_download_leaves_the_artifacts_on_the_remote(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    first, second, spec = two_workspaces(tmp_path, remote_setting("file", tmp_path, request))
    artifact = first.build_json(spec)["specs"]["pipe"]["artifacts"]["d.out"]["digest"]
    report = second.build_json(spec, "--no-push", "--no-download")
    assert set(states(report).values()) == {"cached"}
    assert not local_store(second).has(artifact)
    assert json.loads(second.cli("verify", "--json").stdout)["ok"]
    second.cli("fetch", report["versions"]["pipe"]["ref"], check=True)
    assert local_store(second).has(artifact)
    assert checkout_d(second, spec) == expected_d("first\nmiddle\nlast\n")


def first_record_output(repo: Repo, node: str) -> str:
    """The digest of a node's output `out`, from the workspace's last build record."""
    record = json.loads((repo.path / ".modelspec" / "builds" / "pipe.json").read_text())
    return str(record["nodes"][node]["outputs"]["out"]["digest"])


NESTED = """\
modelspec: 1
name: nest
version: "1.0"
code: {repo: ..}
data:
  raw: {path: data/raw.txt}
stages:
  a:
    cmd: sh -c 'mkdir -p ${outputs.out}/sub && tr a-z A-Z < ${inputs.raw} > ${outputs.out}/sub/deep.txt'
    inputs: [raw]
    outputs: {out: tree}
  b:
    cmd: sh -c 'cat ${inputs.a.out}/sub/deep.txt > ${outputs.out}; echo b >> ${outputs.out}'
    inputs: [a.out]
    outputs: {out: b.txt}
artifacts: [b.out]
"""


def test_a_hit_on_a_nested_directory_leaves_its_files_on_the_remote(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first = Repo(tmp_path / "a")
    first.write("modelspec.yaml", remote_setting("file", tmp_path, request))
    first.write("specs/nest.yaml", NESTED, dedent=False)
    first.write("data/raw.txt", "deep\n")
    first.commit("nested")
    first.build_json("specs/nest.yaml")
    subprocess.run(
        ["git", "clone", "-q", str(first.path), str(tmp_path / "b")], check=True, env={**GIT_ENV, "PATH": "/usr/bin"}
    )
    second = Repo.__new__(Repo)
    second.path = tmp_path / "b"
    report = second.build_json("specs/nest.yaml", "--no-push")
    assert set(states(report).values()) == {"cached"}, report  # the tree's documents came, level by level
    deep = digest_bytes(b"DEEP\n")
    assert not local_store(second).has(deep)  # the file inside stayed on the remote
    assert json.loads(second.cli("verify", "--json").stdout)["ok"]
