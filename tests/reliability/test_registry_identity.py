"""The store knows its registry (issue 20 item 2): a registry truncated to 0 bytes, deleted,
swapped for another workspace's or rolled back to an older copy is refused by every command
that opens it (exit 2, naming both files) — above all gc, which must not sweep — instead of
being taken for a fresh start. A registry left one write behind its recorded head by a kill
between commit and head write still opens. `verify --all` cross-checks each version's rows
against its lock and metrics objects."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import Repo

SPEC = """\
modelspec: 1
name: m
version: "1.0"
code: {repo: ..}
data:
  raw: {path: data/raw.txt}
  scores: {path: data/scores.json}
hermetic: "off"
stages:
  train:
    cmd: sh -c 'cat ${inputs.raw} > ${outputs.model}; cat ${inputs.scores} > ${outputs.metrics}'
    inputs: [raw, scores]
    outputs: {model: model.txt, metrics: metrics.json}
    metrics: metrics
artifacts: [train.model]
"""
READ_COMMANDS = [["versions", "m"], ["show", "m@1.0.0"], ["audit", "--verify"], ["verify", "--all"]]


def make_workspace(repo: Repo) -> None:
    repo.write("specs/m.yaml", SPEC, dedent=False)
    repo.write("data/raw.txt", "one\n")
    repo.write("data/scores.json", '{"auc": 0.9}\n')
    repo.write("modelspec.yaml", "retention: {grace: 0s}\n")
    repo.commit("m")
    repo.modelspec("build", "specs/m.yaml", check=True)
    repo.modelspec("promote", "m@1.0.0", "production", check=True)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = Repo(tmp_path_factory.mktemp("identity") / "repo")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MODELSPEC_HOME", raising=False)
        make_workspace(repo)
    return repo.path


@pytest.fixture
def repo(pristine: Path, tmp_path: Path) -> Repo:
    shutil.copytree(pristine, tmp_path / "repo", symlinks=True)
    return Repo(tmp_path / "repo")


def home(repo: Repo) -> Path:
    return repo.path / ".modelspec"


def objects(repo: Repo) -> set[str]:
    return {p.name for p in (home(repo) / "objects").rglob("*") if p.is_file()}


def assert_refused(repo: Repo, args: list[str], *words: str) -> None:
    result = repo.modelspec(*args)
    if args == ["audit", "--verify"] and (home(repo) / "registry.db").exists():
        # Its job is to examine the registry: it reads it, and calls it tampered with.
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "TAMPERED: the store does not recognise this registry: " in result.stdout, result.stdout
        assert all(word in result.stdout for word in words), result.stdout
        return
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    registry, head = home(repo) / "registry.db", home(repo) / "registry-head"
    assert f"the registry {registry} does not belong to this store" in result.stderr, result.stderr
    assert str(head) in result.stderr and "restore the registry from a backup" in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def rebuild_with_other_content(repo: Repo) -> None:
    repo.write("data/raw.txt", "other content\n")
    repo.commit("other")


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_an_emptied_or_deleted_registry_is_refused_and_gc_frees_nothing(repo: Repo, damage: str) -> None:
    before = objects(repo)
    registry = home(repo) / "registry.db"
    for stale in home(repo).glob("registry.db-*"):  # the WAL and its index: gone with the database
        stale.unlink()
    registry.write_bytes(b"") if damage == "truncate" else registry.unlink()
    what = "it is empty" if damage == "truncate" else "it is missing"
    for args in [["gc"], *READ_COMMANDS, ["promote", "m@1.0.0", "staging"]]:
        assert_refused(repo, args, what)
    rebuild_with_other_content(repo)
    assert_refused(repo, ["build", "specs/m.yaml"], what)  # m@1.0.0 is not handed out again
    assert before <= objects(repo)  # gc deleted nothing (the build stored its new outputs)
    if registry.exists():  # nothing was created in its place
        with sqlite3.connect(registry) as db:
            assert db.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_another_workspaces_registry_is_refused(repo: Repo, tmp_path: Path) -> None:
    other = Repo(tmp_path / "other")
    make_workspace(other)
    shutil.copyfile(home(other) / "registry.db", home(repo) / "registry.db")
    assert_refused(repo, ["gc"], "but the store belongs to registry")
    assert_refused(repo, ["versions", "m"], "but the store belongs to registry")


def test_a_registry_rolled_back_to_an_older_copy_is_refused(repo: Repo, tmp_path: Path) -> None:
    registry = home(repo) / "registry.db"
    shutil.copyfile(registry, tmp_path / "old.db")  # promote has checkpointed its WAL on close
    repo.modelspec("tag", "m@1.0.0", "owner=team", check=True)
    shutil.copyfile(tmp_path / "old.db", registry)
    assert_refused(repo, ["gc"], "its audit log ends at event 2, but the store saw it reach event 3")
    assert_refused(repo, ["audit", "--verify"], "rolled back")


def test_a_kill_between_commit_and_head_write_does_not_lock_the_workspace_out(repo: Repo) -> None:
    """The state such a kill leaves: the registry committed event 3, the head still says 2."""
    head = home(repo) / "registry-head"
    behind = head.read_bytes()
    repo.modelspec("tag", "m@1.0.0", "owner=team", check=True)
    assert json.loads(head.read_bytes())["seq"] == 3
    head.write_bytes(behind)
    for args in READ_COMMANDS:
        result = repo.modelspec(*args)
        assert result.returncode == 0, (args, result.stderr)
    repo.modelspec("gc", check=True)
    assert json.loads(head.read_bytes())["seq"] == 4  # gc's own event moved the head on


def test_deleting_the_head_file_on_purpose_adopts_the_registry(repo: Repo) -> None:
    (home(repo) / "registry.db").write_bytes(b"")
    (home(repo) / "registry-head").unlink()
    assert repo.modelspec("versions", "m").returncode == 2  # a new, empty registry: no model m yet
    rebuild_with_other_content(repo)
    repo.modelspec("build", "specs/m.yaml", check=True)
    assert json.loads((home(repo) / "registry-head").read_bytes())["seq"] == 1


def test_verify_all_names_rows_that_contradict_the_versions_objects(repo: Repo) -> None:
    with sqlite3.connect(home(repo) / "registry.db") as db:
        db.execute("UPDATE metrics SET value = 0.5 WHERE key = 'auc'")
        db.execute("UPDATE versions SET \"commit\" = 'f00d'")
    result = repo.modelspec("verify", "--all")
    assert result.returncode == 1, result.stdout
    assert "registry: m@1.0.0: metric auc is 0.5 in the registry but 0.9 in train.metrics" in result.stdout
    assert "registry: m@1.0.0: the registry says commit 'f00d', its lock says " in result.stdout
