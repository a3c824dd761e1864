"""Exact reproduction of historical versions, from what the store recorded."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import Repo

SPEC = """\
modelspec: 1
name: repro
version: "1.0"
code: {repo: ..}
data:
  raw: {path: data/raw.txt}
config: {dir: conf}
stages:
  prep:
    cmd: sh src/prep.sh ${inputs.raw} ${config.prep.factor} ${outputs.out}
    code: [src/prep.sh]
    inputs: [raw]
    params: [prep]
    outputs: {out: prepared.txt}
  score:
    cmd: sh src/score.sh ${inputs.prep.out} ${outputs.metrics} ${outputs.noise}
    code: [src/score.sh]
    inputs: [prep.out]
    outputs: {metrics: metrics.json, noise: noise.txt}
    metrics: metrics
artifacts: [prep.out, score.metrics]
"""
PREP = 'cat "$1" > "$3"; echo "factor=$2" >> "$3"\n'
SCORE = 'n=$(wc -l < "$1"); printf \'{"lines": %s}\\n\' "$n" > "$2"; echo stable > "$3"\n'


def make(repo: Repo) -> None:
    repo.write("specs/repro.yaml", SPEC, dedent=False)
    repo.write("src/prep.sh", PREP, dedent=False)
    repo.write("src/score.sh", SCORE, dedent=False)
    repo.write("data/raw.txt", "a\nb\n")
    repo.write("conf/config.yaml", "prep: {factor: 1}\n")
    repo.commit("v1")


def reproduce(repo: Repo, *args: str) -> tuple[int, dict]:
    result = repo.modelspec("reproduce", *args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}


def snapshot(repo: Repo) -> dict[str, bytes]:
    files = {}
    for root, dirs, names in os.walk(repo.path):
        dirs[:] = [d for d in dirs if d not in (".git", ".modelspec")]
        for name in names:
            path = Path(root, name)
            files[str(path.relative_to(repo.path))] = path.read_bytes()
    return files


def test_reproduce_an_old_version_after_code_data_and_config_changed(repo: Repo) -> None:
    make(repo)
    v1 = repo.build_json("specs/repro.yaml")["versions"]["repro"]["ref"]
    repo.write("src/prep.sh", PREP.replace("factor=", "f="), dedent=False)
    repo.write("data/raw.txt", "a\nb\nc\n")
    repo.write("conf/config.yaml", "prep: {factor: 2}\n")
    repo.commit("v2")
    v2 = repo.build_json("specs/repro.yaml")["versions"]["repro"]["ref"]
    assert (v1, v2) == ("repro@1.0.0", "repro@1.0.1")
    before = snapshot(repo)

    code, report = reproduce(repo, v1, "--into", str(repo.path.parent / "out"))
    assert code == 0 and report["verdict"] == "identical", report
    assert report["differing"] == [] and len(report["outputs"]) == 3
    assert snapshot(repo) == before  # the workspace was not touched
    assert (repo.path.parent / "out/prep/prepared.txt").read_text() == "a\nb\nfactor=1\n"

    # The registry remembers the reproduction, and the audit log has it.
    shown = json.loads(repo.modelspec("show", v1, "--json", check=True).stdout)
    assert [r["verdict"] for r in shown["reproductions"]] == ["identical"]
    audit = json.loads(repo.modelspec("audit", "--json", check=True).stdout)
    assert audit["events"][-1]["kind"] == "reproduce"

    # Delete the branch and rewrite history: the commit of v1 is gone from git.
    old_commit = shown["commit"]
    repo.git("checkout", "-q", "--orphan", "rewritten")
    repo.git("commit", "-q", "-m", "squashed")
    repo.git("branch", "-D", "main")
    repo.git("reflog", "expire", "--expire=now", "--all")
    repo.git("gc", "-q", "--prune=now")
    gone = subprocess.run(["git", "-C", str(repo.path), "cat-file", "-e", old_commit], capture_output=True)
    assert gone.returncode != 0, "the old commit should be gone from git"
    code, report = reproduce(repo, v1)
    assert code == 0 and report["verdict"] == "identical", report


def test_a_corrupt_object_is_named_by_verify_and_reproduce(repo: Repo) -> None:
    make(repo)
    repo.build_json("specs/repro.yaml")
    shown = json.loads(repo.modelspec("show", "repro@1.0.0", "--json", check=True).stdout)
    data_digest = shown["data"]["raw"]["digest"]
    hexpart = data_digest.split(":")[1]
    target = repo.path / ".modelspec" / "objects" / hexpart[:2] / hexpart
    target.chmod(0o644)
    target.write_text("flipped\n")

    verify = repo.modelspec("verify", "repro@1.0.0")
    assert verify.returncode == 1
    assert "corrupt: the data snapshot 'raw'" in verify.stdout and data_digest in verify.stdout
    assert not target.exists()  # quarantined, never served

    result = repo.modelspec("reproduce", "repro@1.0.0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "the data snapshot 'raw' of repro@1.0.0" in result.stderr


def test_a_non_deterministic_stage_is_reported_exactly(repo: Repo) -> None:
    make(repo)
    repo.write("src/score.sh", SCORE.replace("echo stable", "head -c 16 /dev/urandom | od -An -tx1"), dedent=False)
    repo.commit("noisy")
    repo.build_json("specs/repro.yaml")
    code, report = reproduce(repo, "repro@1.0.0")
    assert code == 1 and report["verdict"] == "different"
    assert report["differing"] == ["score.noise"]
    human = repo.modelspec("reproduce", "repro@1.0.0")
    assert re.search(r"differs: score\.noise: recorded \d+ bytes, reproduced \d+ bytes", human.stdout)
    assert "score.metrics" not in human.stdout
    # A reproduction checks the recorded results and never replaces them in the action
    # cache: the next build reuses what was built, and nothing differs from the registry.
    again = repo.build_json("specs/repro.yaml")
    assert again["versions"]["repro"] == {"ref": "repro@1.0.0", "new": False}, again


def test_metrics_within_tolerance_pass_with_a_warning(repo: Repo) -> None:
    make(repo)
    noisy = (
        'n=$(wc -l < "$1"); jitter=$(od -An -N1 -tu1 /dev/urandom | tr -d " ");'
        ' printf \'{"lines": %s.000%03d}\\n\' "$n" "$jitter" > "$2"; echo stable > "$3"\n'
    )
    repo.write("src/score.sh", noisy, dedent=False)
    repo.commit("jitter")
    repo.build_json("specs/repro.yaml")
    for _ in range(3):  # the jitter may repeat by chance; three tries make a false pass unlikely
        code, report = reproduce(repo, "repro@1.0.0", "--rtol", "0.01")
        if report["verdict"] != "identical":
            break
    assert code == 0 and report["verdict"] == "within tolerance"
    assert report["differing"] == ["score.metrics"]
    assert report["metrics"]["lines"]["within"] is True
    strict_code, strict = reproduce(repo, "repro@1.0.0")
    assert strict["verdict"] in ("different", "identical") and (strict_code == 1) == (strict["verdict"] == "different")


def test_reproducing_an_unknown_version_is_a_clear_error(repo: Repo) -> None:
    make(repo)
    repo.build_json("specs/repro.yaml")
    result = repo.modelspec("reproduce", "repro@9.9.9")
    assert result.returncode == 2 and "no version repro@9.9.9" in result.stderr


MEET = """\
modelspec: 1
name: meet
version: "1.0"
code: {repo: ..}
hermetic: "off"
stages:
  left:
    cmd: sh src/meet.sh left right ${outputs.o} SHARED
    code: [src/meet.sh]
    outputs: {o: left.txt}
  right:
    cmd: sh src/meet.sh right left ${outputs.o} SHARED
    code: [src/meet.sh]
    outputs: {o: right.txt}
  join:
    cmd: sh -c 'cat ${inputs.left.o} > ${outputs.o}'
    inputs: [left.o]
    outputs: {o: joined.txt}
artifacts: [join.o, right.o]
"""
# Each stage of the pair waits (5 s at most) for the other to start: they succeed only
# when they run at the same time.
MEET_SH = """\
touch "$4/$1"; i=0
while [ ! -e "$4/$2" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
[ -e "$4/$2" ] && echo met > "$3"
"""


def test_reproduce_runs_stages_in_parallel_and_stops_at_the_first_failure(repo: Repo, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    repo.write("specs/meet.yaml", MEET.replace("SHARED", str(shared)), dedent=False)
    repo.write("src/meet.sh", MEET_SH, dedent=False)
    repo.commit("meet")
    repo.build_json("specs/meet.yaml", "-j", "2")

    for marker in shared.iterdir():
        marker.unlink()
    code, report = reproduce(repo, "meet@1.0.0", "-j", "2")
    assert code == 0 and report["verdict"] == "identical", report

    # One stage at a time, the pair cannot meet: the first fails, what depends on it is
    # skipped, and nothing else starts (the build's failure semantics).
    for marker in shared.iterdir():
        marker.unlink()
    result = repo.modelspec("reproduce", "meet@1.0.0", "-j", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    out = result.stdout + result.stderr
    assert "FAILED  meet:left" in out and "stage left failed:" in out
    assert "skipped meet:join: depends on failed meet:left" in out
    assert "skipped meet:right: not started: the build stopped" in out
    assert not (shared / "right").exists()  # never started
    assert "meet@1.0.0: different" in out


def test_reproduce_refuses_a_job_count_below_one(repo: Repo) -> None:
    make(repo)
    repo.build_json("specs/repro.yaml")
    result = repo.modelspec("reproduce", "repro@1.0.0", "-j", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "-j" in result.stderr


DOWNSTREAM = """\
modelspec: 1
name: down
version: "1.0"
code: {repo: ..}
data:
  table: {spec: repro, output: prep.out}
stages:
  count:
    cmd: sh -c 'wc -l < ${inputs.table} > ${outputs.n}'
    inputs: [table]
    outputs: {n: n.txt}
artifacts: [count.n]
"""


def test_another_specs_artifact_is_read_as_recorded_and_that_spec_is_not_run(repo: Repo) -> None:
    make(repo)
    repo.write("specs/down.yaml", DOWNSTREAM, dedent=False)
    repo.commit("down")
    built = repo.build_json("specs/down.yaml")
    assert built["versions"]["down"]["ref"] == "down@1.0.0"
    result = repo.modelspec("reproduce", "down@1.0.0", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["verdict"] == "identical", report
    assert [(o["stage"], o["output"]) for o in report["outputs"]] == [("count", "n")]
    human = repo.modelspec("reproduce", "down@1.0.0")
    assert "down:count" in human.stdout and "repro:" not in human.stdout  # only its own stages ran
