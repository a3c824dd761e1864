"""Builds on a real Dask cluster: a scheduler and two single-thread workers on loopback,
each with a folder of its own as its machine (started once per session, `dask_url`).

The workers never see a test's workspace: they get the inputs from the remote (a shared
directory here) and leave the outputs there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import daskcluster
import pytest
from conftest import GIT_ENV, Repo, states
from pipeline import expected_d, make_pipeline
from test_environments import iniconfig_lock, make_env_spec, output_of  # noqa: F401  (a fixture)


def cluster_repo(tmp_path: Path, name: str = "a", **pipeline: str) -> tuple[Repo, str]:
    repo = Repo(tmp_path / name)
    repo.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    return repo, make_pipeline(repo, **pipeline)


def address(url: str) -> str:
    return "tcp://" + url.removeprefix("dask://")


def start_build(repo: Repo, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelspec", "build", *args],
        cwd=repo.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_cluster_build_has_the_keys_and_bytes_of_a_local_build(tmp_path: Path, dask_url: str) -> None:
    here = Repo(tmp_path / "local")
    local = here.build_json(make_pipeline(here), in_process=True)
    repo, spec = cluster_repo(tmp_path)
    built = repo.build_json(spec, "--executor", dask_url, in_process=True)
    assert set(states(built).values()) == {"ran"}
    assert [(r["node"], r["key"]) for r in built["nodes"]] == [(r["node"], r["key"]) for r in local["nodes"]]
    assert built["specs"]["pipe"]["artifacts"] == local["specs"]["pipe"]["artifacts"]
    assert all(row["worker"].startswith("tcp://127.0.0.1:") for row in built["nodes"])  # who ran what
    assert "worker" not in local["nodes"][0]
    repo.cli("checkout", spec, "--out", "out", check=True)  # the outputs are in the local store
    assert (repo.path / "out" / "d" / "d.txt").read_text() == expected_d("first\nmiddle\nlast\n")

    # A no-op build settles every stage from the cache: it never connects (nothing listens there).
    again = repo.build_json(spec, "--executor", "dask://127.0.0.1:9", in_process=True)
    assert set(states(again).values()) == {"cached"}
    code = (
        "import sys; from pathlib import Path; from modelspec.api import build, BuildOptions; "
        f"report = build([Path({spec!r})], BuildOptions(executor={dask_url!r})); "
        "print(report.ok, 'distributed' in sys.modules)"
    )
    noop = subprocess.run([sys.executable, "-c", code], cwd=repo.path, capture_output=True, text=True, check=True)
    assert noop.stdout.split() == ["True", "False"]  # nor is Dask even imported

    # reproduce runs on the cluster too, and compares bit for bit.
    ref = built["versions"]["pipe"]["ref"]
    reproduced = repo.cli("reproduce", ref, "--executor", dask_url, "--json")
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    assert json.loads(reproduced.stdout)["verdict"] == "identical"


def test_a_worker_creates_the_stage_s_environment_from_its_lock(
    tmp_path: Path, dask_url: str, iniconfig_lock: str  # noqa: F811
) -> None:
    repo = Repo(tmp_path / "a")
    repo.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    spec = make_env_spec(repo, iniconfig_lock)
    report = repo.build_json(spec, "--executor", dask_url, in_process=True)
    assert states(report) == {"envy:probe": "ran"}
    assert output_of(repo, spec) == "iniconfig /ms/env\n"  # the package, in the worker's environment
    assert not (repo.path / ".modelspec" / "envs").exists()  # none was made here


def test_a_failing_stage_on_a_worker_shows_its_log_tail(tmp_path: Path, dask_url: str) -> None:
    repo, spec = cluster_repo(tmp_path, b_extra="echo boom-on-the-worker >&2; exit 3")
    failed = repo.cli("build", spec, "--executor", dask_url)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED  pipe:b: command exited with status 3" in failed.stdout
    assert "run     pipe:b  on tcp://127.0.0.1:" in failed.stdout  # progress says which worker runs it
    assert "boom-on-the-worker" in failed.stdout  # the tail of the worker's log
    assert "boom-on-the-worker" in (repo.path / ".modelspec" / "logs" / "pipe" / "b.log").read_text()
    assert "Traceback" not in failed.stderr


def test_a_worker_killed_mid_stage_is_retried_once_and_the_build_says_so(tmp_path: Path, dask_url: str) -> None:
    from distributed import Client

    repo, spec = cluster_repo(tmp_path, a_extra="sleep 4")
    plan = json.loads(repo.modelspec("plan", spec, "--json", check=True).stdout)
    key = next(n["key"] for n in plan["nodes"] if n["node"] == "pipe:a")
    build = start_build(repo, spec, "--executor", dask_url, "--json")
    with Client(address(dask_url), set_as_default=False) as client:
        deadline = time.monotonic() + 60
        while not (running := [w for w, keys in client.processing().items() if any(k.startswith(key) for k in keys)]):
            assert time.monotonic() < deadline and build.poll() is None, "pipe:a never started"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the stage
        pid = client.run(os.getpid, workers=running)[running[0]]
        os.kill(pid, signal.SIGKILL)
        out, err = build.communicate(timeout=120)
        assert build.returncode == 0, out + err
        report = json.loads(out)
        row = next(r for r in report["nodes"] if r["node"] == "pipe:a")
        assert row["state"] == "ran"
        assert f"after worker {running[0]} was lost" in row["reason"]
        assert row["worker"] != running[0]
        client.wait_for_workers(daskcluster.WORKERS, timeout=60)  # its nanny restarts it: whole for the next test


def test_ctrl_c_stops_the_stage_on_its_worker(tmp_path: Path, dask_url: str) -> None:
    beat = tmp_path / "heartbeat"  # hermetic: off, so that the stage can say it is alive
    repo, spec = cluster_repo(tmp_path, hermetic="off", a_extra=f"while true; do date +%s%N > {beat}; sleep 0.05; done")
    build = start_build(repo, spec, "--executor", dask_url)
    deadline = time.monotonic() + 60
    while not beat.exists():
        assert time.monotonic() < deadline and build.poll() is None, "the stage never started"
        time.sleep(0.05)
    interrupted = time.time()
    build.send_signal(signal.SIGINT)
    out, err = build.communicate(timeout=30)
    assert build.returncode == 130, out + err
    time.sleep(1.0)
    last = int(beat.read_text().strip() or 0) / 1e9
    assert last - interrupted < 1.0  # the remote stage stopped within a second


def test_two_builds_that_submit_the_same_stage_run_it_once(tmp_path: Path, dask_url: str) -> None:
    """...and the first one's Ctrl-C does not stop it for the second."""
    from distributed import Client

    runs, gate = tmp_path / "runs", tmp_path / "gate"
    # The stage runs until the test opens the gate (at most two minutes): a fixed sleep let it end
    # before a loaded machine had started the second build.
    wait = f"for i in $(seq 2400); do [ -e {gate} ] && break; sleep 0.05; done"
    first, spec = cluster_repo(tmp_path, hermetic="off", a_extra=f"echo ran >> {runs}; {wait}")
    subprocess.run(["git", "clone", "-q", str(first.path), str(tmp_path / "b")], check=True, env={**GIT_ENV})
    second = Repo.__new__(Repo)
    second.path = tmp_path / "b"
    plan = json.loads(first.modelspec("plan", spec, "--json", check=True).stdout)
    key = next(n["key"] for n in plan["nodes"] if n["node"] == "pipe:a")
    builds = [start_build(r, spec, "--executor", dask_url, "--json") for r in (first, second)]

    def wanted(dask_scheduler: object) -> int:  # the Dask key is the action key @ the remote
        found = [s for k, s in dask_scheduler.tasks.items() if k.startswith(key)]  # type: ignore[attr-defined]
        return len(found[0].who_wants or ()) if found else 0

    with Client(address(dask_url), set_as_default=False) as client:
        deadline = time.monotonic() + 60
        while client.run_on_scheduler(wanted) < 2:  # both builds wait for the one run
            assert time.monotonic() < deadline and all(b.poll() is None for b in builds), "never shared"
            time.sleep(0.05)
    builds[0].send_signal(signal.SIGINT)
    out, err = builds[0].communicate(timeout=60)
    assert builds[0].returncode == 130, out + err
    gate.touch()
    out, err = builds[1].communicate(timeout=120)
    assert builds[1].returncode == 0, out + err
    assert set(states(json.loads(out)).values()) == {"ran"}
    assert runs.read_text() == "ran\n"


def test_a_stage_no_worker_can_place_says_so(tmp_path: Path, dask_url: str) -> None:
    repo, spec = cluster_repo(tmp_path)
    text = (repo.path / spec).read_text()
    plan = json.loads(repo.modelspec("plan", spec, "--json", check=True).stdout)
    repo.write(spec, text.replace("  a:\n", "  a:\n    resources: {gpus: 1, memory: 1G}\n"))
    repo.commit("a GPU stage")
    placed = json.loads(repo.modelspec("plan", spec, "--json", check=True).stdout)
    assert [n["key"] for n in placed["nodes"]] == [n["key"] for n in plan["nodes"]]  # resources are not in the key
    failed = repo.cli("build", spec, "--executor", dask_url + "?wait=1s")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "pipe:a waits: no worker offers GPU=1, MEMORY=1.07374e+09" in failed.stdout
    assert "cannot be placed on" in failed.stdout and "--resources" in failed.stdout
    assert "Traceback" not in failed.stderr


def test_a_cluster_without_workers_says_so_instead_of_waiting_forever(tmp_path: Path) -> None:
    repo, spec = cluster_repo(tmp_path)
    try:
        url = daskcluster.start(tmp_path / "lonely", workers=0)
        failed = repo.cli("build", spec, "--executor", url + "?wait=1s")
    finally:
        daskcluster.stop(tmp_path / "lonely")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "waits: no worker is connected to the scheduler" in failed.stdout
    assert "cannot be placed on" in failed.stdout


@pytest.mark.parametrize(
    ("setting", "args", "expected"),
    [
        ("", ["--executor", "dask://127.0.0.1:9"], "needs a remote that the workers reach"),
        ("remote: 'file:///tmp/unused'\n", ["--executor", "spark://x:1"], "expected dask://HOST:PORT or local"),
        ("remote: 'file:///tmp/unused'\nexecutor: dask://127.0.0.1:9\n", [], "cannot reach the Dask scheduler"),
    ],
)
def test_a_cluster_that_cannot_be_used_is_a_clear_error(
    repo: Repo, setting: str, args: list[str], expected: str
) -> None:
    repo.write("modelspec.yaml", setting)
    spec = make_pipeline(repo)
    result = repo.cli("build", spec, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_executor_local_builds_here_whatever_the_workspace_file_says(repo: Repo) -> None:
    repo.write("modelspec.yaml", "remote: 'file:///tmp/unused'\nexecutor: dask://127.0.0.1:9\n")
    spec = make_pipeline(repo)
    report = repo.build_json(spec, "--executor", "local", "--no-push", in_process=True)
    assert set(states(report).values()) == {"ran"}
    assert all("worker" not in row for row in report["nodes"])
    bad = repo.write("modelspec.yaml", "executor: dask://no-port\n")
    result = repo.cli("validate", str(bad))
    assert result.returncode == 2
    assert "modelspec.yaml:1:11: executor: 'dask://no-port' must be dask://HOST:PORT or local" in result.stderr


def test_builds_with_different_remotes_never_share_a_run(tmp_path: Path, dask_url: str) -> None:
    """Each gets the result on its own remote: a shared run would leave one without its objects."""
    runs = tmp_path / "runs"
    first, spec = cluster_repo(tmp_path, hermetic="off", a_extra=f"echo ran >> {runs}; sleep 2")
    second, _ = cluster_repo(tmp_path, "b", hermetic="off", a_extra=f"echo ran >> {runs}; sleep 2")
    second.write("modelspec.yaml", f"remote: '{(tmp_path / 'other').as_uri()}'\n")
    second.commit("its own remote")
    started = start_build(first, spec, "--executor", dask_url, "--json")
    deadline = time.monotonic() + 60
    while not runs.exists():
        assert time.monotonic() < deadline and started.poll() is None, "pipe:a never started"
        time.sleep(0.05)
    other = second.build_json(spec, "--executor", dask_url, in_process=True)  # while the first one runs it
    out, err = started.communicate(timeout=120)
    assert started.returncode == 0, out + err
    assert set(states(other).values()) == {"ran"}
    assert runs.read_text() == "ran\nran\n"
