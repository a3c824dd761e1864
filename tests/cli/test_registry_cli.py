"""The registry through the command line, on real builds of a small pipeline.

A handful of real builds (real git, bubblewrap, subprocesses) are made once for the module
and shared by the tests below:

    pipe@1.3.0  a.v=1                       (built twice more: the same version)
    pipe@1.3.1  a.v=2
    pipe@1.3.2  a.v=3 ┐ two builds started at once
    pipe@1.3.3  a.v=4 ┘ (which gets which number is a race)
    pipe@1.3.4  a.v=1, new data and new code of stage a (a second commit)
    consumer@2.0.0  reads pipe's artifact d.out   ─▶ lineage pipe@1.3.4 → consumer@2.0.0

Builds, failures and exit codes run the real CLI in a subprocess; read-only queries run
in-process through click's CliRunner, which keeps the module fast.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import GIT_ENV, Repo

from modelspec.cli import main
from modelspec.digest import digest_file
from modelspec.registry.audit import event_digest
from modelspec.registry.registry import Registry

PIPE = """\
modelspec: 1
name: pipe
version: "{version}"
code: {{repo: ..}}
data:
  raw: {{path: data/raw.txt}}
config: {{dir: conf}}
stages:
  a:
    cmd: sh -c 'head -n 1 ${{inputs.raw}} > ${{outputs.out}}; echo a=${{config.a.v}} >> ${{outputs.out}}'
    code: [src/a.sh]
    inputs: [raw]
    params: [a]
    outputs: {{out: a.txt}}
  d:
    cmd: sh src/d.sh ${{inputs.a.out}} ${{outputs.out}} ${{outputs.metrics}} ${{config.a.v}}
    code: [src/d.sh]
    inputs: [a.out]
    params: [a]
    outputs: {{out: d.txt, metrics: metrics.json}}
    metrics: metrics
artifacts: [d.out]
"""

# auc is 0.9 followed by the digits of a.v: 0.91, 0.92, ...
D_SH = """\
cat "$1" > "$2"
printf '{"auc": 0.9%s, "f1": 0.5}\\n' "$4" > "$3"
"""

CONSUMER = """\
modelspec: 1
name: consumer
version: "2.0"
code: {repo: ..}
data:
  upstream: {spec: pipe, output: d.out}
stages:
  use:
    cmd: sh -c 'cat ${inputs.upstream} > ${outputs.out}'
    inputs: [upstream]
    outputs: {out: used.txt}
artifacts: [use.out]
"""


@dataclass
class Workspace:
    repo: Repo
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)  # label → `build --json` output
    texts: dict[str, str] = field(default_factory=dict)  # label → text output of a build
    first_commit: str = ""
    second_commit: str = ""

    @property
    def author(self) -> str:
        """Who modelspec records as acting: the author git would record (the tests set
        GIT_AUTHOR_NAME), else the OS user."""
        return GIT_ENV["GIT_AUTHOR_NAME"]

    @property
    def db(self) -> Path:
        return self.repo.path / ".modelspec" / "registry.db"

    def ref(self, label: str, name: str = "pipe") -> str:
        return str(self.builds[label]["versions"][name]["ref"])

    def cli(self, *args: str, code: int = 0) -> Any:
        """Run a command in-process; JSON output parsed when --json is given."""
        runner = CliRunner()
        with contextlib.chdir(self.repo.path):
            result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, f"modelspec {' '.join(args)} → {result.exit_code}:\n{result.output}"
        if "--json" in args or (args[0] == "deploy-config" and code == 0):
            return json.loads(result.stdout)
        return result.output

    def fails(self, *args: str, code: int) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in a subprocess, expecting a clean failure: an exit code, no traceback."""
        result = self.repo.modelspec(*args)
        assert result.returncode == code, f"{result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr + result.stdout
        return result

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.db)) as conn, conn:
            return conn.execute(statement, params).fetchall()


def _popen_build(repo: Repo, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelspec", "build", "specs/pipe.yaml", *args, "--json"],
        cwd=repo.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MODELSPEC_HOME", raising=False)
        for key, value in GIT_ENV.items():
            mp.setenv(key, value)
        repo = Repo(tmp_path_factory.mktemp("registry-cli") / "repo")
        repo.write("specs/pipe.yaml", PIPE.format(version="1.3"), dedent=False)
        repo.write("specs/consumer.yaml", CONSUMER, dedent=False)
        repo.write("data/raw.txt", "first\nlast\n")
        repo.write("conf/config.yaml", "a: {v: 1}\nunused: {v: 1}\n")
        repo.write("src/a.sh", "# code of stage a\n")
        repo.write("src/d.sh", D_SH, dedent=False)
        w = Workspace(repo, first_commit=repo.commit("pipeline"))

        w.builds["base"] = repo.build_json("specs/pipe.yaml")
        w.texts["again"] = repo.modelspec("build", "specs/pipe.yaml", check=True).stdout
        w.builds["unused"] = repo.build_json("specs/pipe.yaml", "unused.v=5")
        w.builds["a2"] = repo.build_json("specs/pipe.yaml", "a.v=2")
        both = [_popen_build(repo, "a.v=3"), _popen_build(repo, "a.v=4")]
        for label, proc in zip(("a3", "a4"), both, strict=True):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, out[-4000:] + err
            w.builds[label] = json.loads(out)
        repo.write("data/raw.txt", "FIRST\nlast\n")
        repo.write("src/a.sh", "# code of stage a, revised\n")
        w.second_commit = repo.commit("new data and code")
        w.builds["changed"] = repo.build_json("specs/pipe.yaml")
        w.builds["consumer"] = repo.build_json("specs/consumer.yaml")
        yield w


# -- versions -----------------------------------------------------------------------------------


def test_builds_register_input_addressed_versions(ws: Workspace) -> None:
    assert ws.builds["base"]["versions"] == {"pipe": {"ref": "pipe@1.3.0", "new": True}}
    # The same inputs again: nothing registered, and the build says which version it is.
    assert "already registered as pipe@1.3.0" in ws.texts["again"]
    # A config key that no stage reads is not an input: the same version.
    assert ws.builds["unused"]["versions"] == {"pipe": {"ref": "pipe@1.3.0", "new": False}}
    assert ws.builds["a2"]["versions"] == {"pipe": {"ref": "pipe@1.3.1", "new": True}}
    # Two builds of different content at once: both succeed, with different numbers.
    concurrent = {ws.ref("a3"), ws.ref("a4")}
    assert concurrent == {"pipe@1.3.2", "pipe@1.3.3"}
    assert all(ws.builds[label]["versions"]["pipe"]["new"] for label in ("a3", "a4"))
    assert ws.builds["changed"]["versions"] == {"pipe": {"ref": "pipe@1.3.4", "new": True}}
    assert ws.builds["consumer"]["versions"] == {
        "consumer": {"ref": "consumer@2.0.0", "new": True},
        "pipe": {"ref": "pipe@1.3.4", "new": False},
    }
    rows = ws.cli("versions", "pipe", "--json")
    assert [r["version"] for r in rows] == ["1.3.0", "1.3.1", "1.3.2", "1.3.3", "1.3.4"]
    assert len({r["content_id"] for r in rows}) == 5
    by_ref = {r["ref"]: r for r in rows}
    assert by_ref[ws.ref("a3")]["metrics"] == {"auc": 0.93, "f1": 0.5}
    assert by_ref[ws.ref("a4")]["metrics"] == {"auc": 0.94, "f1": 0.5}
    assert all(r["status"] == "active" and r["content_id"].startswith("pipe-") for r in rows)
    # Only builds were recorded in the audit log so far: five of pipe, one of consumer.
    events = ws.cli("audit", "--json")["events"]
    assert sorted(e["subject"] for e in events if e["kind"] == "build") == [
        "consumer@2.0.0",
        *[f"pipe@1.3.{i}" for i in range(5)],
    ]


def test_a_pinned_version_naming_other_content_is_an_error_that_proposes_a_bump(ws: Workspace) -> None:
    spec = ws.repo.path / "specs" / "pipe.yaml"
    try:
        spec.write_text(PIPE.format(version="1.3.0"))
        result = ws.fails("build", "specs/pipe.yaml", "a.v=9", code=2)
        assert "error: pipe@1.3.0 is already registered with other content" in result.stderr
        assert 'set version: "1.3.5" for a patch, "1.4.0" for a minor release' in result.stderr
    finally:
        spec.write_text(PIPE.format(version="1.3"))
    assert len(ws.cli("versions", "pipe", "--json")) == 5


def test_versions_where_and_tags(ws: Workspace) -> None:
    assert [r["version"] for r in ws.cli("versions", "pipe", "--where", "auc>0.925", "--json")] == ["1.3.2", "1.3.3"]
    assert [r["version"] for r in ws.cli("versions", "pipe", "--where", "auc<0.915, f1>=0.5", "--json")] == [
        "1.3.0",
        "1.3.4",
    ]
    assert ws.cli("versions", "pipe", "--where", "auc>0.99", "--json") == []
    tagged = ws.cli("tag", "pipe@1.3.1", "team=risk", "stage=candidate", "--json")
    assert tagged == {"ref": "pipe@1.3.1", "tags": {"stage": "candidate", "team": "risk"}}
    ws.cli("tag", ws.ref("a3"), "stage=candidate")
    assert [r["ref"] for r in ws.cli("versions", "pipe", "--tag", "stage=candidate", "--json")] == [
        "pipe@1.3.1",
        ws.ref("a3"),
    ]
    both = ws.cli("versions", "pipe", "--tag", "stage=candidate", "--tag", "team=risk", "--json")
    assert [r["ref"] for r in both] == ["pipe@1.3.1"]
    assert ws.cli("show", "pipe@1.3.1", "--json")["tags"] == {"stage": "candidate", "team": "risk"}
    text = ws.cli("versions", "pipe")
    assert "1.3.4" in text and "0.94" in text and "pipe-" in text
    # Mistakes are exit 2 with a message.
    error = ws.cli("versions", "nosuch", "--json", code=2)
    assert error["message"] == "no model named 'nosuch'" and "pipe" in error["hint"]
    assert "cannot read the condition" in ws.cli("versions", "pipe", "--where", "auc>>1", "--json", code=2)["message"]
    assert ws.cli("tag", "pipe@1.3.1", "novalue", "--json", code=2)["message"] == "'novalue' is not KEY=VALUE"


def test_show_resolves_every_kind_of_reference(ws: Workspace) -> None:
    info = ws.cli("show", "pipe@1.3.1", "--json")
    short, full = info["short_id"], info["content_id"]
    hexpart = full.removeprefix("blake3:")
    assert short == f"pipe-{hexpart[:10]}"
    for ref in ("pipe@1.3.1", f"pipe@{hexpart[:8]}", short, f"pipe@{short}"):
        assert ws.cli("show", ref, "--json")["ref"] == "pipe@1.3.1", ref
    assert ws.cli("show", "pipe@1.3", "--json")["ref"] == "pipe@1.3.4"
    assert ws.cli("show", "pipe@latest", "--json")["ref"] == "pipe@1.3.4"
    assert ws.cli("show", "pipe", "--json")["ref"] == "pipe@1.3.4"
    ws.cli("promote", "pipe@1.3.2", "staging")
    assert ws.cli("show", "pipe@staging", "--json")["ref"] == "pipe@1.3.2"
    missing = ws.cli("show", "pipe@1.9.0", "--json", code=2)
    assert missing["message"] == "no version pipe@1.9.0"
    assert ws.cli("show", "pipe@not/a/ref", "--json", code=2)["error"] == "UsageError"

    # Everything recorded about the version.
    assert info["version"] == "1.3.1" and info["name"] == "pipe" and info["status"] == "active"
    assert info["commit"] == ws.first_commit
    assert info["author"] == ws.author
    assert info["hermetic"] is True and info["dirty"] is False
    assert info["spec"] == "specs/pipe.yaml"
    assert info["params"] == {"a.v": 2}
    assert info["metrics"] == {"auc": 0.92, "f1": 0.5}
    assert info["data"]["raw"]["path"] == "data/raw.txt" and info["data"]["raw"]["digest"].startswith("blake3:")
    assert set(info["stages"]) == {"a", "d"}
    for stage in info["stages"].values():
        assert {"key", "log", "seconds", "hermetic"} <= set(stage)
    artifact = info["artifacts"]["d.out"]
    assert artifact["type"] == "file" and artifact["size"] == len("first\na=2\n")
    assert info["lineage"]["upstream"] == [
        {"kind": "data", "name": "raw", "ref": "data/raw.txt", "digest": info["data"]["raw"]["digest"]}
    ]
    assert info["lineage"]["downstream"] == []
    lock_object = ws.repo.path / ".modelspec" / "objects" / info["lock"][7:9] / info["lock"][7:]
    lock = json.loads(lock_object.read_bytes())
    assert lock["config"]["a"] == {"v": 2} and lock["code"]["commit"] == ws.first_commit
    text = ws.cli("show", "pipe@1.3.1")
    assert "pipe@1.3.1" in text and "a.v = 2" in text and "← data raw: data/raw.txt" in text


def test_diff_code_data_config_and_metrics(ws: Workspace) -> None:
    config_only = ws.cli("diff", "pipe@1.3.0", "pipe@1.3.1", "--json")
    assert (config_only["from"], config_only["to"]) == ("pipe@1.3.0", "pipe@1.3.1")
    assert config_only["config"] == {"a.v": [1, 2]}
    assert config_only["data"] == {}
    assert config_only["code"] == {
        "from": ws.first_commit,
        "to": ws.first_commit,
        "stages_changed": [],
        "paths_changed": [],
    }
    assert config_only["environment"] == {"from": None, "to": None, "added": {}, "removed": {}, "changed": {}}
    assert config_only["metrics"] == {
        "auc": {"from": 0.91, "to": 0.92, "delta": 0.01},
        "f1": {"from": 0.5, "to": 0.5, "delta": 0.0},
    }
    code_and_data = ws.cli("diff", "pipe@1.3.0", "pipe@1.3.4", "--json")
    assert code_and_data["code"] == {
        "from": ws.first_commit,
        "to": ws.second_commit,
        "stages_changed": ["a"],
        "paths_changed": ["src/a.sh"],
    }
    raw = code_and_data["data"]["raw"]
    assert raw["from"] != raw["to"] and raw["to"] == ws.cli("show", "pipe@1.3.4", "--json")["data"]["raw"]["digest"]
    assert code_and_data["config"] == {}
    assert code_and_data["metrics"]["auc"]["delta"] == 0.0
    text = ws.cli("diff", "pipe@1.3.0", "pipe@1.3.4")
    assert "changed src/a.sh" in text and "raw:" in text and "config: unchanged" in text
    assert ws.cli("diff", "pipe@1.3.0", "pipe@7.0.0", "--json", code=2)["message"] == "no version pipe@7.0.0"


def test_lineage_links_specs_both_ways(ws: Workspace) -> None:
    downstream = ws.cli("lineage", "consumer@2.0.0", "--json")
    artifact = ws.cli("show", "pipe@1.3.4", "--json")["artifacts"]["d.out"]["digest"]
    assert downstream == {
        "ref": "consumer@2.0.0",
        "upstream": [
            {"kind": "spec", "name": "upstream", "ref": "pipe:d.out", "digest": artifact, "version": "pipe@1.3.4"}
        ],
        "downstream": [],
    }
    upstream = ws.cli("lineage", "pipe@1.3.4", "--json")
    assert upstream["downstream"] == ["consumer@2.0.0"]
    assert [item["kind"] for item in upstream["upstream"]] == ["data"]
    assert ws.cli("lineage", "pipe@1.3.0", "--json")["downstream"] == []
    shown = ws.cli("show", "consumer@2.0.0", "--json")["lineage"]
    assert shown == {k: downstream[k] for k in ("upstream", "downstream")}
    text = ws.cli("lineage", "pipe@1.3.4")
    assert "→ consumer@2.0.0" in text


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def test_promote_rollback_history_and_deploy_config(ws: Workspace) -> None:
    assert ws.cli("promote", "pipe@1.3.0", "production", "--json") == {
        "alias": "pipe@production",
        "targets": [["1.3.0", 1.0]],
    }
    assert ws.cli("promote", "pipe@1.3.1", "production", "--weight", "0.25", "--json")["targets"] == [
        ["1.3.0", 0.75],
        ["1.3.1", 0.25],
    ]
    config = ws.cli("deploy-config", "pipe", "production")
    assert config["model"] == "pipe" and list(config["aliases"]) == ["production"]
    served = config["aliases"]["production"]
    assert [(s["version"], s["weight"]) for s in served] == [("1.3.0", 0.75), ("1.3.1", 0.25)]
    for target in served:
        artifact = target["artifacts"]["d.out"]
        assert digest_file(artifact["path"]) == artifact["digest"]  # a real, intact object
    assert Path(served[1]["artifacts"]["d.out"]["path"]).read_text() == "first\na=2\n"
    assert "production" in ws.cli("deploy-config", "pipe")["aliases"]  # every alias of the model
    assert "no alias pipe@canary" in ws.cli("deploy-config", "pipe", "canary", code=2)
    aliases = {r["version"]: r["aliases"] for r in ws.cli("versions", "pipe", "--json")}
    assert "production" in aliases["1.3.0"] and "production" in aliases["1.3.1"]
    # A split alias names its primary target (the largest weight) and lists every target.
    assert ws.cli("show", "pipe@production", "--json")["traffic"] == {
        "alias": "pipe@production",
        "targets": [
            {"ref": "pipe@1.3.0", "weight": 0.75, "primary": True},
            {"ref": "pipe@1.3.1", "weight": 0.25, "primary": False},
        ],
    }

    assert ws.cli("rollback", "pipe", "production", "--json") == {
        "alias": "pipe@production",
        "targets": [["1.3.0", 1.0]],
    }
    assert ws.cli("show", "pipe@production", "--json")["ref"] == "pipe@1.3.0"
    ws.cli("promote", "pipe@1.3.1", "production")

    history = ws.cli("alias", "history", "pipe", "production", "--json")
    moves = history["history"]
    assert [(h["action"], h["from"], h["to"]) for h in moves] == [
        ("promote", [], [["1.3.0", 1.0]]),
        ("promote", [["1.3.0", 1.0]], [["1.3.0", 0.75], ["1.3.1", 0.25]]),
        ("rollback", [["1.3.0", 0.75], ["1.3.1", 0.25]], [["1.3.0", 1.0]]),
        ("promote", [["1.3.0", 1.0]], [["1.3.1", 1.0]]),
    ]
    assert all(h["actor"] == ws.author for h in moves)
    times = [h["time"] for h in moves]
    between = (times[1] + times[2]) / 2

    def at(date: str) -> list[list[Any]]:
        return list(ws.cli("alias", "history", "pipe", "production", "--at", date, "--json")["at"]["targets"])

    assert at("2000-01-01") == []
    assert at(_iso(between)) == [["1.3.0", 0.75], ["1.3.1", 0.25]]
    assert at("2999-12-31T23:59") == [["1.3.1", 1.0]]
    bad_date = ws.cli("alias", "history", "pipe", "production", "--at", "soon", "--json", code=2)
    assert "is not a date" in bad_date["message"]

    # The previous target's artifacts were retired by retention: rollback refuses and says why.
    # (Retired as gc does it, audited: an UPDATE behind the log's back is what audit --verify names.)
    registry = Registry.at(ws.db, ws.db.parent / "registry-head")
    try:
        assert registry.retire({registry.resolve("pipe@1.3.0").id: "keep_last: 2"}, ws.author) == []
    finally:
        registry.close()
    refused = ws.fails("rollback", "pipe", "production", code=2)
    assert "cannot roll back pipe@production to pipe@1.3.0: its artifacts were retired (keep_last: 2)" in refused.stderr
    assert "modelspec reproduce" not in refused.stderr  # it refuses retired versions: the hint names what works
    assert "`modelspec versions pipe`" in refused.stderr and "`modelspec build specs/pipe.yaml`" in refused.stderr
    assert ws.cli("show", "pipe@production", "--json")["ref"] == "pipe@1.3.1"
    assert "is retired" in ws.cli("promote", "pipe@1.3.0", "canary", "--json", code=2)["message"]
    assert "is retired" in ws.cli("export", "pipe@1.3.0", "out-retired", "--json", code=2)["message"]
    shown = ws.cli("show", "pipe@1.3.0", "--json")
    assert (shown["status"], shown["status_reason"]) == ("retired", "keep_last: 2")

    events = ws.cli("audit", "--json")["events"]
    kinds = [(e["kind"], e["subject"]) for e in events if e["subject"].endswith("production")]
    assert kinds == [
        ("promote", "pipe@production"),
        ("promote", "pipe@production"),
        ("rollback", "pipe@production"),
        ("promote", "pipe@production"),
    ]


def test_export_and_a_corrupt_object(ws: Workspace) -> None:
    out = ws.repo.path / "exported"
    manifest = ws.cli("export", "pipe@1.3.4", str(out), "--json")
    assert (out / "d" / "d.txt").read_text() == "FIRST\na=1\n"
    on_disk = json.loads((out / "manifest.json").read_text())
    assert {k: v for k, v in on_disk.items() if k != "lock"} == manifest
    artifact = on_disk["artifacts"]["d.out"]
    assert artifact["path"] == "d/d.txt"
    assert (
        artifact["digest"]
        == digest_file(out / "d" / "d.txt")
        == ws.cli("show", "pipe@1.3.4", "--json")["artifacts"]["d.out"]["digest"]
    )
    assert (on_disk["name"], on_disk["version"]) == ("pipe", "1.3.4")
    assert on_disk["metrics"] == {"auc": 0.91, "f1": 0.5}
    assert on_disk["lock"]["code"]["commit"] == ws.second_commit
    assert on_disk["lock"]["data"]["raw"]["digest"] == ws.cli("show", "pipe@1.3.4", "--json")["data"]["raw"]["digest"]
    assert "already exists" in ws.cli("export", "pipe@1.3.4", str(out), "--json", code=2)["message"]

    # Corrupt the stored object of one version's artifact: export fails clearly, and the
    # object is quarantined, never served.
    victim = ws.ref("a4")
    digest = ws.cli("show", victim, "--json")["artifacts"]["d.out"]["digest"]
    hexpart = digest.removeprefix("blake3:")
    stored = ws.repo.path / ".modelspec" / "objects" / hexpart[:2] / hexpart
    stored.chmod(0o644)
    stored.write_text("tampered\n")
    result = ws.fails("export", victim, str(ws.repo.path / "exported-corrupt"), code=1)
    assert f"error: cannot export {victim}: object {digest} is corrupt and was quarantined" in result.stderr
    assert not stored.exists()
    assert (ws.repo.path / ".modelspec" / "quarantine" / hexpart).read_text() == "tampered\n"
    assert not (ws.repo.path / "exported-corrupt" / "manifest.json").exists()


def test_audit_verify_detects_tampering(ws: Workspace) -> None:
    assert ws.cli("audit", "--verify", "--json")["ok"] is True
    assert "audit log intact" in ws.fails("audit", "--verify", code=0).stdout
    last = ws.sql("SELECT max(seq) FROM events")[0][0]
    assert last >= 6  # at least the six builds
    middle = last // 2

    def verify_names(problem_start: str, in_subprocess: bool = False) -> None:
        text = ws.fails("audit", "--verify", code=1).stdout if in_subprocess else ws.cli("audit", "--verify", code=1)
        assert f"TAMPERED: {problem_start}" in text, text
        assert ws.cli("audit", "--verify", "--json", code=1)["problem"].startswith(problem_start)

    def row(seq: int) -> tuple[Any, ...]:
        columns = "seq, time, kind, actor, subject, payload, prev, digest"
        return ws.sql(f"SELECT {columns} FROM events WHERE seq = ?", (seq,))[0]

    insert = "INSERT INTO events (seq, time, kind, actor, subject, payload, prev, digest) VALUES (?,?,?,?,?,?,?,?)"

    # An edited payload.
    original = row(middle)
    ws.sql("UPDATE events SET payload = ? WHERE seq = ?", ('{"metrics": {"auc": 0.99}}', middle))
    verify_names(f"event {middle} ({original[2]} {original[4]}) was edited", in_subprocess=True)
    ws.sql("UPDATE events SET payload = ? WHERE seq = ?", (original[5], middle))
    assert ws.cli("audit", "--verify", "--json")["ok"] is True

    # A deleted middle event.
    ws.sql("DELETE FROM events WHERE seq = ?", (middle,))
    verify_names(f"event {middle} is missing")
    ws.sql(insert, original)

    # An inserted event (the ones after it renumbered to make room).
    ws.sql("UPDATE events SET seq = seq + 1000 WHERE seq > ?", (middle,))
    ws.sql("UPDATE events SET seq = seq - 999 WHERE seq > 1000")
    forged = (middle + 1, original[1] + 1, "promote", "mallory", "pipe@production", "{}", original[7])
    ws.sql(insert, (*forged, event_digest(*forged)))  # a well-formed event, linked to the one before it
    verify_names(f"event {middle + 2} does not follow event {middle + 1}: an event was deleted or inserted")
    ws.sql("DELETE FROM events WHERE seq = ?", (middle + 1,))
    ws.sql("UPDATE events SET seq = seq + 1000 WHERE seq > ?", (middle,))
    ws.sql("UPDATE events SET seq = seq - 1001 WHERE seq > 1000")
    assert ws.cli("audit", "--verify", "--json")["ok"] is True

    # The newest event deleted.
    newest = row(last)
    ws.sql("DELETE FROM events WHERE seq = ?", (last,))
    verify_names(f"event {last} is missing")
    ws.sql(insert, newest)
    assert ws.cli("audit", "--verify", "--json")["ok"] is True
    assert [e["seq"] for e in ws.cli("audit", "--limit", "2", "--json")["events"]] == [last - 1, last]


def test_commands_without_a_registry_say_how_to_get_one(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "empty")
    result = repo.modelspec("versions", "pipe")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no registry in" in result.stderr and "modelspec build" in result.stderr
    assert os.listdir(repo.path) == [".git"]  # and nothing was created
