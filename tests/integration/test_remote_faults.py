"""A flaky or slow S3 server, through a fault-injecting proxy in front of the test server:
503 SlowDown, dropped connections and a stall are retried with backoff; a server that keeps
failing is one clear error (exit 1, no traceback) and the next push resumes; bytes damaged
on the way are fetched again, and never enter the store."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator

import pytest
from conftest import Repo
from faultproxy import Faults, fault_proxy
from pipeline import make_pipeline

from modelspec.store.blobs import RemoteConfig, open_blobs
from modelspec.store.remote import RemoteStore


@pytest.fixture
def proxied(
    s3_endpoint: str, s3_bucket: str, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Repo, Faults]]:
    monkeypatch.setenv("MODELSPEC_REMOTE_TIMEOUT", "2")
    monkeypatch.setenv("MODELSPEC_REMOTE_RETRIES", "5")
    with fault_proxy(s3_endpoint) as (endpoint, faults):
        repo.write("modelspec.yaml", f"remote: {{url: 's3://{s3_bucket}/flaky', endpoint: '{endpoint}'}}\n")
        spec = make_pipeline(repo)
        repo.cli("build", spec, "--no-push", check=True)
        yield repo, faults


def push(repo: Repo) -> dict:
    result = repo.cli("push", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_slow_down_and_dropped_connections_are_retried(proxied: tuple[Repo, Faults]) -> None:
    repo, faults = proxied
    faults.fail, faults.drop = 3, 2
    report = push(repo)
    assert faults.injected == {"fail": 3, "drop": 2}
    assert report["transferred"] == report["objects"] > 0


def test_a_stalled_request_is_retried(proxied: tuple[Repo, Faults]) -> None:
    repo, faults = proxied
    faults.stall, faults.stall_seconds = 1, 4.0  # longer than MODELSPEC_REMOTE_TIMEOUT
    report = push(repo)
    assert faults.injected == {"stall": 1} and report["transferred"] > 0


def test_a_server_that_keeps_failing_is_one_clear_error_and_the_next_push_resumes(
    proxied: tuple[Repo, Faults],
) -> None:
    repo, faults = proxied
    faults.fail = 10**6
    result = repo.cli("push")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "remote s3://" in output and "can be run again" in output
    faults.fail = 0
    report = push(repo)
    assert report["transferred"] == report["objects"]


def test_bytes_damaged_on_the_way_are_fetched_again_never_stored(proxied: tuple[Repo, Faults]) -> None:
    repo, faults = proxied
    push(repo)
    objects = repo.path / ".modelspec" / "objects"
    for path in objects.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(objects)
    faults.corrupt = 1  # once: the second download is sound
    fetched = json.loads(repo.cli("fetch", "--json", check=True).stdout)
    assert faults.injected == {"corrupt": 1} and fetched["transferred"] > 0
    assert repo.cli("verify").returncode == 0
    shutil.rmtree(objects)
    faults.corrupt = 10**6  # every time: the object is treated as corrupt, and nothing enters the store
    result = repo.cli("fetch")
    assert result.returncode == 1 and "corrupt" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not any(path.is_file() for path in objects.rglob("*")) if objects.exists() else True


def test_a_head_through_the_proxy_tells_the_objects_size(s3_endpoint: str, s3_bucket: str) -> None:
    """A HEAD's Content-Length is the object's size, as upstream said: s3fs (DVC's client, in
    benchmarks/remote_bench.py) sizes its reads by it, and read nothing when it said 0."""
    with fault_proxy(s3_endpoint) as (endpoint, _faults):
        remote = RemoteStore(open_blobs(RemoteConfig(f"s3://{s3_bucket}/head", endpoint=endpoint)))
        digest = remote.put_bytes(b"x" * 1000)
        info = remote.stat(digest)
    assert info is not None and info.size == 1000
