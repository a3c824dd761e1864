"""SIGKILL during a push and a fetch of a large model, which travel as recipes and chunks
(store/remote_chunks.py), against a real S3 server (moto, on loopback, behind a proxy adding
40 ms a request): the next push or fetch completes, the remote is consistent (`verify
--remote`), and a fresh store pulls every version with each object's blake3 matching. A
sibling of test_crash_push.py (so that the two run side by side)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash import check, run
from test_crash_push import remote_problems


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3server import s3_environment

    s3_environment(monkeypatch)


BIG_TRIALS = 8
# A large model pushed as recipes and chunks: each build rewrites 5% of a 12 MiB file, so a
# push sends a pack or two of new chunks, then the recipe; a kill may fall between them.
BIG_SPEC = """\
modelspec: 1
name: big
version: "1.0"
code: {repo: ..}
data:
  base: {path: data/base.bin}
config: {dir: conf}
stages:
  train:
    cmd: >-
      sh -c 'cp ${inputs.base} ${outputs.model} && chmod u+w ${outputs.model} &&
      head -c 655360 /dev/urandom | dd of=${outputs.model} bs=65536 seek=${config.train.v} conv=notrunc 2>/dev/null'
    inputs: [base]
    params: [train]
    outputs: {model: model.bin}
artifacts: [train.model]
"""


@pytest.fixture(scope="module")
def big_workspace(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Path]:
    """Its remote behind a proxy adding 40 ms to each request, as a real network does: a
    push lasts long enough for kills to land between its chunks and its recipe."""
    from faultproxy import fault_proxy
    from s3server import new_bucket

    root = tmp_path_factory.mktemp("crashbigpush") / "repo"
    for folder in ("specs", "conf", "data"):
        (root / folder).mkdir(parents=True)
    (root / "specs" / "big.yaml").write_text(BIG_SPEC)
    (root / "conf" / "config.yaml").write_text("train: {v: 0}\n")
    (root / "data" / "base.bin").write_bytes(random.Random(3).randbytes(12 << 20))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "big"]):
        subprocess.run(
            ["git", "-C", str(root), *args], check=True, env={"PATH": "/usr/bin", **env}, capture_output=True
        )
    bucket = new_bucket(s3_endpoint)
    with fault_proxy(s3_endpoint) as (endpoint, faults):
        faults.latency = 0.04
        (root / "modelspec.yaml").write_text(f"remote: {{url: 's3://{bucket}/big', endpoint: '{endpoint}'}}\n")
        yield root


def fresh_pull_problems(root: Path, into: Path) -> list[str]:
    """Every active version's objects, pulled by a store that has none of them: each one's
    blake3 must match (a chunked one reassembled from the chunks that arrived)."""
    from modelspec.build.loading import open_registry
    from modelspec.build.needed import labelled_objects, version_entries
    from modelspec.store.objects import LocalStore
    from modelspec.store.remote import RemoteStore
    from modelspec.store.remote_cache import open_remote
    from modelspec.store.workspace import find_workspace

    workspace = find_workspace(root)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    with open_registry(workspace) as registry:
        wanted = {
            d
            for version in registry.versions_by_status("active")
            for d in labelled_objects(workspace.store, version_entries(version))
        }
    fresh = LocalStore(into)
    fresh.tmp.mkdir(parents=True)
    from modelspec.errors import StoreError

    try:
        RemoteStore(remote.blobs).download(fresh, wanted)
    except StoreError as exc:
        return [f"a fresh pull failed: {exc.message}"]
    return [f"{d} does not match its blake3 after a fresh pull" for d in sorted(wanted) if not fresh.verify(d)]


def test_sigkill_during_a_chunked_push_then_push_again_then_a_fresh_pull_matches(
    big_workspace: Path, tmp_path: Path
) -> None:
    from modelspec.store.remote_cache import open_remote
    from modelspec.store.workspace import find_workspace

    rng = random.Random(2016)
    failures = []
    resumed = 0
    for i in range(BIG_TRIALS):
        built = run(big_workspace, ["build", "specs/big.yaml", f"train.v={i * 20}", "--no-push"])
        assert built.returncode == 0, built.stderr
        delay = rng.uniform(0.3, 2.5)
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelspec", "push"],
            cwd=big_workspace,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = run(big_workspace, ["push", "--json"])
        problems = [] if again.returncode == 0 else [f"the next push exited {again.returncode}: {again.stderr[-500:]}"]
        if again.returncode == 0:
            resumed += json.loads(again.stdout)["transferred"] > 0
        problems += check(big_workspace) + remote_problems(big_workspace)
        problems += fresh_pull_problems(big_workspace, tmp_path / f"fresh{i}")
        if problems:
            failures.append(f"push killed after {delay:.2f} s: {problems}")
    assert failures == []
    assert resumed >= 1, "no kill landed before the push's end: the trials tested nothing"
    workspace = find_workspace(big_workspace)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    assert len(remote.store.recipes.listed()) >= BIG_TRIALS, "the pushes sent no recipes: the trials did not test them"


def test_sigkill_during_a_chunked_fetch_then_fetch_again_gives_every_version_whole(big_workspace: Path) -> None:
    """The workspace loses its store's large objects; `fetch` is killed at random instants
    while chunks arrive (new local packs, then each recipe): the next fetch completes, and
    every version verifies (each chunked object reassembled and hashed whole)."""
    import shutil
    import stat

    built = run(big_workspace, ["build", "specs/big.yaml", "train.v=7", "--no-push"])
    assert built.returncode == 0, built.stderr
    assert run(big_workspace, ["push"]).returncode == 0
    refs = json.loads(run(big_workspace, ["versions", "big", "--json"]).stdout)
    store = big_workspace / ".modelspec"
    rng = random.Random(1616)
    failures = []
    resumed = 0  # trials whose second fetch had something left to get: the kill landed mid-fetch
    for _trial in range(8):
        for name in ("objects", "packs", "recipes"):
            for path in (store / name).rglob("*"):
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
            shutil.rmtree(store / name, ignore_errors=True)
        delay = rng.uniform(0.2, 1.7)  # a whole fetch here: ~1.6 s
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelspec", "fetch"],
            cwd=big_workspace,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = run(big_workspace, ["fetch", "--json"])
        problems = [] if again.returncode == 0 else [f"the next fetch exited {again.returncode}: {again.stderr[-500:]}"]
        if again.returncode == 0:
            resumed += json.loads(again.stdout)["transferred"] > 0
        for entry in (r for r in refs if r["status"] == "active"):
            verified = run(big_workspace, ["verify", entry["ref"]])
            if verified.returncode != 0:
                problems.append(f"{entry['ref']} does not verify: {verified.stdout[-300:]}")
        problems += check(big_workspace)
        if problems:
            failures.append(f"fetch killed after {delay:.2f} s: {problems}")
    assert failures == []
    assert resumed >= 1, "no kill landed before the fetch's end: the trials tested nothing"
