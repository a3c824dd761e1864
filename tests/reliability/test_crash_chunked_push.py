"""SIGKILL during a push of a large model, which travels as recipes and chunks
(store/remote_chunks.py), against a real S3 server (moto, on loopback, behind a proxy adding
40 ms a request): the next push completes, the remote is consistent (`verify --remote`), and
a fresh store pulls every version with each object's blake3 matching. A sibling of
test_crash_push.py and test_crash_chunked_fetch.py (so that they run side by side)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from chunkedremote import big_workspace, build, fresh_pull_problems, kill_after
from crash import check, run
from test_crash_push import remote_problems


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3server import s3_environment

    s3_environment(monkeypatch)


BIG_TRIALS = 8


@pytest.fixture
def workspace(tmp_path: Path, s3_endpoint: str) -> Iterator[Path]:
    with big_workspace(tmp_path / "repo", s3_endpoint) as root:
        yield root


def test_sigkill_during_a_chunked_push_then_push_again_then_a_fresh_pull_matches(
    workspace: Path, tmp_path: Path
) -> None:
    from modelspec.store.remote_cache import open_remote
    from modelspec.store.workspace import find_workspace

    rng = random.Random(2016)
    failures = []
    resumed = 0
    for i in range(BIG_TRIALS):
        build(workspace, i * 20)
        delay = rng.uniform(0.3, 2.5)
        kill_after(workspace, ["push"], delay)
        again = run(workspace, ["push", "--json"])
        problems = [] if again.returncode == 0 else [f"the next push exited {again.returncode}: {again.stderr[-500:]}"]
        if again.returncode == 0:
            resumed += json.loads(again.stdout)["transferred"] > 0
        problems += check(workspace) + remote_problems(workspace)
        problems += fresh_pull_problems(workspace, tmp_path / f"fresh{i}")
        if problems:
            failures.append(f"push killed after {delay:.2f} s: {problems}")
    assert failures == []
    assert resumed >= 1, "no kill landed before the push's end: the trials tested nothing"
    opened = find_workspace(workspace)
    remote = open_remote(opened.settings, opened.home)
    assert remote is not None
    assert len(remote.store.recipes.listed()) >= BIG_TRIALS, "the pushes sent no recipes: the trials did not test them"
