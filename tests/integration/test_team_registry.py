"""A team registry on a real PostgreSQL server, through the real CLI: two workspaces sharing
one registry, `registry copy` from SQLite to PostgreSQL and back, `registry info`, and a
server that is down. The URLs carry a password (the test server trusts every local
connection, so it is never checked): it must never be printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pgserver
import pytest
import sqlalchemy as sa
from conftest import Repo

from modelspec.registry.head import HEAD_FILE
from modelspec.registry.registry import Registry

SECRET = "s3cret-pw"

SPEC = """\
modelspec: 1
name: m
version: "1.0"
code: {repo: ..}
config: {dir: conf}
stages:
  train:
    cmd: sh train.sh ${outputs.model} ${outputs.metrics} ${config.train.v}
    code: [train.sh]
    params: [train]
    outputs: {model: model.txt, metrics: metrics.json}
    metrics: metrics
artifacts: [train.model]
"""
# auc is 0.9 followed by the digits of train.v: 0.91, 0.92, ...
TRAIN = 'echo "v=$3" > "$1"\nprintf \'{"auc": 0.9%s}\' "$3" > "$2"\n'


def with_password(url: str) -> str:
    return sa.make_url(url).set(password=SECRET).render_as_string(hide_password=False)


# Each build records its gate's verdict (a row of gate_results and a `gate` event).
GATED = SPEC + "gates:\n  - {metric: auc, direction: higher, threshold: 0.5}\n"


def workspace(path: Path, registry: str | None = None, spec: str = SPEC) -> Repo:
    repo = Repo(path)
    repo.write("specs/m.yaml", spec, dedent=False)
    repo.write("train.sh", TRAIN, dedent=False)
    repo.write("conf/config.yaml", "train: {v: 1}\n")
    if registry:
        repo.write("modelspec.yaml", f"registry: {registry}\n")
    repo.commit("model m")
    return repo


def run(repo: Repo, *args: str, env: dict[str, str] | None = None, code: int = 0) -> Any:
    """The CLI in-process; parsed JSON with --json. The password never appears."""
    result = repo.cli(*args, env=env)
    said = f"modelspec {' '.join(args)} → {result.returncode}\n{result.stdout}{result.stderr}"
    assert result.returncode == code, said
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout) if "--json" in args and code == 0 else result


def test_two_workspaces_share_one_postgresql_registry(tmp_path: Path, postgres_url: str) -> None:
    url = with_password(postgres_url)
    # The team's objects travel through a shared remote (a directory here).
    remote = f"file://{tmp_path / 'remote'}"
    a = workspace(tmp_path / "a", f"{url}\nremote: {remote}")
    b = workspace(tmp_path / "b", f"{url}\nremote: {remote}")
    assert run(a, "build", "specs/m.yaml", "--json")["versions"]["m"] == {"ref": "m@1.0.0", "new": True}
    assert run(a, "build", "specs/m.yaml", "train.v=2", "--json")["versions"]["m"]["ref"] == "m@1.0.1"

    # B lists what A built, filtered by a metric, and moves the alias.
    listed = run(b, "versions", "m", "--json")
    assert [(r["version"], r["metrics"]) for r in listed] == [("1.0.0", {"auc": 0.91}), ("1.0.1", {"auc": 0.92})]
    assert [r["version"] for r in run(b, "versions", "m", "--where", "auc>0.915", "--json")] == ["1.0.1"]
    run(b, "promote", "m@1.0.0", "production")
    run(b, "promote", "m@1.0.1", "production")
    assert run(b, "rollback", "m", "production", "--json")["targets"] == [["1.0.0", 1.0]]

    # A sees B's moves, and both see one audit log, intact.
    history = run(a, "alias", "history", "m", "production", "--json")["history"]
    assert [(h["action"], h["to"]) for h in history] == [
        ("promote", [["1.0.0", 1.0]]),
        ("promote", [["1.0.1", 1.0]]),
        ("rollback", [["1.0.0", 1.0]]),
    ]
    log_a, log_b = run(a, "audit", "--verify", "--json"), run(b, "audit", "--verify", "--json")
    # Each workspace anchors the log in its own store: B, which promoted, has a checkpoint.
    assert log_a.pop("checkpoint") is None and log_b.pop("checkpoint")["events"] == 5
    assert log_a == log_b and log_a["ok"]
    assert [e["kind"] for e in log_a["events"]] == ["build", "build", "promote", "promote", "rollback"]
    # B has the version's objects once A pushed them and B pulled them: it verifies whole.
    assert "missing" in run(b, "verify", "m@1.0.0", code=1).stdout
    run(a, "push", "m@1.0.0")
    run(b, "pull", "m@1.0.0")
    assert run(b, "verify", "m@1.0.0").stdout.strip().endswith("checked: ok")

    # A builds again after B's writes: B's moves are a continuation of what A's store recorded.
    assert run(a, "build", "specs/m.yaml", "train.v=3", "--json")["versions"]["m"]["ref"] == "m@1.0.2"
    text = run(b, "registry", "info").stdout
    assert "backend:  postgresql" in text and "holds:    1 models, 3 versions" in text
    info = run(b, "registry", "info", "--json")
    assert info["backend"] == "postgresql" and "***" in info["url"]
    assert info["counts"]["versions"] == 3 and info["counts"]["events"] == 6 and info["audit_head"] == 6


def test_registry_copy_from_sqlite_to_postgresql_and_back(tmp_path: Path, postgres_url: str) -> None:
    repo = workspace(tmp_path / "ws", spec=GATED)
    for v in (1, 2):
        run(repo, "build", "specs/m.yaml", f"train.v={v}")
    run(repo, "tag", "m@1.0.1", "stage=candidate")
    run(repo, "promote", "m@1.0.0", "production")
    run(repo, "promote", "m@1.0.1", "production", "--weight", "0.25")
    run(repo, "pin", "m@1.0.0")
    home = repo.path / ".modelspec"
    with Registry.at(home / "registry.db", home / HEAD_FILE) as registry:  # as `reproduce` records one
        registry.record_reproduction(registry.resolve("m@1.0.1"), "identical", {"rtol": 0.0}, "ana")
    before = {
        command: run(repo, *command.split(), "--json")
        for command in ("versions m", "alias history m production", "audit", "registry info")
    }

    url = with_password(postgres_url)
    copied = run(repo, "registry", "copy", "--to", url, "--json")
    assert copied["backend"] == "postgresql" and copied["to"] == sa.make_url(url).render_as_string()
    assert copied["counts"] == before["registry info"]["counts"]
    assert copied["counts"] | {"models": 1} == {
        "models": 1, "versions": 2, "aliases": 2, "alias_history": 2, "tags": 1, "reproductions": 1, "pins": 1,
        "gate_results": 2, "events": 9,
    }
    refused = run(repo, "registry", "copy", "--to", url, code=2)
    assert "is not empty (2 versions, 9 audit events)" in refused.stderr

    # The workspace moved to the copy: the same registry (the store recognises it), every record.
    on_copy = {"MODELSPEC_REGISTRY_URL": url}
    assert run(repo, "audit", "--verify", "--json", env=on_copy)["ok"]
    for command, seen in before.items():
        now = run(repo, *command.split(), "--json", env=on_copy)
        if command == "registry info":
            assert (now["backend"], now["registry_id"], now["counts"]) == ("postgresql", seen["registry_id"],
                                                                           seen["counts"])
        else:
            assert now == seen, command
    shown = run(repo, "show", "m@1.0.1", "--json", env=on_copy)
    assert shown["tags"] == {"stage": "candidate"} and shown["reproductions"][0]["verdict"] == "identical"
    # New rows (a version, its gate verdict) continue after the copied ids: PostgreSQL's
    # sequences were moved past them.
    assert run(repo, "build", "specs/m.yaml", "train.v=3", "--json", env=on_copy)["versions"]["m"]["ref"] == "m@1.0.2"
    run(repo, "promote", "m@1.0.2", "staging", env=on_copy)

    # And back to a new SQLite file: the chain still verifies there.
    back = tmp_path / "back" / "registry.db"
    back.parent.mkdir()
    returned = run(repo, "registry", "copy", "--to", f"sqlite:///{back}", "--json", env=on_copy)
    assert returned["counts"]["versions"] == 3 and returned["counts"]["events"] == 12  # + build, gate, promote
    on_back = {"MODELSPEC_REGISTRY_URL": f"sqlite:///{back}"}
    assert run(repo, "audit", "--verify", "--json", env=on_back)["ok"]
    assert run(repo, "versions", "m", "--json", env=on_back) == run(repo, "versions", "m", "--json", env=on_copy)


def test_a_database_that_does_not_exist_is_named_with_how_to_make_it(tmp_path: Path, postgres_server: str) -> None:
    url = with_password(sa.make_url(postgres_server).set(database="no_such_db").render_as_string(hide_password=False))
    repo = workspace(tmp_path / "ws", url)
    refused = run(repo, "registry", "info", code=1)
    assert "cannot be opened: connection failed" in refused.stderr
    assert 'database "no_such_db" does not exist' in refused.stderr
    assert "hint: create it first: createdb -h 127.0.0.1 -p" in refused.stderr


def test_a_registry_url_that_is_not_usable_is_a_located_error(tmp_path: Path) -> None:
    repo = workspace(tmp_path / "ws", "mysql://u@localhost/db")
    refused = run(repo, "versions", "m", code=2)
    assert "cannot be on mysql" in refused.stderr
    refused = run(repo, "versions", "m", env={"MODELSPEC_REGISTRY_URL": "not a url"}, code=2)
    assert "is not a database URL" in refused.stderr


def test_a_server_that_is_down_or_restarts_is_a_clear_error_and_nothing_is_half_written(
    tmp_path: Path, private_postgres: pgserver.Server
) -> None:
    with pgserver.database(private_postgres.url) as database:
        url = with_password(database)
        repo = workspace(tmp_path / "ws", url)
        run(repo, "build", "specs/m.yaml")
        run(repo, "build", "specs/m.yaml", "train.v=2")
        run(repo, "promote", "m@1.0.0", "production")

        private_postgres.stop("fast")
        # A build fails before it runs anything: not after its stages, at registration.
        build = repo.modelspec("build", "specs/m.yaml", "train.v=3")
        assert build.returncode == 1 and "cannot be opened: connection failed" in build.stderr
        assert "Traceback" not in build.stderr and "train" not in build.stdout + build.stderr, build
        for command in (("versions", "m"), ("promote", "m@1.0.1", "production"), ("audit", "--verify")):
            failed = repo.modelspec(*command)  # the real CLI: exit code, stderr, no traceback
            assert failed.returncode == 1, failed
            assert "Traceback" not in failed.stderr and SECRET not in failed.stdout + failed.stderr
            shown = sa.make_url(url).render_as_string()  # with *** for the password
            assert f"error: the registry {shown} cannot be opened: connection failed" in failed.stderr
            assert f"PostgreSQL server at 127.0.0.1:{private_postgres.port} is running" in failed.stderr

        private_postgres.start()
        pgserver.wait_ready(database)
        # The promote that failed changed nothing; the log is intact; the registry works again.
        assert [h["to"] for h in run(repo, "alias", "history", "m", "production", "--json")["history"]] == [
            [["1.0.0", 1.0]]
        ]
        assert run(repo, "audit", "--verify", "--json")["ok"]

        # A server restarted between two statements of one process: the pooled connection it
        # closed is replaced, not reused.
        with Registry(url) as registry:
            assert registry.resolve("m@production").version == "1.0.0"
            private_postgres.stop("fast")
            private_postgres.start()
            pgserver.wait_ready(database)
            assert registry.promote("m@1.0.1", "production", "ana") == [["1.0.1", 1.0]]
            assert registry.verify_audit() == ""


def test_a_connection_dropped_during_promote_changes_nothing(postgres_url: str, postgres_server: str) -> None:
    """The server ends the promote's connection after it wrote the alias and its history,
    before the audit event and the commit: the promote fails with a clear error and leaves
    the alias, its history and the log as they were."""
    with Registry(with_password(postgres_url)) as registry:
        for i in range(2):
            registry.register(draft_of(i))
        registry.promote("m@1.0.0", "production", "ana")
        events = len(registry.events())
        admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

        @sa.event.listens_for(registry.engine, "after_cursor_execute")
        def drop(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith("INSERT INTO alias_history"):
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                with admin.connect() as other:
                    other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        with pytest.raises(Exception) as info:
            registry.promote("m@1.0.1", "production", "ana")
        sa.event.remove(registry.engine, "after_cursor_execute", drop)
        admin.dispose()
        assert type(info.value).__name__ == "StoreError"
        assert "cannot be written" in str(info.value) and SECRET not in str(info.value)
        assert [v.version for v, _w in registry.alias_targets("m", "production")] == ["1.0.0"]
        assert len(registry.alias_history("m", "production")) == 1
        assert len(registry.events()) == events and registry.verify_audit() == ""


def draft_of(i: int) -> Any:
    from modelspec.registry.registry import VersionDraft

    return VersionDraft(
        name="m", spec_version="1.0", content_id="blake3:" + f"{i:x}" * 64, lock="l", commit="c", environment=None,
        hermetic=True, author="ana", host="h", tool_version="0", record={}, artifacts={}, metrics={"auc": 0.9},
    )
