"""Retention and garbage collection on real workspaces: what is retired, what is freed,
and that nothing still needed is ever swept (kept versions, aliases, running builds)."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time

from conftest import Repo, states

SPEC = """\
modelspec: 1
name: gcm
version: "1.0"
code: {repo: ..}
data:
  raw: {path: data/raw.txt}
config: {dir: conf}
stages:
  prep:
    cmd: sh -c 'cat ${inputs.raw} > ${outputs.out}; echo ${config.prep.v} >> ${outputs.out}; sleep ${config.prep.sleep}'
    inputs: [raw]
    params: [prep]
    outputs: {out: prepared.txt}
  score:
    cmd: >-
      sh src/score.sh ${config.score.auc} ${inputs.prep.out}
      ${outputs.metrics} ${outputs.model} ${config.score.sleep}
    code: [src/score.sh]
    inputs: [prep.out]
    params: [score]
    outputs: {metrics: metrics.json, model: model.txt}
    metrics: metrics
artifacts: [score.model, score.metrics]
retention:
  keep_last: 2
  keep_best: {metric: auc, count: 1}
  keep_aliased: true
"""
SCORE = 'printf \'{"auc": %s}\\n\' "$1" > "$3"; cat "$2" > "$4"; echo model >> "$4"; sleep "$5"\n'
MANY_FILES = (
    'printf \'{"auc": %s}\\n\' "$1" > "$3"; mkdir "$4"; '
    'for i in $(seq 400); do echo "$i" > "$4/f$i"; done; cat "$2" > "$4/prepared"\n'
)
AUCS = [0.50, 0.90, 0.60, 0.70, 0.65, 0.55, 0.58, 0.52]


def make(repo: Repo, grace: str = "0s", schedule: str = "0 3 * * *") -> None:
    repo.write("specs/gcm.yaml", SPEC, dedent=False)
    repo.write("data/raw.txt", "raw\n" * 100)
    repo.write("src/score.sh", SCORE, dedent=False)
    repo.write("conf/config.yaml", "prep: {v: 0, sleep: 0}\nscore: {auc: 0.5, sleep: 0}\n")
    repo.write("modelspec.yaml", f'retention:\n  grace: {grace}\n  schedule: "{schedule}"\n')
    repo.commit("gc workspace")


def build_versions(repo: Repo, count: int) -> list[str]:
    refs = []
    for i in range(count):
        # The first build through the real CLI, end to end; the rest in-process.
        report = repo.build_json("specs/gcm.yaml", f"prep.v={i}", f"score.auc={AUCS[i]}", in_process=i > 0)
        refs.append(report["versions"]["gcm"]["ref"])
    return refs


def gc(repo: Repo, *args: str, real: bool = False) -> dict:
    """gc's JSON report: in-process, or with `real` from the real CLI in a subprocess."""
    run = repo.modelspec if real else repo.cli
    return json.loads(run("gc", *args, "--json", check=True).stdout)


def test_gc_retires_by_policy_frees_what_it_promised_and_kept_versions_reproduce(repo: Repo) -> None:
    make(repo)
    refs = build_versions(repo, 8)
    assert refs == [f"gcm@1.0.{i}" for i in range(8)]
    repo.cli("promote", "gcm@1.0.2", "production", check=True)
    repo.cli("promote", "gcm@1.0.3", "production", check=True)  # 1.0.2 becomes the previous target
    repo.cli("promote", "gcm@1.0.4", "staging", check=True)

    plan = gc(repo, "--dry-run")
    assert sorted(plan["retire"]) == ["gcm@1.0.0", "gcm@1.0.5"]
    assert plan["keep"]["gcm@1.0.1"] == ["keep_best 1 by auc"]
    assert plan["keep"]["gcm@1.0.2"] == ["previous target of alias production"]
    assert plan["keep"]["gcm@1.0.7"] == ["keep_last 2"]
    assert plan["bytes"] > 0
    assert json.loads(repo.cli("show", "gcm@1.0.0", "--json", check=True).stdout)["status"] == "active"

    usage = json.loads(repo.cli("du", "--json", check=True).stdout)
    assert usage["gc_would_free"] == plan["bytes"]
    versions = usage["models"]["gcm"]["versions"]
    assert versions["1.0.0"]["unique"] > 0 and versions["1.0.0"]["shared"] > 0  # raw data is shared

    done = gc(repo)
    assert done["dry_run"] is False
    assert sorted(done["retire"]) == sorted(plan["retire"])
    assert (done["objects"], done["bytes"]) == (plan["objects"], plan["bytes"])
    assert gc(repo, "--dry-run")["bytes"] == 0  # nothing left to free

    retired = json.loads(repo.cli("show", "gcm@1.0.0", "--json", check=True).stdout)
    assert retired["status"] == "retired" and "not among the last 2" in retired["status_reason"]
    assert repo.cli("verify", "--all", check=True).returncode == 0
    assert repo.cli("audit", "--verify", check=True).returncode == 0
    for ref in ("gcm@1.0.1", "gcm@1.0.2", "gcm@1.0.3", "gcm@1.0.4", "gcm@1.0.6", "gcm@1.0.7"):
        result = json.loads(repo.cli("reproduce", ref, "--json", check=True).stdout)
        assert result["verdict"] == "identical", ref
    gone = repo.cli("reproduce", "gcm@1.0.0")
    assert gone.returncode == 2 and "retired by retention" in gone.stderr and "Traceback" not in gone.stderr
    # The current build of the workspace is a root: building it again is a no-op.
    again = repo.build_json("specs/gcm.yaml", "prep.v=7", "score.auc=0.52", in_process=True)
    assert set(states(again).values()) == {"cached"}


def test_rollback_refuses_a_retired_previous_target(repo: Repo) -> None:
    make(repo)
    build_versions(repo, 4)
    repo.cli("promote", "gcm@1.0.0", "production", check=True)
    repo.cli("promote", "gcm@1.0.3", "production", check=True)
    repo.write("specs/gcm.yaml", SPEC.replace("keep_aliased: true", "keep_aliased: false"), dedent=False)
    repo.commit("no alias protection")  # gc reads the policy from the spec as it is now
    gc(repo)
    result = repo.cli("rollback", "gcm", "production")
    assert result.returncode == 2
    assert "artifacts were retired" in result.stderr and "gcm@1.0.0" in result.stderr


def test_pinned_versions_survive(repo: Repo) -> None:
    make(repo)
    build_versions(repo, 4)
    repo.cli("pin", "gcm@1.0.0", check=True)
    assert "gcm@1.0.0" in gc(repo)["keep"]
    repo.cli("unpin", "gcm@1.0.0", check=True)
    assert "gcm@1.0.0" in gc(repo)["retire"]


def test_gc_while_a_build_runs_keeps_what_the_build_needs(repo: Repo) -> None:
    make(repo)
    build_versions(repo, 3)  # 1.0.0 (prep.v=0) will be retired by keep_last 2 / keep_best
    # Reuse 1.0.0's cached prep output, then spend a while in score: gc runs meanwhile.
    log = repo.path / ".modelspec" / "logs" / "gcm" / "score.log"
    log.unlink()
    build = subprocess.Popen(
        [sys.executable, "-m", "modelspec", "build", "specs/gcm.yaml", "prep.v=0", "score.auc=0.51",
         "score.sleep=3", "--json"],
        cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not log.exists():  # score has started: prep's output was leased as a cache hit
        assert time.monotonic() < deadline
        time.sleep(0.05)
    collected = gc(repo)
    assert "gcm@1.0.0" in collected["retire"]
    out, err = build.communicate(timeout=120)
    assert build.returncode == 0, err
    report = json.loads(out)
    assert states(report) == {"gcm:prep": "cached", "gcm:score": "ran"}
    new = report["versions"]["gcm"]["ref"]
    assert repo.modelspec("verify", new).returncode == 0
    assert json.loads(repo.modelspec("reproduce", new, "--json", check=True).stdout)["verdict"] == "identical"


def test_sigkill_during_gc_then_gc_again_leaves_everything_consistent(repo: Repo) -> None:
    make(repo)
    # Outputs of many small files make each sweep long enough to be interrupted.
    repo.write("src/score.sh", MANY_FILES, dedent=False)
    repo.write("specs/gcm.yaml", SPEC.replace("model: model.txt", "model: model"), dedent=False)
    repo.commit("many files")
    rng = random.Random(7)
    for round_ in range(3):
        for i in range(3):
            repo.build_json("specs/gcm.yaml", f"prep.v={round_ * 10 + i}", f"score.auc={AUCS[i]}")
        proc = subprocess.Popen([sys.executable, "-m", "modelspec", "gc"], cwd=repo.path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        gc(repo, real=True)  # the next gc completes (every process here is a real one: none may leave a file)
        assert repo.modelspec("verify", "--all").returncode == 0
        assert repo.modelspec("audit", "--verify").returncode == 0
        plan = gc(repo, "--dry-run", real=True)
        assert plan["bytes"] == 0 and plan["retire"] == {}
        for ref in plan["keep"]:
            assert repo.modelspec("verify", ref).returncode == 0, ref
        tmp = repo.path / ".modelspec" / "tmp"
        assert not tmp.exists() or list(tmp.iterdir()) == []


def test_only_one_gc_runs_at_a_time(repo: Repo) -> None:
    import fcntl

    make(repo)
    build_versions(repo, 1)
    with open(repo.path / ".modelspec" / "gc.run.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = repo.modelspec("gc")
    assert result.returncode == 2 and "another gc is running" in result.stderr


def test_schedule_install_prints_a_timer_and_a_crontab_line(repo: Repo) -> None:
    make(repo, schedule="*/15 2 * * 1-5")
    build_versions(repo, 1)
    systemd = repo.modelspec("schedule", "install", "--systemd", "--print", check=True).stdout
    assert "OnCalendar=Mon..Fri *-*-* 2:0/15:00" in systemd and "Persistent=true" in systemd
    assert f"WorkingDirectory={repo.path}" in systemd and "-m modelspec gc" in systemd
    cron = repo.modelspec("schedule", "install", "--cron", "--print", check=True).stdout.strip()
    assert cron.startswith("*/15 2 * * 1-5 cd ") and cron.endswith("2>&1") and "modelspec gc" in cron
    if shutil.which("systemd-analyze"):  # systemd itself accepts the OnCalendar= we wrote
        verified = subprocess.run(["systemd-analyze", "calendar", "Mon..Fri *-*-* 2:0/15:00"], capture_output=True)
        assert verified.returncode == 0 and b"Next elapse" in verified.stdout, verified.stderr


def test_daemon_once_runs_only_when_due(repo: Repo) -> None:
    make(repo)
    build_versions(repo, 3)
    first = repo.cli("daemon", "--once", check=True)
    assert "no run was due" in first.stdout  # a new daemon starts counting from now
    state = repo.path / ".modelspec" / "schedule.json"
    state.write_text(json.dumps({"last_run": time.time() - 3 * 86400}))  # three missed runs
    second = repo.cli("daemon", "--once", check=True)
    assert "gc: retired 1" in second.stdout
    audit = json.loads(repo.cli("audit", "--json", check=True).stdout)["events"]
    assert [e["kind"] for e in audit].count("schedule") == 1


def test_rebuilding_a_retired_version_revives_it(repo: Repo) -> None:
    make(repo)
    build_versions(repo, 4)
    assert "gcm@1.0.0" in gc(repo)["retire"]
    again = repo.build_json("specs/gcm.yaml", "prep.v=0", f"score.auc={AUCS[0]}", in_process=True)
    assert again["versions"]["gcm"]["ref"] == "gcm@1.0.0" and again["versions"]["gcm"]["new"] is False
    assert again["versions"]["gcm"]["revived"]["status"] == "retired"
    shown = json.loads(repo.cli("show", "gcm@1.0.0", "--json", check=True).stdout)
    assert shown["status"] == "active" and shown["status_reason"] == "rebuilt"
    assert repo.cli("verify", "gcm@1.0.0").returncode == 0
    events = json.loads(repo.cli("audit", "--json", check=True).stdout)["events"]
    assert events[-1]["kind"] == "revive" and events[-1]["subject"] == "gcm@1.0.0"
