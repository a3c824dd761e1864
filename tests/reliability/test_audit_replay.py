"""The registry cannot be edited behind the audit log's back (issue 20 item 1): every piece
of mutable state (a version's status, aliases with their weights and history, tags, pins,
lineage, reproductions) is rebuilt by replaying the audit events, and `audit --verify`
names each way the tables differ from it (exit 1, "TAMPERED: …"). gc, which decides by
the tables, refuses to retire or delete anything while they disagree with the log.

The workspace, built once for the module (keep_last 2, grace 0s):

    m@1.0.0  production (0.8)
    m@1.0.1  production (0.2)  tag owner=team
    m@1.0.2  pinned
    m@1.0.3  pinned, then unpinned: retired by gc
    m@1.0.4  reproduced
    m@1.0.5  staging (removed with `alias rm`, restored with `rollback`)
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from contextlib import closing
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


def ok(repo: Repo, *args: str) -> str:
    result = repo.modelspec(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = Repo(tmp_path_factory.mktemp("replay") / "repo")
    with pytest.MonkeyPatch.context() as env:  # module scope: conftest's autouse isolation has not run yet
        env.delenv("MODELSPEC_HOME", raising=False)
        repo.write("specs/m.yaml", SPEC, dedent=False)
        repo.write("data/scores.json", '{"auc": 0.9}\n')
        repo.write("modelspec.yaml", "retention: {grace: 0s, keep_last: 2}\n")
        for i in range(6):
            repo.write("data/raw.txt", f"model {i}\n")
            repo.commit(f"m {i}")
            ok(repo, "build", "specs/m.yaml")
        ok(repo, "promote", "m@1.0.0", "production")
        ok(repo, "promote", "m@1.0.1", "production", "--weight", "0.2")
        ok(repo, "tag", "m@1.0.1", "owner=team")
        ok(repo, "pin", "m@1.0.2")
        ok(repo, "pin", "m@1.0.3")
        ok(repo, "unpin", "m@1.0.3")
        ok(repo, "reproduce", "m@1.0.4")
        ok(repo, "promote", "m@1.0.5", "staging")
        ok(repo, "alias", "rm", "m", "staging")
        ok(repo, "rollback", "m", "staging")
        assert "retired m@1.0.3" in ok(repo, "gc")
        assert "retired" in ok(repo, "show", "m@1.0.3")
    return repo.path


@pytest.fixture
def repo(pristine: Path, tmp_path: Path) -> Repo:
    """Each test tampers with its own copy."""
    shutil.copytree(pristine, tmp_path / "repo", symlinks=True)
    return Repo(tmp_path / "repo")


def sql(repo: Repo, statement: str, *params: object) -> None:
    """Edit the registry directly, as anyone with write access to the file could."""
    with closing(sqlite3.connect(repo.path / ".modelspec" / "registry.db")) as db, db:
        assert db.execute(statement, params).rowcount == 1, statement


def version_id(repo: Repo, version: str) -> int:
    with closing(sqlite3.connect(repo.path / ".modelspec" / "registry.db")) as db:
        (found,) = db.execute("SELECT id FROM versions WHERE version = ?", (version,)).fetchone()
    return int(found)


def tampered(repo: Repo) -> list[str]:
    """What `audit --verify` names, each without its event number; it must exit 1."""
    result = repo.modelspec("audit", "--verify")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout
    assert "audit log intact" not in result.stdout
    lines = [line.removeprefix("TAMPERED: ") for line in result.stdout.splitlines() if line.startswith("TAMPERED: ")]
    return [re.sub(r" \(event \d+\)$", " (event N)", line) for line in lines]


def test_the_untouched_registry_replays_to_its_tables(repo: Repo) -> None:
    out = ok(repo, "audit", "--verify")
    assert out.splitlines()[-1] == "audit log intact"
    assert "TAMPERED" not in out


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        pytest.param(
            "UPDATE aliases SET version_id = {1.0.4} WHERE alias = 'staging'",
            "aliases: m@staging points to 1.0.4 but the log says 1.0.5 (event N)",
            id="alias-redirected",
        ),
        pytest.param(
            "UPDATE aliases SET version_id = {1.0.5} WHERE alias = 'production' AND version_id = {1.0.0}",
            "aliases: m@production points to 1.0.1 (0.2), 1.0.5 (0.8) but the log says 1.0.0 (0.8), 1.0.1 (0.2) "
            "(event N)",
            id="canary-redirected",
        ),
        pytest.param(
            "UPDATE aliases SET weight = 0.5 WHERE alias = 'production' AND version_id = {1.0.1}",
            "aliases: m@production points to 1.0.0 (0.8), 1.0.1 (0.5) but the log says 1.0.0 (0.8), 1.0.1 (0.2) "
            "(event N)",
            id="alias-weight",
        ),
        pytest.param(
            "INSERT INTO aliases (name, alias, version_id, weight) VALUES ('m', 'shadow', {1.0.2}, 1.0)",
            "aliases: m@shadow points to 1.0.2 but no event set it",
            id="alias-inserted",
        ),
        pytest.param(
            "UPDATE versions SET status = 'retired' WHERE id = {1.0.0}",
            "versions: m@1.0.0 is retired in the table, active in the log (event N)",
            id="production-retired",
        ),
        pytest.param(
            "UPDATE versions SET status = 'active' WHERE id = {1.0.3}",
            "versions: m@1.0.3 is active in the table, retired in the log (event N)",
            id="retired-revived",
        ),
        pytest.param(
            "DELETE FROM tags WHERE version_id = {1.0.1}",
            "tags: m@1.0.1 has no tag owner in the table, owner=team in the log (event N)",
            id="tag-deleted",
        ),
        pytest.param(
            "UPDATE tags SET value = 'mallory' WHERE version_id = {1.0.1}",
            "tags: m@1.0.1 has owner=mallory in the table, owner=team in the log (event N)",
            id="tag-edited",
        ),
        pytest.param(
            "INSERT INTO pins (version_id, time, actor) VALUES ({1.0.0}, 0, 'mallory')",
            "pins: m@1.0.0 is pinned in the table, not in the log",
            id="pin-inserted",
        ),
        pytest.param(
            "DELETE FROM pins WHERE version_id = {1.0.2}",
            "pins: m@1.0.2 is not pinned in the table, pinned in the log (event N)",
            id="pin-deleted",
        ),
        pytest.param(
            'UPDATE alias_history SET after = \'[["1.0.0", 0.5], ["1.0.1", 0.5]]\' '
            "WHERE alias = 'production' AND action = 'promote' AND before != '[]'",
            "alias history: m@production move 2: after 1.0.0 (0.5), 1.0.1 (0.5) in the table, "
            "1.0.0 (0.8), 1.0.1 (0.2) in the log (event N)",
            id="alias-history-weights",
        ),
        pytest.param(
            "DELETE FROM alias_history WHERE alias = 'staging' AND action = 'alias.rm'",
            "alias history: m@staging move 2 (alias.rm by ",  # …: 1.0.5 → nothing) is missing from the table,
            id="alias-history-deleted",
        ),
        pytest.param(
            "DELETE FROM lineage WHERE version_id = {1.0.0} AND name = 'scores'",
            "lineage: m@1.0.0 lacks data input scores (data/scores.json, blake3:",
            id="lineage-deleted",
        ),
        pytest.param(
            "UPDATE reproductions SET verdict = 'identical (forged)' WHERE version_id = {1.0.4}",
            "reproductions: m@1.0.4 reproduction 1: verdict 'identical (forged)' in the table, 'identical' in the "
            "log (event N)",
            id="reproduction-verdict",
        ),
    ],
)
def test_audit_verify_names_each_table_edited_behind_the_logs_back(repo: Repo, statement: str, expected: str) -> None:
    ids = {f"{{{v}}}": str(version_id(repo, v)) for v in ("1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5")}
    sql(repo, re.sub(r"\{1\.0\.\d\}", lambda m: ids[m.group(0)], statement))
    found = tampered(repo)
    assert any(line.startswith(expected) for line in found), found
    assert len(found) == 1, found


def test_several_edits_are_each_named(repo: Repo) -> None:
    sql(repo, "UPDATE aliases SET version_id = ? WHERE alias = 'staging'", version_id(repo, "1.0.4"))
    sql(repo, "UPDATE versions SET status = 'retired' WHERE id = ?", version_id(repo, "1.0.0"))
    assert tampered(repo) == [
        "versions: m@1.0.0 is retired in the table, active in the log (event N)",
        "aliases: m@staging points to 1.0.4 but the log says 1.0.5 (event N)",
    ]


def objects(repo: Repo) -> set[str]:
    return {p.name for p in (repo.path / ".modelspec" / "objects").rglob("*") if p.is_file()}


def test_gc_deletes_nothing_while_the_tables_disagree_with_the_log(repo: Repo) -> None:
    """Made to look retired, the production version would otherwise lose its model."""
    before = objects(repo)
    sql(repo, "UPDATE versions SET status = 'retired' WHERE id = ?", version_id(repo, "1.0.0"))
    for args in (["gc"], ["gc", "--dry-run"]):
        result = repo.modelspec(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert (
            "gc refuses to run: the registry disagrees with its audit log: versions: m@1.0.0 is retired in the "
            "table, active in the log" in result.stderr
        ), result.stderr
        assert "modelspec audit --verify" in result.stderr
    assert objects(repo) == before
    with closing(sqlite3.connect(repo.path / ".modelspec" / "registry.db")) as db:
        assert db.execute("SELECT count(*) FROM events WHERE kind IN ('gc', 'retire')").fetchone() == (2,)


def test_gc_deletes_nothing_after_a_deleted_pin(repo: Repo) -> None:
    """Without its pin, keep_last would retire m@1.0.2."""
    before = objects(repo)
    sql(repo, "DELETE FROM pins WHERE version_id = ?", version_id(repo, "1.0.2"))
    result = repo.modelspec("gc")
    assert result.returncode == 2, result.stdout
    assert "pins: m@1.0.2 is not pinned in the table, pinned in the log" in result.stderr, result.stderr
    assert objects(repo) == before
