#!/usr/bin/env python3
"""Quality benchmark (issue 17): `metrics` over many versions, `drift` between two versions,
and profiling a large CSV beside snapshotting it.

A script, not a test (stdlib, modelspec and its dependencies). In temporary directories it

* fills a registry with N versions of model `m` (5 metrics each, by batch inserts through
  `benchmarks/registry_bench.py`), promotes one, and times `modelspec metrics m --json` and
  `modelspec metrics m --metric auc` (median of 5, after a warm-up) against the budget of
  0.5 s wall, beside `modelspec show` (interpreter, imports and the registry's opening,
  which every registry command pays) and the in-process `metric_history`;
* builds a small model twice from a CSV input (the fraud example's data, then the same
  data shifted) and times `modelspec drift m@1.0.1 m@1.0.0 --json` against 0.5 s wall;
* writes a CSV of `--csv-mib` MiB (the fraud data repeated) and times its profile beside
  its snapshot into a fresh store (`LocalStore.put_path`: hashing and copying it), against
  the budget of a profile costing at most 30% of the snapshot.

Figures are wall-clock and sensitive to other load on the machine: the load average before
and after is printed. Exit 0 when every figure was measured (a budget exceeded prints OVER).

    python benchmarks/quality_bench.py
    python benchmarks/quality_bench.py --versions 10000 --csv-mib 1024
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import registry_bench as rb  # noqa: E402

from modelspec import api  # noqa: E402
from modelspec.drift.profile import profile_file  # noqa: E402
from modelspec.registry.registry import Registry  # noqa: E402
from modelspec.store.objects import LocalStore  # noqa: E402

FRAUD = REPO / "examples" / "fraud" / "data" / "transactions.csv"
SPEC = """\
modelspec: 1
name: m
version: "1.0"
code: {repo: ..}
hermetic: off
data:
  table: {path: data/t.csv}
stages:
  fit:
    cmd: [sh, -c, 'wc -l < "$0" > "$1"', "${inputs.table}", "${outputs.model}"]
    inputs: [table]
    outputs: {model: model.txt}
artifacts: [fit.model]
"""


def verdict(seconds: float, budget: float) -> str:
    return "ok" if seconds <= budget else "OVER"


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}  # fmt: skip
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def bench_metrics(root: Path, count: int) -> None:
    workspace = root / "metrics"
    (workspace / ".modelspec").mkdir(parents=True)
    git(workspace, "init", "-q")
    registry = Registry.at(workspace / ".modelspec" / "registry.db")
    rb.bulk_fill(registry, count, random.Random(1), time.time() - count)
    registry.promote(f"m@1.0.{count // 2}", "production", "bench")
    registry.close()
    for args in (["metrics", "m", "--json"], ["metrics", "m", "--metric", "auc"], ["show", "m@1.0.5", "--json"]):
        seconds, _out = rb.cli_time(workspace, args)
        budget = f"  (budget 0.5 s: {verdict(seconds, 0.5)})" if args[0] == "metrics" else ""
        print(f"modelspec {' '.join(args):<28} {seconds:6.3f} s{budget}")
    os.chdir(workspace)
    with api.open_catalog(read_only=True) as catalog:
        seconds, history = rb.median_time(lambda: api.metric_history(catalog, "m"))
    print(f"metric_history in-process ({len(history.points)} versions)  {seconds:6.3f} s")


def bench_drift(root: Path) -> None:
    repo = root / "drift"
    (repo / "specs").mkdir(parents=True)
    (repo / "data").mkdir()
    (repo / "specs" / "m.yaml").write_text(SPEC)
    shutil.copyfile(FRAUD, repo / "data" / "t.csv")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "m")
    env = {k: v for k, v in os.environ.items() if k != "MODELSPEC_HOME"}
    build = [sys.executable, "-m", "modelspec", "build", "specs/m.yaml"]
    started = time.perf_counter()
    subprocess.run(build, cwd=repo, env=env, check=True, capture_output=True)
    took = time.perf_counter() - started
    print(f"first build of m (profiles {FRAUD.stat().st_size >> 10} KiB of CSV)  {took:6.3f} s")
    lines = (repo / "data" / "t.csv").read_text().splitlines()
    shifted = [lines[0]] + [line.replace(",1,", ",0,", 1) for line in lines[1:]]  # flips a column's values
    (repo / "data" / "t.csv").write_text("\n".join(shifted) + "\n")
    subprocess.run(build, cwd=repo, env=env, check=True, capture_output=True)
    args = ["drift", "m@1.0.1", "m@1.0.0", "--json"]
    command = [sys.executable, "-m", "modelspec", *args]
    times = []
    for _ in range(6):
        started = time.perf_counter()
        subprocess.run(command, cwd=repo, env=env, capture_output=True, check=False)  # exit 1 on a drift
        times.append(time.perf_counter() - started)
    seconds = sorted(times[1:])[2]
    print(f"modelspec {' '.join(args):<28} {seconds:6.3f} s  (budget 0.5 s: {verdict(seconds, 0.5)})")


def bench_profile(root: Path, mib: int) -> None:
    big = root / "big.csv"
    header, _, body = FRAUD.read_bytes().partition(b"\n")
    with open(big, "wb") as out:
        out.write(header + b"\n")
        while out.tell() < mib << 20:
            out.write(body)
    size = big.stat().st_size
    seconds, profile = rb.median_time(lambda: profile_file(big, "big.csv"), runs=3)
    snapshots = []
    for i in range(2):
        store = LocalStore(root / f"store{i}")
        started = time.perf_counter()
        store.put_path(big)
        snapshots.append(time.perf_counter() - started)
        shutil.rmtree(root / f"store{i}")
    snapshot = min(snapshots)
    share = seconds / snapshot
    print(f"snapshot of a {size / (1 << 30):.2f} GiB CSV                {snapshot:6.3f} s")
    parsed = profile.get("sampled", {}).get("rows", profile["rows"])
    print(f"profile of it ({parsed} rows parsed)        {seconds:6.3f} s", end="")
    print(f"  ({share:.0%} of the snapshot; budget 30%: {verdict(share, 0.30)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--csv-mib", type=int, default=1024)
    parser.add_argument("--cli", help="a modelspec executable to time (default: python -m modelspec)")
    parser.add_argument("--only-metrics", action="store_true", help="only `metrics` over the versions")
    args = parser.parse_args()
    if args.cli:
        rb.CLI[:] = [args.cli]
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as temp:
        root = Path(temp)
        here = os.getcwd()
        try:
            bench_metrics(root, args.versions)
        finally:
            os.chdir(here)
        if not args.only_metrics:
            bench_drift(root)
            bench_profile(root, args.csv_mib)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
