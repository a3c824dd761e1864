"""`gc --remote` on a remote shared by two workspaces: it keeps what either needs (their
roots), what a running build or push has leased, and deletes only what nobody needs, two
runs after it was first found unneeded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GIT_ENV, Repo, states
from faultproxy import fault_proxy
from pipeline import make_pipeline
from test_remote_build import remote_setting

from modelspec.retention.remote_gc import collect_remote
from modelspec.store.remote_cache import RemoteLease, open_remote
from modelspec.store.remote_objects import object_name
from modelspec.store.workspace import find_workspace


def clone(source: Repo, path: Path) -> Repo:
    subprocess.run(["git", "clone", "-q", str(source.path), str(path)], check=True, env={**GIT_ENV, "PATH": "/usr/bin"})
    repo = Repo.__new__(Repo)
    repo.path = path
    return repo


def gc_remote(repo: Repo, *args: str) -> dict:
    result = repo.cli("gc", "--remote", "--grace", "0s", "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_one_workspaces_remote_gc_keeps_what_the_other_needs(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first = Repo(tmp_path / "a")
    first.write("modelspec.yaml", remote_setting(kind, tmp_path, request))
    spec = make_pipeline(first)
    first.build_json(spec, in_process=True)
    first.cli("push", check=True)
    second = clone(first, tmp_path / "b")
    second.build_json(spec, "a.v=2", in_process=True)  # stages a, b, d run here only
    second.cli("push", check=True)

    remote = open_remote(find_workspace(first.path).settings, first.path / ".modelspec")
    assert remote is not None
    garbage = remote.store.put_bytes(b"an object nobody needs\n")
    needed_by_second = {d for d in remote.store.iter() if d != garbage}

    dry = gc_remote(first, "--dry-run")
    assert dry["condemned_objects"] == 1 and dry["deleted_objects"] == 0
    first_run = gc_remote(first)
    assert len(first_run["workspaces"]) == 2
    assert first_run["condemned_objects"] == 1 and first_run["deleted_objects"] == 0
    assert remote.store.has(garbage)  # condemned, not yet deleted
    second_run = gc_remote(first)
    assert second_run["deleted_objects"] == 1 and not remote.store.has(garbage)
    assert set(remote.store.iter()) == needed_by_second

    # A third machine builds what B built, from the remote: nothing runs.
    third = clone(first, tmp_path / "c")
    assert set(states(third.build_json(spec, "a.v=2", in_process=True)).values()) == {"cached"}

    # B is gone for good: once forgotten, what only B needed is condemned, then deleted.
    status = json.loads(first.cli("remote", "status", "--json", check=True).stdout)
    ids = [w["id"] for w in status["workspaces"]]
    mine = (first.path / ".modelspec" / "remote-id").read_text().strip()
    (gone,) = [i for i in ids if i != mine]
    assert first.cli("remote", "forget", gone, check=True).stdout.strip() == f"forgot the roots of {gone}"
    unknown = first.cli("remote", "forget", gone)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert gc_remote(first)["condemned_objects"] > 0
    assert gc_remote(first)["deleted_objects"] > 0
    assert set(states(first.build_json(spec, in_process=True)).values()) == {"cached"}  # A's own stay


def test_a_lease_keeps_objects_until_it_expires_or_is_released(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "modelspec.yaml").write_text(f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo = Repo(root)
    spec = make_pipeline(repo)
    repo.build_json(spec, in_process=True)
    workspace = find_workspace(root)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    from modelspec.build.loading import open_registry

    in_use = remote.store.put_bytes(b"uploaded by a push that is still running\n")
    with open_registry(workspace) as registry:
        with RemoteLease(remote.blobs) as lease:
            lease.add([in_use])
            for _ in range(3):
                report = collect_remote(workspace, registry, remote, grace=0)
                assert report.deleted == [] and remote.store.has(in_use)
        # Released: condemned by the next gc, deleted by the one after.
        assert collect_remote(workspace, registry, remote, grace=0).condemned == [in_use]
        assert collect_remote(workspace, registry, remote, grace=0).deleted == [in_use]
        # An expired lease (its process was killed) protects nothing.
        stale = remote.store.put_bytes(b"left by a killed push\n")
        RemoteLease(remote.blobs, seconds=-1).add([stale])
        collect_remote(workspace, registry, remote, grace=0)
        assert collect_remote(workspace, registry, remote, grace=0).deleted == [stale]
        assert list(remote.blobs.scan("leases/")) == []
    # An unreadable roots document stops remote gc before anything is deleted.
    damaged = tmp_path / "shared" / "roots" / "elsewhere.json"
    damaged.write_bytes(b"{not json")
    result = repo.cli("gc", "--remote", "--grace", "0s")
    assert result.returncode == 1 and "remote forget elsewhere" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert repo.cli("remote", "forget", "elsewhere", check=True).returncode == 0
    # A push killed on a shared directory left a temp file: gone once older than an hour.
    scratch = tmp_path / "shared" / "tmp" / "12345-killed"
    scratch.write_bytes(b"half an object")
    os.utime(scratch, (time.time() - 7200, time.time() - 7200))
    with open_registry(workspace) as registry:
        assert collect_remote(workspace, registry, remote, grace=0).temp_files == 1
    assert not scratch.exists()
    # The grace period: a young unneeded object is not even condemned.
    young = remote.store.put_bytes(b"just uploaded\n")
    with open_registry(workspace) as registry:
        report = collect_remote(workspace, registry, remote, grace=3600)
    assert report.young >= 1 and young not in report.condemned and remote.store.has(young)
    assert os.path.exists(tmp_path / "shared" / object_name(young))


MANY = """\
modelspec: 1
name: many
version: "1.0"
code: {repo: ..}
config: {dir: conf}
stages:
  make:
    cmd: sh -c 'mkdir ${outputs.tree}; for i in $(seq 400); do echo ${config.make.v} $i > ${outputs.tree}/f$i; done'
    params: [make]
    outputs: {tree: tree}
artifacts: [make.tree]
"""


def test_a_build_elsewhere_never_loses_an_object_to_a_concurrent_remote_gc(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first = Repo(tmp_path / "a")
    first.write("modelspec.yaml", remote_setting("s3", tmp_path, request))
    first.write("specs/many.yaml", MANY)
    first.write("conf/config.yaml", "make: {v: 0}\n")
    first.commit("many small outputs")
    first.cli("build", "specs/many.yaml", check=True)
    first.cli("push", check=True)
    second = clone(first, tmp_path / "b")
    # B builds and uploads 400 new objects, slowly (120 ms a request: ~6 s), while A's remote
    # gc runs again and again with a grace of 3 s: without B's remote lease, what B uploaded
    # first would be condemned by one run and deleted by a later one before B's entry names it.
    endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
    with fault_proxy(endpoint) as (slow, faults):
        faults.latency = 0.12
        second.write("modelspec.yaml", f"remote: {{url: 's3://{bucket}/team', endpoint: '{slow}'}}\n")
        build = subprocess.Popen(
            [sys.executable, "-m", "modelspec", "build", "specs/many.yaml", "make.v=1", "-j", "1", "--json"],
            cwd=second.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        remote = open_remote(find_workspace(first.path).settings, first.path / ".modelspec")
        assert remote is not None
        entries = len(list(remote.blobs.scan("ac/")))
        runs = 0
        # Until B's entry (written last) is there: from then on, a gc may rightly sweep B's
        # result (no root names it, and it ages past the grace), which is not what this tests.
        while len(list(remote.blobs.scan("ac/"))) == entries:
            assert build.poll() is None, build.communicate()
            collected = first.modelspec("gc", "--remote", "--grace", "3s", "--json")
            assert collected.returncode == 0, collected.stderr
            runs += 1
        _out, err = build.communicate()
    assert build.returncode == 0, err
    assert runs >= 2 and "not uploaded" not in err
    # Everything B's entry names is there: a third machine builds B's version from it.
    third = clone(first, tmp_path / "c")
    report = third.build_json("specs/many.yaml", "make.v=1", in_process=True)
    assert states(report) == {"many:make": "cached"}
    assert report["nodes"][0]["reason"] == "from the remote cache"
    assert json.loads(first.cli("verify", "--remote", "--json").stdout)["dangling_action_cache_entries"] == []
