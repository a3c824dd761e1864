#!/usr/bin/env python3
"""Benchmark of builds on a Dask cluster (issue 15): prints each figure beside its goal.

A script, not a test. It starts a cluster on loopback as the tests do (tests/daskcluster.py:
`dask scheduler` and two `dask worker --nthreads 1`, each with a folder of its own), or uses
`--cluster dask://HOST:PORT`, and runs the real CLI (`python -m modelspec`) in fresh git
repositories whose remote is a shared directory:

* 40 independent stages of 1 s each (`sleep 1`, under bubblewrap when it is installed) on the
  two workers, after an untimed warm-up build of another spec (the workers' first task
  imports modelspec). Goal: wall <= 24 s (ideal: 40 s of work / 2 workers = 20 s). The
  scheduling overhead per stage is (wall - ideal) / stages, goal <= 50 ms; the overhead
  each stage adds to its worker's time line, (wall - ideal) * workers / stages, is printed
  beside it;
* a no-op build of 1,000 stages (built first on this machine; the keys do not depend on
  where a stage runs), median of 3, with and without `--executor`: a no-op never reaches the
  cluster, so the two must be equal.

    python benchmarks/cluster_bench.py
    python benchmarks/cluster_bench.py --stages 40 --noop 1000 --cluster dask://127.0.0.1:8786
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import daskcluster  # noqa: E402  (the tests' cluster, started the same way)

GIT = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def make_repo(path: Path, shared: Path, name: str, stages: int, command: str, hermetic: str) -> str:
    path.mkdir(parents=True)
    (path / "modelspec.yaml").write_text(f"remote: '{shared.as_uri()}'\n")
    (path / "data").mkdir()
    (path / "data" / "seed.txt").write_text("seed\n")
    lines = [
        "modelspec: 1",
        f"name: {name}",
        'version: "1.0"',
        "code: {repo: ..}",
        "data: {seed: {path: data/seed.txt}}",
        f"hermetic: {hermetic}",
        "stages:",
    ]
    for i in range(stages):
        cmd = f"sh -c '{command} echo {i} > ${{outputs.out}}'"
        lines.append(f'  s{i}: {{cmd: "{cmd}", inputs: [seed], outputs: {{out: o.txt}}}}')
    lines.append(f"artifacts: [s{stages - 1}.out]")
    (path / "specs").mkdir()
    (path / "specs" / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    env = {**os.environ, **GIT}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env)
    return f"specs/{name}.yaml"


def build(repo: Path, spec: str, *args: str) -> tuple[float, dict]:
    started, clock = time.monotonic(), time.time()
    done = subprocess.run(  # a build that hangs is a failure, not a figure
        [sys.executable, "-m", "modelspec", "build", spec, "--json", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"build failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    report["bench"] = {"started": clock, "ended": clock + wall}
    return wall, report


def breakdown(report: dict) -> str:
    """Where the wall time beyond the stages went: before the first stage started, after the
    last one ended, and between one stage's end and the next one's start on each worker."""
    rows = [r for r in report["nodes"] if r["state"] == "ran"]
    first = min(r["started"] for r in rows) - report["bench"]["started"]
    last = report["bench"]["ended"] - max(r["ended"] for r in rows)
    gaps = []
    for worker in {r["worker"] for r in rows}:
        mine = sorted((r["started"], r["ended"]) for r in rows if r["worker"] == worker)
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(mine)]
    median_gap = statistics.median(gaps) * 1000 if gaps else 0.0
    return (
        f"first stage started {first:.2f} s after the command (start-up, graph, importing Dask, connecting), "
        f"the command ended {last:.2f} s after the last stage (fetching outputs, registering); between two "
        f"stages on a worker: median {median_gap:.0f} ms, max {max(gaps, default=0) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=1.0, help="each stage's own work")
    parser.add_argument("--noop", type=int, default=1000, help="stages of the no-op build (0: skip it)")
    parser.add_argument("--cluster", help="dask://HOST:PORT of a running cluster (default: start one)")
    parser.add_argument("--workers", type=int, default=daskcluster.WORKERS, help="its workers' threads in all")
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="modelspec-cluster-bench-"))
    url = options.cluster
    try:
        if url is None:
            started = time.monotonic()
            url = daskcluster.start(base / "cluster")
            print(f"cluster started in {time.monotonic() - started:.1f} s: {url} ({daskcluster.WORKERS} workers)")
        shared = base / "shared"
        hermetic = "auto"
        warm = make_repo(base / "warm", shared, "warm", 4, "true;", hermetic)
        build(base / "warm", warm, "--executor", url)
        spec = make_repo(base / "fan", shared, "fan", options.stages, f"sleep {options.seconds:g};", hermetic)
        wall, report = build(base / "fan", spec, "--executor", url, "-j", str(options.stages))
        ran = [row for row in report["nodes"] if row["state"] == "ran"]
        assert len(ran) == options.stages, report["nodes"]
        work = sum(row["seconds"] for row in ran)
        ideal = options.stages * options.seconds / options.workers
        workers = sorted({row["worker"] for row in ran})
        overhead = (wall - ideal) / options.stages
        print(f"{options.stages} stages x {options.seconds:g} s on {len(workers)} workers: wall {wall:.2f} s "
              f"(goal <= {ideal * 1.2:.0f} s, ideal {ideal:.0f} s) "
              f"[{'ok' if wall <= ideal * 1.2 else 'OVER'}]; the stages' own seconds: {work:.1f}")
        print(f"scheduling overhead per stage (wall - ideal) / stages: {overhead * 1000:.0f} ms "
              f"(goal <= 50 ms) [{'ok' if overhead <= 0.05 else 'OVER'}]; "
              f"per stage on its worker's time line: {overhead * options.workers * 1000:.0f} ms")
        beyond = (wall - work / options.workers) / options.stages
        print(f"the same counting the stages' own seconds as work (the sandbox's start, which a local build "
              f"pays too): (wall - own seconds / workers) / stages = {beyond * 1000:.0f} ms")
        print(breakdown(report))
        if options.noop:
            noop = make_repo(base / "noop", shared, "noop", options.noop, "", "off")
            first, _ = build(base / "noop", noop, "--no-push")
            print(f"{options.noop}-stage first build on this machine: {first:.1f} s")
            timings: dict[str, list[float]] = {"local": [], "executor": []}
            for _ in range(3):  # interleaved, so that other load on the machine hits both alike
                timings["local"].append(build(base / "noop", noop, "--executor", "local")[0])
                wall_x, again = build(base / "noop", noop, "--executor", url)
                assert {row["state"] for row in again["nodes"]} == {"cached"}
                timings["executor"].append(wall_x)
            local, remote = (statistics.median(timings[k]) for k in ("local", "executor"))
            print(f"{options.noop}-stage no-op build, median of 3: {local:.2f} s locally, {remote:.2f} s with "
                  f"--executor {url} ({(remote / local - 1) * 100:+.0f}%; goal: the same, no cluster round trip)")
        print(f"load average: {os.getloadavg()[0]:.2f}")
    finally:
        if options.cluster is None:
            daskcluster.stop(base / "cluster")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
