"""SIGKILL during a fetch of a large model's versions, which travel as recipes and chunks
(store/remote_chunks.py), from a real S3 server (moto, on loopback, behind a proxy adding
40 ms a request): the next fetch completes and every version verifies. A sibling of
test_crash_chunked_push.py (so that the two run side by side)."""

from __future__ import annotations

import json
import random
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from chunkedremote import big_workspace, build, kill_after
from crash import check, run


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3server import s3_environment

    s3_environment(monkeypatch)


@pytest.fixture
def pushed(tmp_path: Path, s3_endpoint: str) -> Iterator[Path]:
    """Nine versions of the big model (as many as the push trial leaves), pushed."""
    with big_workspace(tmp_path / "repo", s3_endpoint) as root:
        for v in [*(i * 20 for i in range(8)), 7]:
            build(root, v)
        pushed = run(root, ["push"])
        assert pushed.returncode == 0, pushed.stderr
        yield root


def test_sigkill_during_a_chunked_fetch_then_fetch_again_gives_every_version_whole(pushed: Path) -> None:
    """The workspace loses its store's large objects; `fetch` is killed at random instants
    while chunks arrive (new local packs, then each recipe): the next fetch completes, and
    every version verifies (each chunked object reassembled and hashed whole)."""
    refs = json.loads(run(pushed, ["versions", "big", "--json"]).stdout)
    active = [r["ref"] for r in refs if r["status"] == "active"]
    assert len(active) == 9
    store = pushed / ".modelspec"
    rng = random.Random(1616)
    failures = []
    resumed = 0  # trials whose second fetch had something left to get: the kill landed mid-fetch
    for _trial in range(8):
        for name in ("objects", "packs", "recipes"):
            for path in (store / name).rglob("*"):
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
            shutil.rmtree(store / name, ignore_errors=True)
        delay = rng.uniform(0.2, 1.7)  # a whole fetch here: ~1.6 s
        kill_after(pushed, ["fetch"], delay)
        again = run(pushed, ["fetch", "--json"])
        problems = [] if again.returncode == 0 else [f"the next fetch exited {again.returncode}: {again.stderr[-500:]}"]
        if again.returncode == 0:
            resumed += json.loads(again.stdout)["transferred"] > 0
        for ref in active:
            verified = run(pushed, ["verify", ref])
            if verified.returncode != 0:
                problems.append(f"{ref} does not verify: {verified.stdout[-300:]}")
        problems += check(pushed)
        if problems:
            failures.append(f"fetch killed after {delay:.2f} s: {problems}")
    assert failures == []
    assert resumed >= 1, "no kill landed before the fetch's end: the trials tested nothing"
