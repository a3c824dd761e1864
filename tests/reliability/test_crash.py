"""SIGKILL during build, gc, promote, reproduce and environment creation (and the chunk
layer's chunking, packing, cooling and repacking), at seeded random instants: after every
kill no helper (uv) keeps running, the next command succeeds and the workspace is consistent
(benchmarks/crash_trials.py runs the same trials a thousand times). A few of the trials again
with the registry on a PostgreSQL server: a killed client's transaction is rolled back by the
server, and its advisory lock released with its session."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pgserver
import pytest
from crash import check, init_workspace, trial

TRIALS = 52


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "repo"
    root.mkdir()
    init_workspace(root)
    assert check(root) == []
    return root


@pytest.mark.parametrize("batch", range(4))
def test_sigkill_at_random_points_leaves_the_workspace_consistent(workspace: Path, batch: int) -> None:
    rng = random.Random(1000 + batch)
    failures = []
    for i in range(TRIALS // 4):
        result = trial(workspace, rng, counter=batch * 100 + i)
        if result.problems:
            failures.append(f"{result.operation} killed after {result.delay:.2f} s: {result.problems}")
    assert failures == []


@pytest.fixture(scope="module")
def chunked_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash-chunks") / "repo"
    root.mkdir()
    init_workspace(root, chunked=True)
    assert check(root) == []
    return root


def test_sigkill_while_chunking_packing_cooling_and_repacking_leaves_the_store_consistent(
    chunked_workspace: Path,
) -> None:
    """Builds of a 32 MiB model (half of it new each time: new packs) and gcs (cooling the
    versions no alias or last build needs, removing dead packs, rewriting half-dead ones),
    killed at random instants: every recipe still reassembles to its digest (verify), every
    version keeps its objects, no temp file is left."""
    rng = random.Random(3031)
    failures = []
    for i in range(10):
        result = trial(chunked_workspace, rng, counter=i, chunked=True)
        if result.problems:
            failures.append(f"{result.operation} killed after {result.delay:.2f} s: {result.problems}")
    assert failures == []
    home = chunked_workspace / ".modelspec"
    assert list((home / "packs").glob("*.pack")) and list((home / "recipes").rglob("*"))


@pytest.fixture(scope="module")
def postgres_workspace(tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("crash-pg") / "repo"
    root.mkdir()
    with pgserver.database(postgres_server) as url:
        init_workspace(root, registry=url)
        assert check(root) == []
        yield root


def test_sigkill_at_random_points_with_a_postgresql_registry(postgres_workspace: Path) -> None:
    rng = random.Random(2012)  # three builds, two promotes, a gc, a reproduce and an env create
    failures = []
    for i in range(8):  # a few: the trials above check the rest, on SQLite
        result = trial(postgres_workspace, rng, counter=i)
        if result.problems:
            failures.append(f"{result.operation} killed after {result.delay:.2f} s: {result.problems}")
    assert failures == []
