"""Build-system properties on a real workspace: correct, minimal, early cutoff, parallel,
failure, interruption and concurrency (Build Systems à la Carte's checks, with real
git, real bubblewrap and real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Repo, states
from pipeline import expected_d, make_pipeline

from modelspec.digest import digest_bytes


def checkout_d(repo: Repo, spec: str) -> str:
    repo.modelspec("checkout", spec, "--out", "out", check=True)
    return (repo.path / "out" / "d" / "d.txt").read_text()


def test_correct_outputs_equal_a_from_scratch_build(repo: Repo) -> None:
    spec = make_pipeline(repo)
    report = repo.build_json(spec)
    assert report["ok"] and set(states(report).values()) == {"ran"}
    assert checkout_d(repo, spec) == expected_d("first\nmiddle\nlast\n")
    # Every stage ran hermetically (bubblewrap is required in CI).
    assert all(row["hermetic"] for row in report["nodes"])


def test_minimal_second_build_runs_nothing_and_a_change_reruns_its_cone(repo: Repo) -> None:
    spec = make_pipeline(repo)
    repo.build_json(spec)
    assert set(states(repo.build_json(spec)).values()) == {"cached"}
    changed = states(repo.build_json(spec, "a.v=2"))
    assert changed == {"pipe:a": "ran", "pipe:b": "ran", "pipe:c": "cached", "pipe:d": "ran"}
    assert checkout_d(repo, spec) == expected_d("first\nmiddle\nlast\n", a=2)
    # A config key that no stage reads changes nothing.
    assert set(states(repo.build_json(spec, "a.v=2", "unused.v=5")).values()) == {"cached"}


def test_early_cutoff_identical_upstream_output_reruns_nothing_downstream(repo: Repo) -> None:
    spec = make_pipeline(repo)
    repo.build_json(spec)
    # Stages a and c read the first and last lines only; change the middle one.
    repo.write("data/raw.txt", "first\nCHANGED\nlast\n")
    result = states(repo.build_json(spec))
    assert result == {"pipe:a": "ran", "pipe:b": "cached", "pipe:c": "ran", "pipe:d": "cached"}


def test_independent_stages_overlap_with_two_jobs(repo: Repo) -> None:
    spec = make_pipeline(repo, a_extra="sleep 1", c_extra="sleep 1")
    report = repo.build_json(spec, "-j", "2")
    rows = {row["node"]: row for row in report["nodes"]}
    a, c = rows["pipe:a"], rows["pipe:c"]
    assert a["started"] < c["ended"] and c["started"] < a["ended"], (a, c)


def test_one_job_runs_stages_one_after_another(repo: Repo) -> None:
    spec = make_pipeline(repo, a_extra="sleep 0.5", c_extra="sleep 0.5")
    rows = {row["node"]: row for row in repo.build_json(spec, "-j", "1")["nodes"]}
    a, c = rows["pipe:a"], rows["pipe:c"]
    assert a["ended"] <= c["started"] or c["ended"] <= a["started"]


def test_failure_leaves_no_cache_entry_and_skips_dependents(repo: Repo) -> None:
    spec = make_pipeline(repo, b_extra="echo boom-in-b >&2; exit 3")
    result = repo.modelspec("build", spec, "-j", "1")
    assert result.returncode == 1
    assert "boom-in-b" in result.stdout + result.stderr  # the log tail is shown
    assert "pipe/b.log" in result.stdout + result.stderr  # and where the full log is
    assert "Traceback" not in result.stderr
    report = repo.build_json(spec, "-j", "1", "--keep-going", check=False)
    assert states(report) == {"pipe:a": "cached", "pipe:b": "failed", "pipe:c": "ran", "pipe:d": "skipped"}
    plan = json.loads(repo.modelspec("plan", spec, "--json", check=True).stdout)
    assert {n["node"]: n["status"] for n in plan["nodes"]}["pipe:b"] == "will run"


def test_fail_fast_does_not_start_independent_stages(repo: Repo) -> None:
    spec = make_pipeline(repo, a_extra="exit 1")
    report = repo.build_json(spec, "-j", "1", check=False)
    assert states(report)["pipe:a"] == "failed"
    assert states(report)["pipe:c"] == "skipped"  # a comes first in order; -j1 stops there
    assert states(report)["pipe:b"] == "skipped"


def _start_build(repo: Repo, spec: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelspec", "build", spec, "-j", "1", "--json"],
        cwd=repo.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_log(repo: Repo, stage: str, timeout: float = 30) -> None:
    log = repo.path / ".modelspec" / "logs" / "pipe" / f"{stage}.log"
    deadline = time.monotonic() + timeout
    while not log.exists():
        assert time.monotonic() < deadline, "the stage never started"
        time.sleep(0.05)
    time.sleep(0.3)


def _leftovers(repo: Repo) -> list[str]:
    tmp = repo.path / ".modelspec" / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def test_sigkill_mid_stage_then_build_again_completes_and_verifies(repo: Repo) -> None:
    spec = make_pipeline(repo, b_extra="sleep 2")
    proc = _start_build(repo, spec)
    _wait_for_log(repo, "b")
    proc.kill()
    proc.communicate()
    report = repo.build_json(spec)
    assert report["ok"]
    assert states(report)["pipe:b"] == "ran"  # the killed run left no cache entry
    assert _leftovers(repo) == []  # the next command cleaned the killed build's scratch
    verify = repo.modelspec("verify", check=True)
    assert "ok" in verify.stdout


def test_an_unsandboxed_stage_dies_with_a_killed_build(repo: Repo, tmp_path: Path) -> None:
    """Without bubblewrap the stage is modelspec's own child: SIGKILL of the build kills it
    too (parent-death signal), and the processes it started with it (its session)."""
    marker = tmp_path / "stage.pid"
    spec = make_pipeline(repo, hermetic="off", b_extra=f"echo $$ > {marker}; sleep 60")
    proc = _start_build(repo, spec)
    _wait_for_log(repo, "b")
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline, "the stage did not write its pid"
        time.sleep(0.05)
    stage = int(marker.read_text())
    proc.kill()
    proc.communicate()
    deadline = time.monotonic() + 10
    while _alive(stage):
        assert time.monotonic() < deadline, f"stage process {stage} outlived the killed build"
        time.sleep(0.05)


def test_a_command_that_cannot_start_is_said_so_in_the_log(repo: Repo) -> None:
    spec = make_pipeline(repo, hermetic="off")
    b_command = "cmd: sh -c 'cat ${inputs.a.out}"
    text = (repo.path / spec).read_text().replace(b_command, b_command.replace("sh", "no-such-tool"))
    repo.write(spec, text, dedent=False)
    repo.commit("b runs a program that is not installed")
    report = repo.build_json(spec, check=False)
    assert states(report)["pipe:b"] == "failed"
    log = (repo.path / ".modelspec" / "logs" / "pipe" / "b.log").read_text()
    assert "modelspec: cannot start 'no-such-tool': No such file or directory" in log


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"  # a zombie is dead, only not yet reaped
    except FileNotFoundError:
        return False


def test_sigterm_stops_the_stage_and_keeps_nothing_half_written(repo: Repo) -> None:
    spec = make_pipeline(repo, b_extra="sleep 30")
    proc = _start_build(repo, spec)
    _wait_for_log(repo, "b")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert time.monotonic() - started < 10  # the 30 s stage was stopped, not waited for
    assert _leftovers(repo) == []
    plan = json.loads(repo.modelspec("plan", spec, "--json", check=True).stdout)
    assert {n["node"]: n["status"] for n in plan["nodes"]}["pipe:b"] == "will run"


def test_two_concurrent_builds_both_succeed_and_each_stage_runs_once(repo: Repo) -> None:
    spec = make_pipeline(repo, a_extra="sleep 1", c_extra="sleep 1")
    first, second = _start_build(repo, spec), _start_build(repo, spec)
    reports = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    for node in ("pipe:a", "pipe:b", "pipe:c", "pipe:d"):
        runs = [states(r)[node] for r in reports]
        assert sorted(runs) == ["cached", "ran"], (node, runs)


def test_corrupt_object_is_quarantined_and_the_next_build_repairs_it(repo: Repo) -> None:
    spec = make_pipeline(repo)
    report = repo.build_json(spec)
    artifact = report["specs"]["pipe"]["artifacts"]["d.out"]["digest"]
    hexpart = artifact.split(":")[1]
    path = repo.path / ".modelspec" / "objects" / hexpart[:2] / hexpart
    path.chmod(0o644)
    path.write_text("tampered\n")
    result = repo.modelspec("verify")
    assert result.returncode == 1 and artifact in result.stdout
    assert (repo.path / ".modelspec" / "quarantine" / hexpart).exists()
    assert not path.exists()
    rebuilt = repo.build_json(spec)
    assert states(rebuilt)["pipe:d"] == "ran"
    assert checkout_d(repo, spec) == expected_d("first\nmiddle\nlast\n")
    assert repo.modelspec("verify").returncode == 0


def test_checkout_gives_read_only_artifacts(repo: Repo) -> None:
    spec = make_pipeline(repo)
    repo.build_json(spec)
    repo.modelspec("checkout", spec, "--out", "out", check=True)
    target = repo.path / "out" / "d" / "d.txt"
    assert not os.access(target, os.W_OK) or os.geteuid() == 0
    assert target.stat().st_mode & 0o222 == 0


def test_missing_output_and_undeclared_file_fail_the_stage(repo: Repo) -> None:
    spec = make_pipeline(repo, c_extra="touch /ms/out/stray.txt")
    report = repo.build_json(spec, "--keep-going", check=False)
    failed = {r["node"]: r for r in report["nodes"]}["pipe:c"]
    assert failed["state"] == "failed"
    assert "undeclared file left in the output directory: stray.txt" in failed["reason"]
    spec = make_pipeline(repo, c_extra="rm ${outputs.out}")
    report = repo.build_json(spec, "--keep-going", check=False)
    failed = {r["node"]: r for r in report["nodes"]}["pipe:c"]
    assert "declared output 'out' (c.txt) was not created" in failed["reason"]


def test_the_lock_file_is_written_beside_the_spec(repo: Repo) -> None:
    spec = make_pipeline(repo)
    repo.build_json(spec)
    lock = json.loads((repo.path / "specs" / "pipe.lock").read_text())
    assert lock["lock_format"] == 1
    assert lock["code"]["commit"] == repo.git("rev-parse", "HEAD").strip()
    assert lock["data"]["raw"]["digest"].startswith("blake3:")
    assert lock["config"]["a"] == {"v": 1}
    assert str(repo.path) not in json.dumps(lock)  # no host paths
    # A lock file edited behind the build's back (same size even) is written again, however
    # sure the build is that it wrote this very lock before.
    path = repo.path / "specs" / "pipe.lock"
    good = path.read_bytes()
    path.write_bytes(good.replace(b'"lock_format": 1', b'"lock_format": 7'))
    repo.build_json(spec, in_process=True)
    assert path.read_bytes() == good


def test_same_stage_in_two_workspace_paths_gets_same_key_and_bytes(tmp_path: Path) -> None:
    outputs = []
    for name in ("one", "two/deeper"):
        repo = Repo(tmp_path / name)
        spec = make_pipeline(repo)
        report = repo.build_json(spec)
        outputs.append(
            ({r["node"]: r["key"] for r in report["nodes"]}, report["specs"]["pipe"]["artifacts"]["d.out"]["digest"])
        )
    assert outputs[0] == outputs[1]


def test_a_callers_executor_runs_every_stage_and_stays_open(repo: Repo) -> None:
    """The seam a distributed executor plugs into: build() hands each ready stage to the
    caller's executor (and leaves it open), and the result is the same as on its own pool."""
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    from modelspec.api import BuildOptions, build

    class CountingExecutor(ThreadPoolExecutor):
        def __init__(self) -> None:
            super().__init__(max_workers=2)
            self.submitted = 0

        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.submitted += 1
            return super().submit(fn, *args, **kwargs)

    spec = make_pipeline(repo)
    with CountingExecutor() as executor, contextlib.chdir(repo.path):
        report = build([repo.path / spec], BuildOptions(hermetic="off"), executor=executor)
        assert report.ok and executor.submitted == 4
        again = build([repo.path / spec], BuildOptions(hermetic="off"), executor=executor)
        assert again.ok and executor.submitted == 4  # cache hits are settled, never handed over
        executor.submit(lambda: None).result()  # still open: its owner shuts it down
    assert checkout_d(repo, spec) == expected_d("first\nmiddle\nlast\n")


def test_the_action_cache_index_serves_a_no_op_and_never_a_wrong_hit(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A no-op build finds its entries in the index its last build wrote, reading no entry's
    own file; an entry whose file changed since is read from its file (an edited one is a
    miss); a damaged index is ignored; an indexed entry whose output is gone is a miss."""
    from modelspec.store.traces import ActionCache

    spec = make_pipeline(repo)
    repo.build_json(spec, in_process=True)
    ac = repo.path / ".modelspec" / "ac"
    (index,) = (ac / "index").glob("*.json")
    summary = json.loads((repo.path / ".modelspec" / "builds" / "pipe.registered").read_bytes())
    assert summary["registered"] == "pipe@1.0.0"  # what a no-op compares with, by digest
    files_read: list[Path] = []
    real_read = ActionCache._read
    monkeypatch.setattr(ActionCache, "_read", lambda self, path: files_read.append(Path(path)) or real_read(self, path))
    assert set(states(repo.build_json(spec, in_process=True)).values()) == {"cached"}
    assert files_read == []

    (entry_c,) = [p for p in ac.glob("??/*.json") if json.loads(p.read_bytes())["node"] == "pipe:c"]
    entry_c.write_bytes(entry_c.read_bytes().replace(b'"exit_code":0', b'"exit_code":7'))  # edited
    rerun = states(repo.build_json(spec, in_process=True))
    assert rerun == {"pipe:a": "cached", "pipe:b": "cached", "pipe:c": "ran", "pipe:d": "cached"}
    assert entry_c in files_read

    assert b'"exit_code":0' in index.read_bytes()
    index.write_bytes(index.read_bytes().replace(b'"exit_code":0', b'"exit_code":1'))  # damaged
    assert set(states(repo.build_json(spec, in_process=True)).values()) == {"cached"}  # from the files

    document = json.loads(index.read_bytes().partition(b"\n")[2])
    (entry, _stamp) = next(e for e in document.values() if e[0]["node"] == "pipe:c")
    digest = next(iter(entry["outputs"].values()))["digest"]
    hexpart = digest.partition(":")[2]
    (repo.path / ".modelspec" / "objects" / hexpart[:2] / hexpart).unlink()  # its output gone
    rerun = states(repo.build_json(spec, in_process=True))
    assert rerun["pipe:c"] == "ran" and rerun["pipe:a"] == "cached", rerun


def test_a_build_without_a_remote_imports_none_of_the_remotes_modules(repo: Repo) -> None:
    """The remote's modules (packs, batches, the action cache: ~15 ms) are for a workspace that names one."""
    spec = make_pipeline(repo)
    repo.build_json(spec)
    code = (
        "import sys; from pathlib import Path; from modelspec.api import build, BuildOptions; "
        f"report = build([Path({spec!r})], BuildOptions()); "
        "print(report.ok, sorted(m for m in sys.modules if m.startswith('modelspec.store.remote')))"
    )
    noop = subprocess.run([sys.executable, "-c", code], cwd=repo.path, capture_output=True, text=True, check=True)
    assert noop.stdout.split() == ["True", "[]"]


def test_builds_running_the_same_stage_at_once_each_keep_their_log(repo: Repo) -> None:
    """Four builds with other overrides run stage a at the same time: each succeeds (one used
    to remove the shared log file under another, whose stage then failed), and the log left at
    logs/pipe/a.log is whole: one run's, as the store keeps it."""
    spec = make_pipeline(repo, hermetic="off", a_extra="echo log a=${config.a.v}; sleep 0.3")  # runs overlap
    repo.build_json(spec)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "modelspec", "build", spec, f"a.v={10 + i}", "--json"],
            cwd=repo.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-3000:] + err
        reports.append(json.loads(out))
    logs = {str(report["specs"]["pipe"]["nodes"]["pipe:a"]["log"]) for report in reports}
    assert len(logs) == 4  # each run's own log, in the store
    published = (repo.path / ".modelspec" / "logs" / "pipe" / "a.log").read_bytes()
    assert published in {f"log a={10 + i}\n".encode() for i in range(4)}
    assert digest_bytes(published) in logs
    assert not list((repo.path / ".modelspec" / "tmp").glob("*.log"))  # nothing left beside the work folders


def test_a_build_of_small_outputs_loads_no_chunk_layer(repo: Repo) -> None:
    """Storing a stage's new small output asks whether the object is there as chunks by
    looking for its recipe file, without loading the chunk layer (zstd, the pack indexes);
    a build that names no cluster does not load the cluster's client either."""
    spec = make_pipeline(repo, hermetic="off")
    repo.build_json(spec)
    code = (
        "import sys; from pathlib import Path; from modelspec.api import build, BuildOptions; "
        f"report = build([Path({spec!r})], BuildOptions(overrides=('a.v=5',))); "
        "print(report.ok, [o.state.value for o in report.outcomes].count('ran'), "
        "sorted(m for m in sys.modules if m in ('modelspec.store.chunks', 'zstandard', 'modelspec.build.cluster')))"
    )
    ran = subprocess.run([sys.executable, "-c", code], cwd=repo.path, capture_output=True, text=True, check=True)
    assert ran.stdout.split() == ["True", "3", "[]"]  # a, b and d ran and stored new outputs
