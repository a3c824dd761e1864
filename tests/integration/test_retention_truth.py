"""Retention and serving never lie: what gc keeps, what it says, and what every command
answers about a retired version, on one workspace shared by the module:

    gcm@1.0.0  auc 0.50  production (0.9)       kept: an alias serves it (keep_aliased: false)
    gcm@1.0.1  auc 0.90                         kept: keep_best
    gcm@1.0.2  auc 0.60  production (0.1)       kept: a canary target is served too
    gcm@1.0.3  auc 0.70  staging, moved away    retired: only a previous target
    gcm@1.0.4  auc 0.65  pinned                 kept: keep_last, pinned
    gcm@1.0.5  auc 0.55  staging                kept: keep_last

The `swept` fixture runs gc twice: first inside the default one-hour grace period (which
holds every byte), then with `grace: 0s` (which sweeps 1.0.3's artifacts). Commands run
in-process (click's CliRunner); the first build and the first gc run the real CLI.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Repo
from test_gc import AUCS, SPEC, make

from modelspec.text import plural


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Swept:
    repo: Repo
    within_grace: dict[str, Run] = field(default_factory=dict)  # what commands said inside the grace period
    after: dict[str, Run] = field(default_factory=dict)  # ... and after the sweep


def run(repo: Repo, *args: str, real: bool = False) -> Run:
    """A command in-process (click's CliRunner), or with `real` the real CLI in a subprocess."""
    result = repo.modelspec(*args) if real else repo.cli(*args)
    assert "Traceback" not in result.stderr, result.stderr
    return Run(result.returncode, result.stdout, result.stderr)


def events(repo: Repo) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(repo.path / ".modelspec" / "registry.db")) as db:
        return db.execute("SELECT * FROM events ORDER BY seq").fetchall()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    repo = Repo(tmp_path_factory.mktemp("retention") / "repo")
    make(repo, grace="1h")
    repo.write("specs/gcm.yaml", SPEC.replace("keep_aliased: true", "keep_aliased: false"), dedent=False)
    repo.write("modelspec.yaml", 'retention:\n  schedule: "0 3 * * *"\n')  # the default grace: 1h
    repo.commit("keep_aliased: false, default grace")
    for i in range(6):  # the first build through the real CLI, end to end
        repo.build_json("specs/gcm.yaml", f"prep.v={i}", f"score.auc={AUCS[i]}", in_process=i > 0)
    repo.cli("promote", "gcm@1.0.0", "production", check=True)
    repo.cli("promote", "gcm@1.0.2", "production", "--weight", "0.1", check=True)
    repo.cli("promote", "gcm@1.0.3", "staging", check=True)
    repo.cli("promote", "gcm@1.0.5", "staging", check=True)
    repo.cli("pin", "gcm@1.0.4", check=True)
    repo.cli("reproduce", "gcm@1.0.5", check=True)
    return repo


def test_read_only_commands_leave_the_audit_log_unchanged(ws: Repo) -> None:
    before = events(ws)
    commands = [
        ("versions", "gcm"),
        ("versions", "gcm", "--json"),
        ("show", "gcm@1.0.3"),
        ("show", "gcm@1.0.3", "--json"),
        ("diff", "gcm@1.0.3", "gcm@1.0.4"),
        ("lineage", "gcm@1.0.3"),
        ("du",),
        ("du", "--json"),
        ("gc", "--dry-run"),
        ("gc", "--dry-run", "--json"),
        ("audit",),
        ("audit", "--verify"),
        ("verify", "gcm@1.0.3"),
        ("verify", "--all"),
        ("deploy-config", "gcm"),
        ("alias", "history", "gcm", "production"),
    ]
    for command in commands:
        assert run(ws, *command).code == 0, command
        assert events(ws) == before, f"modelspec {' '.join(command)} wrote to the audit log"


@pytest.fixture(scope="module")
def swept(ws: Repo) -> Swept:
    result = Swept(ws)
    result.within_grace["dry-run"] = run(ws, "gc", "--dry-run")
    result.within_grace["gc"] = run(ws, "gc", real=True)  # the real CLI, end to end
    result.within_grace["gc-json"] = run(ws, "gc", "--json")
    result.within_grace["export"] = run(ws, "export", "gcm@1.0.3", "out-1.0.3")
    result.within_grace["reproduce"] = run(ws, "reproduce", "gcm@1.0.3")
    ws.write("modelspec.yaml", 'retention:\n  schedule: "0 3 * * *"\n  grace: 0s\n')
    ws.commit("grace 0s")
    result.after["gc"] = run(ws, "gc", "--json")
    return result


def test_gc_within_grace_says_what_grace_holds_and_until_when(swept: Swept) -> None:
    for label in ("dry-run", "gc"):
        said = swept.within_grace[label]
        assert said.code == 0
        assert "younger than the grace period (1h)" in said.out, said.out
        assert "the earliest can be freed after 20" in said.out and "UTC" in said.out
    grace = json.loads(swept.within_grace["gc-json"].out)["grace"]
    assert grace["seconds"] == 3600 and grace["objects"] > 0 and grace["bytes"] > 0
    assert grace["earliest_free"] > 0


def test_retired_means_gone_for_export_and_reproduce_alike_even_within_grace(swept: Swept) -> None:
    export, reproduce = swept.within_grace["export"], swept.within_grace["reproduce"]
    assert "retired gcm@1.0.3: not among the last 2" in swept.within_grace["gc"].out
    assert export.code == 2 and "gcm@1.0.3 is retired" in export.err
    assert reproduce.code == 2 and "gcm@1.0.3 is retired by retention" in reproduce.err, reproduce.err
    assert not (swept.repo.path / "out-1.0.3").exists()


def test_an_alias_target_is_never_swept_and_keep_aliased_governs_previous_targets(swept: Swept) -> None:
    done = json.loads(swept.after["gc"].out)
    assert done["bytes"] > 0
    shown = {v["version"]: v["status"] for v in json.loads(run(swept.repo, "versions", "gcm", "--json").out)}
    assert shown == {
        "1.0.0": "active",  # production, weight 0.9
        "1.0.1": "active",
        "1.0.2": "active",  # production's canary
        "1.0.3": "retired",  # a previous target of staging, not protected with keep_aliased: false
        "1.0.4": "active",
        "1.0.5": "active",
    }
    document = json.loads(run(swept.repo, "deploy-config", "gcm").out)
    paths = [a["path"] for targets in document["aliases"].values() for t in targets for a in t["artifacts"].values()]
    assert len(paths) == 6 and all(Path(p).exists() for p in paths)


def test_deploy_config_never_names_a_missing_file(swept: Swept) -> None:
    document = json.loads(run(swept.repo, "deploy-config", "gcm", "staging").out)
    path = Path(document["aliases"]["staging"][0]["artifacts"]["score.model"]["path"])
    path.chmod(0o644)
    path.rename(path.with_name("moved-away"))
    try:
        result = run(swept.repo, "deploy-config", "gcm", "staging")
        assert result.code == 1 and result.out == ""
        assert "gcm@staging serves gcm@1.0.5, whose artifact score.model" in result.err
        assert "is missing from the store" in result.err
    finally:
        path.with_name("moved-away").rename(path)
        path.chmod(0o444)


def test_a_retired_version_keeps_what_show_diff_and_lineage_need(swept: Swept) -> None:
    for command in (("diff", "gcm@1.0.3", "gcm@1.0.4"), ("show", "gcm@1.0.3"), ("lineage", "gcm@1.0.3")):
        result = run(swept.repo, *command)
        assert result.code == 0, (command, result.err)
    diff = json.loads(run(swept.repo, "diff", "gcm@1.0.3", "gcm@1.0.4", "--json").out)
    assert diff["config"]["prep.v"] == [3, 4]


def test_verify_of_a_retired_version_is_not_corruption(swept: Swept) -> None:
    result = run(swept.repo, "verify", "gcm@1.0.3")
    assert result.code == 0, result.out
    assert "gcm@1.0.3 was retired on 20" in result.out and "its artifacts were removed" in result.out
    assert "not among the last 2" in result.out and result.out.rstrip().endswith(": ok")
    report = json.loads(run(swept.repo, "verify", "gcm@1.0.3", "--json").out)
    assert report["ok"] and report["removed_by_retention"] > 0 and report["missing"] == []
    assert run(swept.repo, "verify", "--all").code == 0


def test_pin_refuses_a_retired_version_and_pins_are_shown(swept: Swept) -> None:
    repo = swept.repo
    versions = json.loads(run(repo, "versions", "gcm", "--json").out)
    retired = next(v["ref"] for v in versions if v["status"] == "retired")
    refused = run(repo, "pin", retired)
    assert refused.code == 2 and f"{retired} cannot be pinned: it was retired" in refused.err
    assert {v["version"]: v["pinned"] for v in versions}["1.0.4"] is True
    assert not any(v["pinned"] for v in versions if v["version"] != "1.0.4")
    table = run(repo, "versions", "gcm").out
    assert next(line for line in table.splitlines() if line.startswith("1.0.4")).rstrip().endswith("active, pinned")
    shown = json.loads(run(repo, "show", "gcm@1.0.4", "--json").out)
    assert shown["pinned"]["actor"] == shown["author"] and shown["pinned"]["time"] > 0
    assert json.loads(run(repo, "show", "gcm@1.0.5", "--json").out)["pinned"] is None
    assert "  pinned       20" in run(repo, "show", "gcm@1.0.4").out


def test_text_show_prints_the_reproduction_verdicts(swept: Swept) -> None:
    text = run(swept.repo, "show", "gcm@1.0.5").out
    author = json.loads(run(swept.repo, "show", "gcm@1.0.5", "--json").out)["author"]
    section = text[text.index("  reproductions:") :].splitlines()
    assert section[1].strip().startswith("identical  20") and section[1].rstrip().endswith(f"UTC by {author}")
    assert "reproductions: none" in run(swept.repo, "show", "gcm@1.0.1").out


def test_gc_removes_lock_files_no_build_holds(swept: Swept) -> None:
    assert "stale lock file" in swept.within_grace["gc"].out  # the first gc removed the builds' locks
    locks = swept.repo.path / ".modelspec" / "locks"
    assert list(locks.glob("*.lock")) == []
    swept.repo.build_json("specs/gcm.yaml", "prep.v=9", "score.auc=0.52", in_process=True)
    stale = sorted(locks.glob("*.lock"))
    assert stale, "builds leave a lock file per action key"
    held = locks / "f00d.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); sys.stdin.read()",
            str(held),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = run(swept.repo, "gc")
        assert result.code == 0 and f"removed {plural(len(stale), 'stale lock file')}" in result.out
        assert sorted(locks.glob("*.lock")) == [held]  # a running build's lock stays
        with open(held, "a") as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        holder.communicate("")


def test_every_hint_about_a_retired_version_names_a_command_that_works(swept: Swept) -> None:
    repo = swept.repo
    refused = run(repo, "rollback", "gcm", "staging")
    assert refused.code == 2 and "artifacts were retired" in refused.err
    assert "modelspec reproduce" not in refused.err
    assert "`modelspec versions gcm`" in refused.err and "`modelspec show gcm@1.0.3`" in refused.err
    assert run(repo, "versions", "gcm").code == 0 and run(repo, "show", "gcm@1.0.3").code == 0
    # The hint's rebuild: the spec at its commit with the params `show` lists revives the version.
    params = json.loads(run(repo, "show", "gcm@1.0.3", "--json").out)["params"]
    commit = json.loads(run(repo, "show", "gcm@1.0.3", "--json").out)["commit"]
    assert commit[:12] in refused.err and "`modelspec build specs/gcm.yaml`" in refused.err
    gone = run(repo, "reproduce", "gcm@1.0.3")
    assert gone.code == 2 and "modelspec pin" not in gone.err and "`modelspec show gcm@1.0.3`" in gone.err
    overrides = [f"{k}={v}" for k, v in params.items()]
    revived = repo.build_json("specs/gcm.yaml", *overrides, in_process=True)
    assert revived["versions"]["gcm"]["ref"] == "gcm@1.0.3" and revived["versions"]["gcm"]["new"] is False
    assert revived["versions"]["gcm"]["revived"]["status"] == "retired"
    assert run(repo, "rollback", "gcm", "staging").code == 0
    run(repo, "promote", "gcm@1.0.5", "staging")  # back as it was
