#!/usr/bin/env python3
"""Performance benchmark for modelspec: prints the figures of DESIGN.md §9 (or issue 21) next to their budgets.

A script, not a test (stdlib + modelspec only). Every build runs the real CLI
(`python -m modelspec`) in a fresh temporary git repository:

* chain of N tiny stages (s0 <- seed, s_i <- s_{i-1}) and fan-out of N stages (s0 <- seed,
  s_1..s_{N-1} <- s0), each `/bin/sh -c "cat IN > OUT; echo ${config.p.s_i} >> OUT"`, with one
  Hydra config key per stage so that a config change targets exactly one stage;
* first build, no-op build (median), incremental build after changing the config value of the
  middle stage (and a check of how many stages ran), per-stage overhead;
* the same with `hermetic: auto` (bubblewrap) at small sizes;
* `modelspec --help`, no-op build of specs/fraud.yaml (only if it is already built);
* hashing a large file: blake3's own throughput vs digest_file vs the stat cache, and a
  build with a large data input;
* optionally (--dvc) the chain workload run by DVC in a venv cached under
  ~/.cache/modelspec-bench/dvc-venv, side by side;
* optionally (--profile) cProfile of every thread of the first and no-op build of the largest chain.

The CLI runs with its bytecode cached in ~/.cache/modelspec-bench/pycache (PYTHONPYCACHEPREFIX),
as it would be for an installed package, even where PYTHONDONTWRITEBYTECODE is set; runs are
preceded by an untimed warm-up. Figures are wall-clock and sensitive to other load on the
machine: the load average before and after is printed.

With --compare BEFORE_EXE, --modelspec EXE (repeatable) or --issue21 it measures instead every
figure of issue 21's budget table, for each executable side by side (default executable: this
checkout, `python -m modelspec`; with --compare it is the `after` column and BEFORE_EXE `before`):

* no-op build and `plan` of a chain at each size (budgets at 1,000 and 10,000: --sizes 1000,10000;
  a 10,000-stage first build takes minutes per executable, progress goes to stderr; a chain whose
  spec would pass modelspec's 1 MiB limit is written compactly: `cp` stages, no config key);
* overhead per executed stage of the first build, hermetic off and under bubblewrap (chain of
  min(max size, 1,000)): (wall - the stages' own seconds from `build --json`) / N;
* the fraud example's no-op build (built first by each executable in a fresh git repository, as
  tests/integration/test_fraud.py does; without its `gates:` when an executable predates them),
  then `versions fraud` and `show fraud@latest` (median of 5; --no-fraud: on the largest chain);
* on a fan-out whose `artifacts:` list every stage's output (sizes capped at 1,000, and 100
  beside 1,000): `checkout` of N artifacts and its per-artifact time at the largest size against
  the smallest >= 100 (linear in N), and "one stage changed" (a new config value for stage N/2,
  1 stage runs): build wall minus that stage's own seconds, with the fan-out's no-op beside it.

Each workload is generated once and copied for each executable before its first build, so no
store is shared (a store written by one version is not read by another). Every timed read-only
command runs in two bytecode modes, interleaved across executables: `cached` (as above) and
`uncached` (PYTHONDONTWRITEBYTECODE=1: modelspec's own modules compiled from source on every call,
as the issue measured them; the standard library and the dependencies load their bytecode, as in
any installed Python; --compile-everything compiles those too, as an empty PYTHONPYCACHEPREFIX
does); first builds are timed cached only. It prints one
table: figure | bytecode | before | after | after/before | budget | verdict of the last column
(--json: the same as JSON). --only chain,bwrap,fanout,fraud measures some of the workload groups
(`--only chain --sizes 10000` for the 10,000-stage no-op alone).

Exit status: 0 when every build succeeded (budgets being exceeded is reported as OVER, not
an error); 1 when a build failed or ran a wrong number of stages (or, for issue 21, a timed
command failed); 2 for bad arguments (an --modelspec/--compare that is not an executable).

    python benchmarks/bench.py                      # sizes 10,100,1000 and hashing
    python benchmarks/bench.py --sizes 10,100 --skip-hash --json
    python benchmarks/bench.py --compare /work/venv-before/bin/modelspec --sizes 1000   # issue 21, before/after
    python benchmarks/bench.py --modelspec OLD_EXE --modelspec NEW_EXE --sizes 1000,10000 --json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GIB = 1 << 30
MIB = 1 << 20

# DESIGN.md §9 budgets.
BUDGET_NOOP_FRAUD_S = 0.5
BUDGET_NOOP_1000_S = 1.0
BUDGET_STAGE_OVERHEAD_S = 0.030
BUDGET_HASH_RATIO = 0.80
BUDGET_HELP_S = 0.3
FLAT_TOLERANCE = 1.5  # "flat": the marginal per-stage cost at the largest sizes <= 1.5x that at the smallest

# DESIGN.md §9: DVC 3.67 on these 2-core machines, chain of N tiny stages (for context).
DVC_REFERENCE = (
    "DVC 3.67 reference (DESIGN.md §9), chain: no-op 0.59 s @10, 20.7 s @500, 76.6 s @1000; "
    "first 1.15 s @10, 549 s @500"
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


# -- small helpers ---------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


PYCACHE = Path.home() / ".cache" / "modelspec-bench" / "pycache"
USE_BYTECODE_CACHE = True  # --no-bytecode-cache turns it off


def child_env() -> dict[str, str]:
    env = {**os.environ, **GIT_ENV}
    env.pop("MODELSPEC_HOME", None)  # every workspace keeps its own store
    env["DVC_NO_ANALYTICS"] = "1"
    if USE_BYTECODE_CACHE:
        # As installed for a user: bytecode is cached. Kept outside the repository (PYTHONPYCACHEPREFIX),
        # also when this environment sets PYTHONDONTWRITEBYTECODE.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def modelspec_cmd() -> list[str]:
    """`python -m modelspec`, or the console script beside the interpreter (never the pyenv shim)."""
    if (REPO / "modelspec" / "__main__.py").exists():
        return [sys.executable, "-m", "modelspec"]
    script = Path(sys.executable).parent / "modelspec"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from modelspec.cli import main; main()"]


@dataclass
class Run:
    argv: list[str]
    wall: float
    returncode: int
    stdout: str
    stderr: str

    def tail(self, lines: int = 15) -> str:
        text = (self.stderr.strip() + "\n" + self.stdout.strip()).strip()
        return "\n".join(text.splitlines()[-lines:])


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env or child_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    return Run(argv, wall, proc.returncode, proc.stdout, proc.stderr)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=child_env(), check=True, capture_output=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_s(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def fmt_ms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    return f"{seconds * 1000:.1f} ms"


def fmt_rate(bytes_: int, seconds: float) -> str:
    return f"{bytes_ / GIB / seconds:.2f} GiB/s" if seconds > 0 else "-"


class BenchError(Exception):
    """A build that failed or ran a wrong number of stages: an actual error (exit 1)."""


# -- results ---------------------------------------------------------------------------------


@dataclass
class Budget:
    what: str
    figure: str
    budget: str
    ok: bool | None  # None: not applicable / not measured

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("ok" if self.ok else "OVER")


@dataclass
class Results:
    meta: dict[str, Any] = field(default_factory=dict)
    cli: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    hashing: dict[str, Any] = field(default_factory=dict)
    dvc: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, Any] = field(default_factory=dict)
    budgets: list[Budget] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # actual errors: exit status 1
    warnings: list[str] = field(default_factory=list)  # reported, exit status unaffected

    def check(self, what: str, figure: str, budget: str, ok: bool | None) -> None:
        self.budgets.append(Budget(what, figure, budget, ok))

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "cli": self.cli,
            "baseline": self.baseline,
            "workloads": self.workloads,
            "hashing": self.hashing,
            "dvc": self.dvc,
            "profiles": self.profiles,
            "budgets": [
                {"what": b.what, "figure": b.figure, "budget": b.budget, "verdict": b.verdict} for b in self.budgets
            ],
            "errors": self.errors,
            "warnings": self.warnings,
        }


# -- generated workloads ---------------------------------------------------------------------


def stage_name(i: int) -> str:
    return f"s{i:04d}"


def write_config(conf_dir: Path, n: int, changed: dict[int, str] | None = None) -> None:
    changed = changed or {}
    lines = ["p:"] + [f"  {stage_name(i)}: {changed.get(i, f'v{i}')}" for i in range(n)]
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "config.yaml").write_text("\n".join(lines) + "\n")


def upstream_of(shape: str, i: int) -> str:
    if i == 0:
        return "seed"
    return f"{stage_name(i - 1 if shape == 'chain' else 0)}.out"


def spec_text(
    name: str,
    shape: str,
    n: int,
    hermetic: str,
    data_path: str = "seed.txt",
    command: str = "cat {inp} > {out}; echo {cfg} >> {out}",
    all_artifacts: bool = False,
) -> str:
    text = spec_text_full(name, shape, n, hermetic, data_path, command, all_artifacts)
    if len(text.encode()) <= MAX_SPEC_BYTES or all_artifacts:
        return text
    return spec_text_compact(name, shape, n, hermetic, data_path)


# modelspec reads a spec of at most 1 MiB; a 10,000-stage chain written out in full is about 1.9 MiB.
MAX_SPEC_BYTES = 1 << 20


def spec_text_compact(name: str, shape: str, n: int, hermetic: str, data_path: str) -> str:
    """About 90 bytes a stage (flow style, `cp IN OUT`, no config key): what fits 10,000 stages in 1 MiB.
    Every output holds the seed's bytes, so no config change can target a stage: only first and no-op
    builds (and plan) are measured on it."""
    lines = [
        "modelspec: 1",
        f"name: {name}",
        'version: "1.0"',
        "code: {repo: ., ref: HEAD}",
        f"data: {{seed: {{path: {data_path}}}}}",
        f'hermetic: "{hermetic}"',
        "stages:",
    ]
    for i in range(n):
        inp = upstream_of(shape, i).removesuffix(".out") + (".o" if i else "")
        lines.append(
            f'  {stage_name(i)}: {{cmd: "cp ${{inputs.{inp}}} ${{outputs.o}}", inputs: [{inp}], outputs: {{o: o}}}}'
        )
    lines.append(f"artifacts: [{stage_name(n - 1)}.o]")
    return "\n".join(lines) + "\n"


def spec_text_full(
    name: str,
    shape: str,
    n: int,
    hermetic: str,
    data_path: str,
    command: str,
    all_artifacts: bool,
) -> str:
    lines = [
        "modelspec: 1",
        f"name: {name}",
        'version: "1.0"',
        "code: {repo: ., ref: HEAD}",
        f"data: {{seed: {{path: {data_path}}}}}",
        "config: {dir: conf, name: config}",
        f'hermetic: "{hermetic}"',
        "stages:",
    ]
    for i in range(n):
        s = stage_name(i)
        inp = upstream_of(shape, i)
        cmd = command.format(inp=f"${{inputs.{inp}}}", out="${outputs.out}", cfg=f"${{config.p.{s}}}")
        lines += [
            f"  {s}:",
            f"    cmd: [/bin/sh, -c, {json.dumps(cmd)}]",
            f"    inputs: [{inp}]",
            f"    params: [p.{s}]",
            "    outputs: {out: out.txt}",
        ]
    # all_artifacts: every stage's output is an artifact (checkout of N artifacts), else the last one.
    artifacts = [f"{stage_name(i)}.out" for i in range(n)] if all_artifacts else [f"{stage_name(n - 1)}.out"]
    lines.append(f"artifacts: [{', '.join(artifacts)}]")
    return "\n".join(lines) + "\n"


def expected_incremental(shape: str, n: int, mid: int) -> int:
    """Stages that must run after the config value of stage `mid` changed."""
    return n - mid if shape == "chain" else 1


def make_repo(root: Path, shape: str, n: int, hermetic: str, all_artifacts: bool = False) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    (root / "seed.txt").write_text("seed\n")
    write_config(root / "conf", n)
    (root / "spec.yaml").write_text(spec_text(f"{shape}{n}", shape, n, hermetic, all_artifacts=all_artifacts))
    git(root, "add", "-A")
    git(root, "-c", "commit.gpgsign=false", "commit", "-q", "-m", "generated workload")
    return root / "spec.yaml"


def build_json(cwd: Path, spec: Path, extra: list[str], jobs: int) -> tuple[Run, dict[str, Any] | None]:
    run = timed([*modelspec_cmd(), "build", str(spec), *extra, "-j", str(jobs), "--json"], cwd)
    try:
        document = json.loads(run.stdout)
    except ValueError:
        document = None
    return run, document


def states(document: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in document.get("nodes", []):
        counts[row.get("state", "?")] = counts.get(row.get("state", "?"), 0) + 1
    return counts


def failure_text(run: Run, document: dict[str, Any] | None) -> str:
    """Why a build failed: its failed nodes with their reasons and log tails, else its output's tail."""
    if not document:
        return run.tail()
    lines = []
    for row in document.get("nodes", []):
        if row.get("state") == "failed":
            lines.append(f"  {row.get('node')}: {row.get('reason')}")
            log_file = row.get("log")
            if log_file:
                with contextlib.suppress(OSError):
                    tail = Path(log_file).read_text(errors="replace").strip().splitlines()[-5:]
                    lines += [f"    | {line}" for line in tail]
    return "\n".join(lines) or run.tail()


def checked_build(
    label: str, cwd: Path, spec: Path, jobs: int, expect_ran: int, extra: list[str] | None = None
) -> tuple[Run, dict[str, Any]]:
    run, document = build_json(cwd, spec, extra or [], jobs)
    if run.returncode != 0 or document is None or not document.get("ok"):
        raise BenchError(f"{label}: build failed (exit {run.returncode})\n{failure_text(run, document)}")
    ran = states(document).get("ran", 0)
    if ran != expect_ran:
        raise BenchError(f"{label}: {ran} stages ran, expected {expect_ran}")
    return run, document


def plain_noop(label: str, cwd: Path, spec: Path, jobs: int, n: int) -> float:
    """A no-op build without --json; checked through its summary line (`ok: N cached ...`) when it has one."""
    run = timed([*modelspec_cmd(), "build", str(spec), "-j", str(jobs)], cwd)
    if run.returncode != 0:
        raise BenchError(f"{label} no-op build (plain output): build failed (exit {run.returncode})\n{run.tail()}")
    summary = re.search(r"ok: (\d+) cached in", run.stdout + run.stderr)
    if summary and int(summary.group(1)) != n:
        raise BenchError(f"{label} no-op build (plain output): {run.tail(1)}")
    return run.wall


def ran_seconds(document: dict[str, Any]) -> float:
    return sum(row.get("seconds") or 0.0 for row in document.get("nodes", []) if row.get("state") == "ran")


def run_workload(base: Path, shape: str, n: int, hermetic: str, jobs: int, repeat: int) -> dict[str, Any]:
    label = f"{shape} N={n} hermetic={hermetic}"
    root = base / f"{shape}-{n}-{hermetic}"
    log(f"  {label}: generating")
    spec = make_repo(root, shape, n, hermetic)
    out: dict[str, Any] = {"shape": shape, "n": n, "hermetic": hermetic, "dir": str(root)}

    log(f"  {label}: first build")
    first, document = checked_build(f"{label} first build", root, spec, jobs, n)
    out["first_s"] = first.wall
    out["first_reported_s"] = document.get("seconds")
    out["stage_seconds_sum"] = ran_seconds(document)
    if hermetic != "off":
        records = document.get("specs", {})
        out["sandboxed"] = all(r.get("hermetic") for r in records.values()) if records else None

    log(f"  {label}: no-op builds x{repeat}")
    noops = [checked_build(f"{label} no-op build", root, spec, jobs, 0)[0].wall for _ in range(repeat)]
    out["noop_s"] = median(noops)
    out["noop_all_s"] = noops
    # What a user types: no --json, so the console output (one line per cached stage) is part of it.
    plain = [plain_noop(label, root, spec, jobs, n) for _ in range(repeat)]
    out["noop_plain_s"] = median(plain)

    mid = n // 2
    write_config(root / "conf", n, {mid: f"changed{mid}"})
    expect = expected_incremental(shape, n, mid)
    log(f"  {label}: incremental build (config of {stage_name(mid)} changed, expect {expect} to run)")
    inc, inc_doc = build_json(root, spec, [], jobs)
    if inc.returncode != 0 or inc_doc is None or not inc_doc.get("ok"):
        raise BenchError(
            f"{label} incremental build: build failed (exit {inc.returncode})\n{failure_text(inc, inc_doc)}"
        )
    out["incremental_s"] = inc.wall
    out["incremental_ran"] = states(inc_doc).get("ran", 0)
    out["incremental_expected"] = expect
    out["incremental_stage_seconds_sum"] = ran_seconds(inc_doc)

    out["overhead_per_stage_s"] = (first.wall - out["stage_seconds_sum"]) / n
    out["wall_per_stage_s"] = first.wall / n
    return out


# -- baselines: the command itself, with and without bubblewrap ------------------------------------


def bare_command_seconds(base: Path, repeat: int = 30) -> float:
    work = base / "bare"
    work.mkdir(parents=True, exist_ok=True)
    (work / "in.txt").write_text("seed\n")
    argv = ["/bin/sh", "-c", "cat in.txt > out.txt; echo v1 >> out.txt"]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=work, check=True)
        times.append(time.perf_counter() - start)
    return median(times)


def bare_bwrap_seconds(base: Path, repeat: int = 20) -> float | None:
    """The same command run by modelspec's own bwrap command line (BubblewrapSandbox.command)."""
    try:
        from modelspec.sandbox.bwrap import BubblewrapSandbox, bwrap_path
        from modelspec.sandbox.process import RunRequest
    except ImportError:
        return None
    if bwrap_path() is None:
        return None
    work = base / "bare-bwrap"
    for name in ("code", "in/prev", "out", "home"):
        (work / name).mkdir(parents=True, exist_ok=True)
    (work / "in" / "prev" / "in.txt").write_text("seed\n")
    (work / "config.json").write_text('{"p": {"s": "v1"}}\n')
    request = RunRequest(
        argv=["/bin/sh", "-c", "cat ${inputs.prev} > ${outputs.out}; echo ${config.p.s} >> ${outputs.out}"],
        shell=False,
        inputs={"prev": "in.txt"},
        outputs={"out": "out.txt"},
        params={"p": {"s": "v1"}},
        workdir=work,
        log=work / "log",
    )
    try:
        argv = BubblewrapSandbox().command(request)
    except Exception:  # an internal API: it may change
        return None
    times = []
    for _ in range(repeat):
        with contextlib.suppress(FileNotFoundError):
            (work / "out" / "out.txt").unlink()
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=work, capture_output=True, env={})
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            return None
    return median(times)


def warm_up(base: Path, jobs: int) -> None:
    """Untimed: fill the bytecode cache and the OS caches, so the first timed run is not an outlier."""
    log("warm-up: --help and a 2-stage build")
    timed([*modelspec_cmd(), "--help"], REPO)
    spec = make_repo(base / "warm-up", "chain", 2, "off")
    build_json(base / "warm-up", spec, [], jobs)
    build_json(base / "warm-up", spec, [], jobs)


# -- CLI figures -----------------------------------------------------------------------------------


def cli_figures(results: Results, repeat_help: int = 5) -> None:
    env = child_env()
    log("CLI: python startup, modelspec --help")
    startup = [timed([sys.executable, "-c", "pass"], REPO, env).wall for _ in range(repeat_help)]
    results.cli["python_startup_s"] = median(startup)
    helps = []
    for _ in range(repeat_help):
        run = timed([*modelspec_cmd(), "--help"], REPO, env)
        if run.returncode != 0:
            raise BenchError(f"modelspec --help failed (exit {run.returncode})\n{run.tail()}")
        helps.append(run.wall)
    results.cli["help_s"] = median(helps)
    results.cli["help_cmd"] = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(modelspec_cmd()))
    results.check(
        "modelspec --help (median of 5)",
        fmt_s(results.cli["help_s"]),
        f"< {BUDGET_HELP_S} s",
        results.cli["help_s"] < BUDGET_HELP_S,
    )


def fraud_noop(results: Results, repeat: int) -> None:
    """No-op build of specs/fraud.yaml in the repository, only if its workspace already built it."""
    spec = REPO / "specs" / "fraud.yaml"
    record = REPO / ".modelspec" / "builds" / "fraud.json"
    info: dict[str, Any] = {}
    results.cli["fraud"] = info
    if not spec.exists() or not record.exists():
        info["status"] = "not built"
        results.check("no-op build specs/fraud.yaml", "not built", f"< {BUDGET_NOOP_FRAUD_S} s", None)
        return
    log("CLI: plan specs/fraud.yaml (is it up to date?)")
    plan = timed([*modelspec_cmd(), "plan", "specs/fraud.yaml", "--json"], REPO)
    try:
        nodes = json.loads(plan.stdout)["nodes"]
    except (ValueError, KeyError, TypeError):
        info["status"] = f"cannot plan (exit {plan.returncode}): {plan.tail(3)}"
        results.check("no-op build specs/fraud.yaml", "cannot plan", f"< {BUDGET_NOOP_FRAUD_S} s", None)
        return
    pending = [n["node"] for n in nodes if n.get("status") != "cached"]
    info["plan_s"] = plan.wall
    if pending:
        # Building would run stages (train the model): not ours to do in another engineer's workspace.
        info["status"] = f"not up to date ({len(pending)} of {len(nodes)} stages would run); not built by the benchmark"
        results.check("no-op build specs/fraud.yaml", "not up to date", f"< {BUDGET_NOOP_FRAUD_S} s", None)
        return
    log(f"CLI: no-op build specs/fraud.yaml x{repeat}")
    walls = []
    for _ in range(repeat):
        run = timed([*modelspec_cmd(), "build", "specs/fraud.yaml", "--json"], REPO)
        try:
            document = json.loads(run.stdout)
        except ValueError:
            document = {}
        if run.returncode != 0 or not document.get("ok") or states(document).get("ran", 0):
            info["status"] = f"no-op build did not behave as a no-op (exit {run.returncode}): {run.tail(3)}"
            results.warnings.append(f"fraud no-op build: {info['status']}")
            return
        walls.append(run.wall)
    info["status"] = "ok"
    info["noop_s"] = median(walls)
    info["noop_all_s"] = walls
    results.check(
        f"no-op build specs/fraud.yaml (median of {repeat})",
        fmt_s(info["noop_s"]),
        f"< {BUDGET_NOOP_FRAUD_S} s",
        info["noop_s"] < BUDGET_NOOP_FRAUD_S,
    )


# -- hashing -----------------------------------------------------------------------------------------


def make_big_file(path: Path, size: int) -> None:
    block = os.urandom(min(64 * MIB, size))
    with open(path, "wb") as f:
        written = 0
        while written < size:
            chunk = block[: size - written]
            f.write(chunk)
            written += len(chunk)
    old = time.time() - 3600  # older than the stat cache's racy window (2 s)
    os.utime(path, (old, old))


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def hashing_figures(results: Results, base: Path, gib: float, jobs: int) -> None:
    import blake3

    from modelspec.digest import digest_file
    from modelspec.store.objects import LocalStore
    from modelspec.store.statcache import StatCache

    size = int(gib * GIB)
    work = base / "hash"
    work.mkdir(parents=True)
    big = work / "big.bin"
    log(f"hashing: writing a {size / GIB:.2f} GiB file")
    make_big_file(big, size)
    h = results.hashing
    h["bytes"] = size

    def reference() -> str:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(str(big))
        return hasher.hexdigest()

    log("hashing: blake3 reference, digest_file")
    reference()  # warm the page cache: every figure below reads from memory
    # Interleaved, best of 5 each: load from other processes hits both alike.
    ref_times, our_times, ref_hex, ours = [], [], "", ""
    for _ in range(5):
        t, ref_hex = best_of(reference, 1)
        ref_times.append(t)
        t, ours = best_of(lambda: digest_file(big), 1)
        our_times.append(t)
    h["reference_s"], h["digest_file_s"] = min(ref_times), min(our_times)
    if ours != f"blake3:{ref_hex}":
        raise BenchError("digest_file disagrees with blake3")
    h["ratio"] = h["reference_s"] / h["digest_file_s"]
    results.check(
        "digest_file throughput vs blake3 (1 GiB)" if gib == 1 else f"digest_file vs blake3 ({gib:g} GiB)",
        f"{h['ratio'] * 100:.0f}%",
        f">= {BUDGET_HASH_RATIO * 100:.0f}%",
        h["ratio"] >= BUDGET_HASH_RATIO,
    )

    log("hashing: stat cache")
    cache_file = work / "stat.json"
    cache = StatCache(cache_file)
    start = time.perf_counter()
    first = cache.digest(big)
    h["statcache_first_s"] = time.perf_counter() - start
    start = time.perf_counter()
    second = cache.digest(big)
    h["statcache_second_s"] = time.perf_counter() - start
    cache.save()
    reloaded = StatCache(cache_file)
    start = time.perf_counter()
    third = reloaded.digest(big)
    h["statcache_reloaded_s"] = time.perf_counter() - start
    if not first == second == third == ours:
        raise BenchError("the stat cache returned a different digest")
    hit = max(h["statcache_second_s"], h["statcache_reloaded_s"]) < 0.05 * h["reference_s"]
    h["statcache_hit"] = hit
    results.check(
        "unchanged file not read twice (stat cache)",
        f"2nd {fmt_ms(h['statcache_second_s'])}, reloaded {fmt_ms(h['statcache_reloaded_s'])}",
        "cache hit (no re-hash)",
        hit,
    )

    log("hashing: LocalStore.put_file (copy into the store)")
    store = LocalStore(work / "store")
    start = time.perf_counter()
    stored = store.put_file(big)
    h["store_put_file_s"] = time.perf_counter() - start
    if stored != ours:
        raise BenchError("LocalStore.put_file computed a different digest")
    start = time.perf_counter()
    store.verify(stored)
    h["store_verify_s"] = time.perf_counter() - start
    with contextlib.suppress(OSError):
        store.delete(stored)

    big_input_build(results, base, big, jobs)


# Runs the CLI with blake3.blake3 replaced by a counting wrapper: how many bytes a build hashes
# (the stat cache, copying into the store and the store's verification all hash through blake3).
HASH_COUNT_WRAPPER = r"""
import os, runpy, sys
import blake3
out = sys.argv[1]
sys.argv = ["modelspec", *sys.argv[2:]]
_Base = blake3.blake3
total = [0]
class CountingBlake3:
    AUTO = _Base.AUTO
    def __init__(self, data=b"", **kwargs):
        self._h = _Base(**kwargs)
        if data:
            self.update(data)
    def update(self, data):
        total[0] += memoryview(data).nbytes
        self._h.update(data)
        return self
    def update_mmap(self, path):
        total[0] += os.stat(path).st_size
        self._h.update_mmap(path)
        return self
    def __getattr__(self, name):
        return getattr(self._h, name)
blake3.blake3 = CountingBlake3
try:
    runpy.run_module("modelspec", run_name="__main__", alter_sys=True)
finally:
    with open(out, "w") as f:
        f.write(str(total[0]))
"""


def counted_build(label: str, base: Path, cwd: Path, spec: Path, jobs: int, expect_ran: int) -> tuple[Run, int]:
    """A build through HASH_COUNT_WRAPPER: its run and the number of bytes it hashed."""
    counter = base / "hashed-bytes"
    counter.unlink(missing_ok=True)
    run = timed(
        [sys.executable, "-c", HASH_COUNT_WRAPPER, str(counter), "build", str(spec), "-j", str(jobs), "--json"], cwd
    )
    try:
        document = json.loads(run.stdout)
    except ValueError:
        document = None
    if run.returncode != 0 or document is None or not document.get("ok"):
        raise BenchError(f"{label}: build failed (exit {run.returncode})\n{failure_text(run, document)}")
    ran = states(document).get("ran", 0)
    if ran != expect_ran:
        raise BenchError(f"{label}: {ran} stages ran, expected {expect_ran}")
    try:
        hashed = int(counter.read_text())
    except (OSError, ValueError):
        hashed = -1
    return run, hashed


def big_input_build(results: Results, base: Path, big: Path, jobs: int) -> None:
    """One stage reading the big file as data: first build, no-op, and a rerun after a config change,
    each with the number of bytes it hashed. An unchanged input should not be read again."""
    h = results.hashing
    size = h["bytes"]
    log("hashing: builds with the big file as a data input (bytes hashed counted)")
    root = base / "big-input"
    root.mkdir()
    git(root, "init", "-q")
    (root / ".gitignore").write_text("big.bin\n")
    os.link(big, root / "big.bin")  # same inode: its mtime is already old
    write_config(root / "conf", 1)
    (root / "spec.yaml").write_text(
        spec_text(
            "biginput", "chain", 1, "off", data_path="big.bin", command="wc -c < {inp} > {out}; echo {cfg} >> {out}"
        )
    )
    git(root, "add", "-A")
    git(root, "-c", "commit.gpgsign=false", "commit", "-q", "-m", "big input")
    spec = root / "spec.yaml"
    first, h["big_first_hashed"] = counted_build("big-input first build", base, root, spec, jobs, 1)
    noop, h["big_noop_hashed"] = counted_build("big-input no-op build", base, root, spec, jobs, 0)
    write_config(root / "conf", 1, {0: "changed"})
    rerun, h["big_rerun_hashed"] = counted_build("big-input rerun", base, root, spec, jobs, 1)
    h["big_first_s"], h["big_noop_s"], h["big_rerun_s"] = first.wall, noop.wall, rerun.wall
    results.check(
        "build with a big input, no-op: bytes hashed",
        f"{h['big_noop_hashed'] / size:.2f}x the input",
        "0x (stat cache)",
        0 <= h["big_noop_hashed"] < 0.01 * size,
    )
    results.check(
        "build with a big input, stage rerun: bytes hashed",
        f"{h['big_rerun_hashed'] / size:.2f}x the input",
        "0x (input unchanged)",
        0 <= h["big_rerun_hashed"] < 0.01 * size,
    )
    results.meta["note_big_input"] = (
        "a stage rerun restores the unchanged input from the store; "
        "hashing it again there counts as reading an unchanged file twice"
    )


# -- DVC -------------------------------------------------------------------------------------------


def dvc_venv() -> Path | None:
    venv = Path.home() / ".cache" / "modelspec-bench" / "dvc-venv"
    dvc = venv / "bin" / "dvc"
    if dvc.exists() and subprocess.run([str(dvc), "--version"], capture_output=True).returncode == 0:
        return dvc
    log(f"dvc: creating {venv} and installing dvc==3.* (once)")
    try:
        if venv.exists():
            shutil.rmtree(venv)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "dvc==3.*"],
            check=True,
            capture_output=True,
            timeout=1800,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"dvc: install failed: {exc}")
        return None
    ok = dvc.exists() and subprocess.run([str(dvc), "--version"], capture_output=True).returncode == 0
    return dvc if ok else None


def dvc_chain(dvc: Path, base: Path, n: int, repeat: int) -> dict[str, Any]:
    root = base / f"dvc-chain-{n}"
    root.mkdir()
    git(root, "init", "-q")
    env = child_env()
    subprocess.run([str(dvc), "init", "-q"], cwd=root, env=env, check=True, capture_output=True)
    (root / "seed.txt").write_text("seed\n")
    (root / "params.yaml").write_text("p:\n" + "".join(f"  {stage_name(i)}: v{i}\n" for i in range(n)))
    lines = ["stages:"]
    for i in range(n):
        s = stage_name(i)
        prev = "seed.txt" if i == 0 else f"out/{stage_name(i - 1)}.txt"
        lines += [
            f"  {s}:",
            f'    cmd: /bin/sh -c "cat {prev} > out/{s}.txt; echo ${{p.{s}}} >> out/{s}.txt"',
            f"    deps: [{prev}]",
            f"    params: [p.{s}]",
            f"    outs: [out/{s}.txt]",
        ]
    (root / "dvc.yaml").write_text("\n".join(lines) + "\n")
    (root / "out").mkdir()
    (root / "out" / ".gitkeep").write_text("")
    git(root, "add", "-A")
    git(root, "-c", "commit.gpgsign=false", "commit", "-q", "-m", "dvc workload")
    first = timed([str(dvc), "repro", "-q"], root, env)
    if first.returncode != 0:
        raise BenchError(f"dvc repro (chain N={n}) failed\n{first.tail()}")
    noops = []
    for _ in range(repeat):
        run = timed([str(dvc), "repro", "-q"], root, env)
        if run.returncode != 0:
            raise BenchError(f"dvc no-op repro (chain N={n}) failed\n{run.tail()}")
        noops.append(run.wall)
    return {"n": n, "first_s": first.wall, "noop_s": median(noops), "dir": str(root)}


def dvc_figures(results: Results, base: Path, sizes: list[int], repeat: int) -> None:
    dvc = dvc_venv()
    if dvc is None:
        results.dvc["status"] = "unavailable"
        return
    version = subprocess.run([str(dvc), "--version"], capture_output=True, text=True).stdout.strip()
    results.dvc["status"] = f"dvc {version}"
    results.dvc["runs"] = []
    for n in [s for s in sizes if s in (10, 100)] or sizes[:1]:
        log(f"dvc: chain N={n}")
        try:
            results.dvc["runs"].append(dvc_chain(dvc, base, n, repeat))
        except BenchError as exc:  # DVC failing is not modelspec failing
            results.dvc["runs"].append({"n": n, "error": str(exc)})


# -- profiling (--profile) ---------------------------------------------------------------------------

# cProfile sees only the thread it runs in; the build runs its stages in a thread pool, so the
# wrapper starts one profiler per thread (threading.setprofile) and merges them.
PROFILE_WRAPPER = r"""
import cProfile, pstats, runpy, sys, threading
out = sys.argv[1]
sys.argv = ["modelspec", *sys.argv[2:]]
profilers = []
def _start(*_args):
    p = cProfile.Profile(); profilers.append(p); p.enable()
threading.setprofile(_start)
main = cProfile.Profile(); profilers.append(main); main.enable()
try:
    runpy.run_module("modelspec", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    main.disable()
    stats = pstats.Stats(profilers[0])
    for p in profilers[1:]:
        stats.add(p)
    stats.dump_stats(out)
"""


def profile_build(base: Path, label: str, root: Path, spec: Path, jobs: int, top: int = 15) -> dict[str, Any]:
    import io
    import pstats

    prof = base / f"{label}.prof"
    run = timed([sys.executable, "-c", PROFILE_WRAPPER, str(prof), "build", str(spec), "-j", str(jobs), "--json"], root)
    if run.returncode != 0 or not prof.exists():
        return {"error": run.tail()}
    buffer = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buffer)
    stats.sort_stats("tottime").print_stats(top)
    text = buffer.getvalue()
    buffer2 = io.StringIO()
    # modelspec's own functions by cumulative time: where the build's time goes, waits excluded
    pstats.Stats(str(prof), stream=buffer2).sort_stats("cumulative").print_stats(r"/modelspec/(?!__main__)", top)
    return {
        "file": str(prof),
        "wall_s": run.wall,
        "tottime": _trim_pstats(text),
        "cumulative": _trim_pstats(buffer2.getvalue()),
    }


def _trim_pstats(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


def profile_figures(results: Results, base: Path, n: int, jobs: int) -> None:
    log(f"profile: chain N={n} first build and no-op build")
    root = base / f"profile-chain-{n}"
    spec = make_repo(root, "chain", n, "off")
    results.profiles["first"] = profile_build(base, f"chain{n}-first", root, spec, jobs)
    results.profiles["noop"] = profile_build(base, f"chain{n}-noop", root, spec, jobs)


# -- issue 21: every figure of its budget table, before/after (--compare, --modelspec) ----------------

# Issue 21's budgets, in seconds (per stage for the overheads); `n` is the size a budget applies to.
BUDGET21_NOOP_S = {1000: 0.5, 10000: 3.0}
BUDGET21_PLAN_S = {1000: 0.4}
BUDGET21_OVERHEAD_OFF_S = 0.005
BUDGET21_OVERHEAD_BWRAP_S = 0.010
BUDGET21_FRAUD_NOOP_S = 0.25
BUDGET21_REGISTRY_READ_S = 0.25
BUDGET21_CHECKOUT_S = {1000: 1.0}
BUDGET21_CHANGED_S = {1000: 0.5}
REPEAT_REGISTRY_READS = 5  # the issue: median of 5
HEARTBEAT_S = 60.0  # a long first build logs that it is still running this often

# Each timed read-only command runs in both modes, interleaved: `cached` = bytecode cached in PYCACHE
# (an installed package's second call); `uncached` = PYTHONDONTWRITEBYTECODE=1 and modelspec's own
# modules compiled from source on every call (see mirror_without_modelspec; --compile-everything: all).
BYTECODE_MODES = ("cached", "uncached")


@dataclass(frozen=True)
class Cli:
    """One install of modelspec to time: a column of the before/after table."""

    label: str
    argv: tuple[str, ...]
    version: str = ""


@dataclass
class Figure:
    """One row group of the before/after table: a value per CLI label and bytecode mode."""

    what: str
    unit: str  # "s", "ms" (a per-stage overhead, stored in seconds) or "x" (a ratio)
    budget: float | None  # None: no budget in issue 21 at this size (shown for context)
    values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    note: str = ""

    def put(self, label: str, mode: str, value: float | None) -> None:
        self.values.setdefault(label, {})[mode] = value

    def modes(self) -> list[str]:
        return [m for m in BYTECODE_MODES if any(m in v for v in self.values.values())]


def issue21_env(mode: str, uncached_pycache: Path) -> dict[str, str]:
    env = {**os.environ, **GIT_ENV}
    env.pop("MODELSPEC_HOME", None)  # every workspace copy keeps its own store
    if mode == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing is written to the prefix: every run compiles again
        env["PYTHONPYCACHEPREFIX"] = str(uncached_pycache)
    return env


def mirror_without_modelspec(source: Path, mirror: Path) -> None:
    """Hard links in `mirror` to the bytecode in `source` (a PYTHONPYCACHEPREFIX), except that of
    any modelspec package (a folder `modelspec` holding launch's bytecode). As the prefix of an
    uncached run, modelspec's own modules compile from source while the standard library and the
    dependencies load their bytecode: what the issue measured (an editable install under
    PYTHONDONTWRITEBYTECODE), and what a first call sees wherever modelspec's bytecode is not written."""
    for folder, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not (d == "modelspec" and any(Path(folder, d).glob("launch.*.pyc")))]
        target = mirror / Path(folder).relative_to(source)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            with contextlib.suppress(FileExistsError):
                os.link(Path(folder, name), target / name)


@dataclass
class Issue21:
    """The state of the before/after run: the CLIs, where they work, and the figures so far."""

    clis: list[Cli]
    base: Path
    repeat: int
    figures: list[Figure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    compile_everything: bool = False  # uncached: the standard library and dependencies compile too

    @property
    def uncached_pycache(self) -> Path:
        return self.base / "uncached-pycache"

    def env(self, mode: str = "cached") -> dict[str, str]:
        if mode == "uncached":
            self.uncached_pycache.mkdir(parents=True, exist_ok=True)
            if not self.compile_everything:  # what the cached runs compiled meanwhile, modelspec's left out
                mirror_without_modelspec(PYCACHE, self.uncached_pycache)
        return issue21_env(mode, self.uncached_pycache)

    def figure(self, what: str, unit: str, budget: float | None, note: str = "") -> Figure:
        fig = Figure(what, unit, budget, note=note)
        self.figures.append(fig)
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {
            "clis": [{"label": c.label, "argv": list(c.argv), "version": c.version} for c in self.clis],
            "bytecode_modes": {
                "cached": f"PYTHONPYCACHEPREFIX={PYCACHE}",
                "uncached": (
                    "PYTHONDONTWRITEBYTECODE=1 and an empty PYTHONPYCACHEPREFIX (every module compiled)"
                    if self.compile_everything
                    else "PYTHONDONTWRITEBYTECODE=1, modelspec's modules compiled, the rest from bytecode"
                ),
            },
            "figures": [
                {
                    "what": f.what,
                    "unit": "s" if f.unit == "ms" else f.unit,
                    "budget": f.budget,
                    "values": f.values,
                    "verdict": {m: verdict21(f, m) for m in f.modes()},
                    "note": f.note,
                }
                for f in self.figures
            ],
            "errors": self.errors,
            "warnings": self.warnings,
        }


def cli_run(cli: Cli, args: list[str], cwd: Path, env: dict[str, str], label: str = "") -> Run:
    """Run the CLI; when `label` is given, log every HEARTBEAT_S that it is still running."""
    argv = [*cli.argv, *args]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=HEARTBEAT_S)
            break
        except subprocess.TimeoutExpired:
            if label:
                log(f"    {label}: still running ({time.perf_counter() - start:.0f} s)")
    return Run(argv, time.perf_counter() - start, proc.returncode, stdout, stderr)


def cli_build(
    state: Issue21, cli: Cli, label: str, cwd: Path, spec: Path, expect_ran: int, mode: str = "cached"
) -> tuple[Run, dict[str, Any]]:
    """`build --json`, checked: exit 0, ok, and exactly `expect_ran` stages ran."""
    run = cli_run(cli, ["build", str(spec), "-j", "1", "--json"], cwd, state.env(mode), label=f"{label} ({cli.label})")
    try:
        document = json.loads(run.stdout)
    except ValueError:
        document = None
    if run.returncode != 0 or document is None or not document.get("ok"):
        raise BenchError(f"{label} ({cli.label}): build failed (exit {run.returncode})\n{failure_text(run, document)}")
    ran = states(document).get("ran", 0)
    if ran != expect_ran:
        raise BenchError(f"{label} ({cli.label}): {ran} stages ran, expected {expect_ran}")
    return run, document


def copies(state: Issue21, src: Path) -> dict[str, Path]:
    """One copy of the generated repository per CLI, made before any build: no store is shared."""
    out = {}
    for cli in state.clis:
        dst = src.parent / cli.label
        shutil.copytree(src, dst, symlinks=True)
        out[cli.label] = dst
    return out


def interleaved(
    state: Issue21, fig: Figure, dirs: dict[str, Path], args: list[str], repeat: int, check: Callable[[Run], str | None]
) -> None:
    """Time `args` in each CLI's directory, both bytecode modes, interleaved (load hits all alike); medians."""
    walls: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeat):
        for cli in state.clis:
            for mode in BYTECODE_MODES:
                run = cli_run(cli, args, dirs[cli.label], state.env(mode))
                problem = check(run)
                if problem:
                    raise BenchError(f"{fig.what} ({cli.label}, bytecode {mode}): {problem}\n{run.tail()}")
                walls.setdefault((cli.label, mode), []).append(run.wall)
    for (label, mode), values in walls.items():
        fig.put(label, mode, median(values))


def exit_zero(run: Run) -> str | None:
    return None if run.returncode == 0 else f"exit {run.returncode}"


def noop_check(n: int) -> Callable[[Run], str | None]:
    """A plain no-op build: exit 0 and, where the summary line says it, all N cached."""

    def check(run: Run) -> str | None:
        if run.returncode != 0:
            return f"exit {run.returncode}"
        summary = re.search(r"ok: (\d+) cached in", run.stdout + run.stderr)
        if summary and int(summary.group(1)) != n:
            return f"not a no-op: {run.tail(1)}"
        return None

    return check


def first_builds(state: Issue21, label: str, dirs: dict[str, Path], n: int) -> dict[str, tuple[Run, dict[str, Any]]]:
    out = {}
    for cli in state.clis:
        log(f"  {label}: first build by {cli.label}")
        out[cli.label] = cli_build(
            state, cli, f"{label} first build", dirs[cli.label], dirs[cli.label] / "spec.yaml", n
        )
    return out


def overhead_figure(state: Issue21, fig: Figure, firsts: dict[str, tuple[Run, dict[str, Any]]], n: int) -> None:
    for label, (run, document) in firsts.items():
        fig.put(label, "cached", (run.wall - ran_seconds(document)) / n)


def issue21_chain(state: Issue21, n: int) -> None:
    label = f"chain N={n}"
    log(f"  {label}: generating" + (" (the first builds take minutes)" if n >= 5000 else ""))
    src = make_repo(state.base / f"i21-chain-{n}" / "src", "chain", n, "off").parent
    dirs = copies(state, src)
    spec = ["spec.yaml"]
    firsts = first_builds(state, label, dirs, n)
    overhead_figure(
        state,
        state.figure(f"overhead per executed stage, hermetic off, {label}", "ms", BUDGET21_OVERHEAD_OFF_S),
        firsts,
        n,
    )
    for cli in state.clis:  # checked through --json once; then timed as a user types it
        cli_build(state, cli, f"{label} no-op build", dirs[cli.label], dirs[cli.label] / "spec.yaml", 0)
    log(f"  {label}: no-op builds x{state.repeat} per CLI and bytecode mode")
    noop = state.figure(f"no-op build, {label}", "s", BUDGET21_NOOP_S.get(n))
    interleaved(state, noop, dirs, ["build", *spec, "-j", "1"], state.repeat, noop_check(n))
    log(f"  {label}: plan x{state.repeat} per CLI and bytecode mode")
    plan = state.figure(f"`plan` no-op, {label}", "s", BUDGET21_PLAN_S.get(n))
    interleaved(state, plan, dirs, ["plan", *spec], state.repeat, exit_zero)


def issue21_bwrap(state: Issue21, n: int) -> None:
    label = f"chain N={n} hermetic=auto"
    if not shutil.which("bwrap"):
        state.warnings.append("bwrap is not installed: the overhead under bubblewrap was not measured")
        return
    log(f"  {label}: generating")
    src = make_repo(state.base / f"i21-bwrap-{n}" / "src", "chain", n, "auto").parent
    dirs = copies(state, src)
    firsts = first_builds(state, label, dirs, n)
    for cli_label, (_, document) in firsts.items():
        records = document.get("specs", {})
        if records and not all(r.get("hermetic") for r in records.values()):
            state.warnings.append(f"{label} ({cli_label}): hermetic: auto did NOT sandbox the stages")
    overhead_figure(
        state,
        state.figure(f"overhead per executed stage, bubblewrap, {label}", "ms", BUDGET21_OVERHEAD_BWRAP_S),
        firsts,
        n,
    )


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def issue21_fanout(state: Issue21, n: int, checkout_per_artifact: dict[int, Figure]) -> None:
    """Fan-out of N whose artifacts are every stage's output: checkout of N artifacts, and one stage changed."""
    label = f"fan-out N={n}"
    log(f"  {label} (every output an artifact): generating")
    src = make_repo(state.base / f"i21-fanout-{n}" / "src", "fanout", n, "off", all_artifacts=True).parent
    dirs = copies(state, src)
    first_builds(state, label, dirs, n)

    log(f"  {label}: checkout x{state.repeat} per CLI and bytecode mode")
    count = itertools.count()

    def checkout_args() -> list[str]:
        return ["checkout", "spec.yaml", "--out", str(state.base / f"i21-checkout-{n}-{next(count)}")]

    walls: dict[tuple[str, str], list[float]] = {}
    # Each checkout is removed only once all are timed: on ext4 without a journal (this machine's
    # disk) a new inode is never one freed in the last 5 minutes, and finding one scans past each
    # of those (the kernel's `recently_deleted`), so removing a checkout's 2,000 files and folders
    # made every later checkout slower (0.45 -> 1.03 s of system time over four, perf, strace -c).
    made = []
    for _ in range(state.repeat):
        for cli in state.clis:
            for mode in BYTECODE_MODES:
                args = checkout_args()
                run = cli_run(cli, args, dirs[cli.label], state.env(mode))
                if run.returncode != 0:
                    raise BenchError(f"{label} checkout ({cli.label}): exit {run.returncode}\n{run.tail()}")
                made.append(args[-1])
                written = count_files(Path(args[-1]))
                if written != n:
                    raise BenchError(f"{label} checkout ({cli.label}): {written} files written, expected {n}")
                walls.setdefault((cli.label, mode), []).append(run.wall)
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)
    checkout = state.figure(f"`checkout` of {n} artifacts, {label}", "s", BUDGET21_CHECKOUT_S.get(n))
    per_artifact = Figure(f"checkout per artifact, {label}", "ms", None)
    for (cli_label, mode), values in walls.items():
        checkout.put(cli_label, mode, median(values))
        per_artifact.put(cli_label, mode, median(values) / n)
    checkout_per_artifact[n] = per_artifact

    log(f"  {label}: no-op builds x{state.repeat} per CLI and bytecode mode")
    noop = state.figure(f"  no-op build of the same {label} (for comparison)", "s", None)
    interleaved(state, noop, dirs, ["build", "spec.yaml", "-j", "1"], state.repeat, noop_check(n))

    mid = n // 2
    log(f"  {label}: config of {stage_name(mid)} changed, build x{state.repeat} per CLI and bytecode mode")
    changed = state.figure(f"one stage changed in {label}: wall - that stage's seconds", "s", BUDGET21_CHANGED_S.get(n))
    beyond: dict[tuple[str, str], list[float]] = {}
    for _ in range(state.repeat):
        for cli in state.clis:
            for mode in BYTECODE_MODES:
                write_config(dirs[cli.label] / "conf", n, {mid: f"changed{next(count)}"})  # a new value: 1 stage runs
                run, document = cli_build(
                    state, cli, f"{label} one stage changed", dirs[cli.label], dirs[cli.label] / "spec.yaml", 1, mode
                )
                beyond.setdefault((cli.label, mode), []).append(run.wall - ran_seconds(document))
    for (cli_label, mode), values in beyond.items():
        changed.put(cli_label, mode, median(values))


def issue21_linearity(state: Issue21, per_artifact: dict[int, Figure]) -> None:
    """Checkout linear in N: per-artifact time at the largest size / at the smallest (>= 100 where measured)."""
    sizes = sorted(per_artifact)
    small = [s for s in sizes if s >= 100] or sizes
    if len(small) < 2:
        return
    lo, hi = small[0], small[-1]
    fig = state.figure(
        f"checkout linear in N: per-artifact time at {hi} / at {lo}",
        "x",
        FLAT_TOLERANCE,
        note=f"linear: <= {FLAT_TOLERANCE}x (fixed start-up costs make it < 1)",
    )
    for cli in state.clis:
        for mode in BYTECODE_MODES:
            a = per_artifact[lo].values.get(cli.label, {}).get(mode)
            b = per_artifact[hi].values.get(cli.label, {}).get(mode)
            fig.put(cli.label, mode, b / a if a and b is not None else None)


def make_fraud_repo(root: Path) -> Path:
    """The fraud example in a fresh git repository, as tests/integration/test_fraud.py lays it out."""
    root.mkdir(parents=True)
    git(root, "init", "-q")
    shutil.copytree(
        REPO / "examples" / "fraud", root / "examples" / "fraud", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "specs").mkdir()
    shutil.copy(REPO / "specs" / "fraud.yaml", root / "specs" / "fraud.yaml")
    git(root, "add", "-A")
    git(root, "-c", "commit.gpgsign=false", "commit", "-q", "-m", "fraud example")
    return root


def without_top_level_key(text: str, key: str) -> str:
    """The YAML text without the block of a top-level key (its line and the indented or comment lines below)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(f"{key}:"):
            skipping = True
            continue
        if skipping and (line[:1] in (" ", "#", "\n") or not line.strip()):
            continue
        skipping = False
        out.append(line)
    return "".join(out)


def fraud_spec_for_all(state: Issue21, src: Path) -> None:
    """One spec for every CLI: when an older CLI rejects the example's `gates:` (newer than it), every CLI
    builds the spec without them, so that the columns time the same work."""
    spec = src / "specs" / "fraud.yaml"
    for cli in state.clis:
        run = cli_run(cli, ["validate", "specs/fraud.yaml"], src, state.env())
        if run.returncode != 0 and "gates" in run.stdout + run.stderr and "\ngates:" in spec.read_text():
            spec.write_text(without_top_level_key(spec.read_text(), "gates"))
            git(src, "-c", "commit.gpgsign=false", "commit", "-q", "-am", "fraud example without gates")
            state.warnings.append(f"fraud: {cli.label} does not know `gates:`; every CLI built the spec without them")
            return


def issue21_fraud(state: Issue21) -> dict[str, Path] | None:
    """The fraud example built by each CLI (its first build makes the environment and trains: ~20 s),
    then its no-op build. Returns the built workspaces, or None when a first build failed (a warning)."""
    src = make_fraud_repo(state.base / "i21-fraud" / "src")
    fraud_spec_for_all(state, src)
    dirs = copies(state, src)
    for cli in state.clis:
        log(f"  fraud: first build by {cli.label} (environment, training)")
        try:
            cli_build(state, cli, "fraud first build", dirs[cli.label], dirs[cli.label] / "specs" / "fraud.yaml", 3)
        except BenchError as exc:  # the example needs uv and bubblewrap: missing tools are not a slow modelspec
            state.warnings.append(f"fraud example not built, its figures not measured: {exc}")
            return None
    log(f"  fraud: no-op builds x{state.repeat} per CLI and bytecode mode")
    fig = state.figure("fraud no-op build", "s", BUDGET21_FRAUD_NOOP_S)
    interleaved(state, fig, dirs, ["build", "specs/fraud.yaml"], state.repeat, noop_check(3))
    return dirs


def issue21_registry_reads(state: Issue21, dirs: dict[str, Path], name: str) -> None:
    for args in (["versions", name], ["show", f"{name}@latest"]):
        log(f"  `{' '.join(args)}` x{REPEAT_REGISTRY_READS} per CLI and bytecode mode")
        fig = state.figure(f"`{' '.join(args)}` (median of {REPEAT_REGISTRY_READS})", "s", BUDGET21_REGISTRY_READ_S)
        interleaved(state, fig, dirs, args, REPEAT_REGISTRY_READS, exit_zero)


def issue21_warm_up(state: Issue21) -> None:
    """Untimed, per CLI: fill the bytecode cache and the OS caches; check that the CLI runs at all."""
    root = state.base / "i21-warm-up"
    src = make_repo(root / "src", "chain", 2, "off").parent
    dirs = copies(state, src)
    for cli in state.clis:
        log(f"warm-up: {cli.label}")
        run = cli_run(cli, ["--help"], REPO, state.env())
        if run.returncode != 0:
            raise BenchError(f"{' '.join(cli.argv)} --help: exit {run.returncode}\n{run.tail()}")
        cli_build(state, cli, "warm-up build", dirs[cli.label], dirs[cli.label] / "spec.yaml", 2)
        cli_build(state, cli, "warm-up no-op", dirs[cli.label], dirs[cli.label] / "spec.yaml", 0)


ISSUE21_GROUPS = ("fraud", "chain", "bwrap", "fanout")


def issue21_figures(state: Issue21, sizes: list[int], groups: set[str]) -> None:
    """Every figure of issue 21's budget table (of the workload groups asked for), for each CLI; a
    BenchError stops only its own workload."""

    def attempt(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except BenchError as exc:
            state.errors.append(str(exc))
            return None

    attempt(lambda: issue21_warm_up(state))
    if state.errors:  # a CLI that cannot build 2 stages: nothing else would measure
        return
    fraud_dirs = attempt(lambda: issue21_fraud(state)) if "fraud" in groups else None
    if fraud_dirs:
        attempt(lambda: issue21_registry_reads(state, fraud_dirs, "fraud"))
    for n in sizes if "chain" in groups else []:
        attempt(functools.partial(issue21_chain, state, n))
    if "bwrap" in groups:  # a 10,000-stage chain under bubblewrap would take long: 1,000 says as much
        attempt(lambda: issue21_bwrap(state, min(max(sizes), 1000)))
    # checkout and "one stage changed" are budgeted at 1,000: fan-outs stop there; at 100 too for linearity
    fan_sizes = sorted({min(n, 1000) for n in sizes} | ({100} if max(sizes) >= 1000 else set()))
    per_artifact: dict[int, Figure] = {}
    fan_sizes = fan_sizes if "fanout" in groups else []
    for n in fan_sizes:
        attempt(functools.partial(issue21_fanout, state, n, per_artifact))
    issue21_linearity(state, per_artifact)
    if not fraud_dirs and "chain" in groups:  # registry reads on a built workspace all the same: the largest chain's
        n = max(sizes)
        chain_dirs = {c.label: state.base / f"i21-chain-{n}" / c.label for c in state.clis}
        if all((d / ".modelspec").exists() for d in chain_dirs.values()):
            attempt(lambda: issue21_registry_reads(state, chain_dirs, f"chain{n}"))


def verdict21(fig: Figure, mode: str) -> str:
    """The last CLI's (after's) value against the budget."""
    if fig.budget is None or not fig.values:
        return "-"
    value = list(fig.values.values())[-1].get(mode)
    if value is None:
        return "-"
    return "ok" if value < fig.budget or (fig.unit == "x" and value <= fig.budget) else "OVER"


def fmt21(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return fmt_ms(value)
    if unit == "x":
        return f"{value:.2f}x"
    return fmt_s(value)


def render21(state: Issue21, meta: dict[str, Any]) -> str:
    labels = [c.label for c in state.clis]
    modes = state.to_dict()["bytecode_modes"]
    out = [
        "modelspec benchmark, issue 21's budgets"
        + (f" — {' vs '.join(labels)}" if len(labels) > 1 else "")
        + f"; Python {meta['python']}, {meta['cpus']} CPUs, {meta['platform']}",
    ]
    out += [f"  {c.label}: {' '.join(c.argv)}" + (f"  ({c.version})" if c.version else "") for c in state.clis]
    out += [
        f"  builds -j 1, plain output; each workload generated once and built by each CLI in its own copy "
        f"(own store); medians of {meta['repeat']} (registry reads: {REPEAT_REGISTRY_READS}), CLIs and bytecode "
        "modes interleaved",
        f"  bytecode cached = PYTHONPYCACHEPREFIX={PYCACHE}; uncached = {modes['uncached']}",
        f"  load average (1 min) before: {meta['load_before']:.2f}, after: {meta.get('load_after', float('nan')):.2f}"
        + (
            f"  -- {meta['cpus']} CPUs: other processes were busy, figures are noisy"
            if max(meta["load_before"], meta.get("load_after", 0)) > 0.7
            else ""
        ),
        "",
    ]
    rows = []
    for fig in state.figures:
        for i, mode in enumerate(fig.modes()):
            values = [fig.values.get(label, {}).get(mode) for label in labels]
            ratio = "-"
            if len(values) >= 2 and values[0] and values[-1] is not None:
                ratio = f"{values[-1] / values[0]:.2f}x"
            budget = "-" if fig.budget is None else ("<= " if fig.unit == "x" else "< ") + fmt21(fig.budget, fig.unit)
            rows.append(
                [
                    fig.what if i == 0 else "",
                    mode,
                    *(fmt21(v, fig.unit) for v in values),
                    *([ratio] if len(labels) >= 2 else []),
                    budget,
                    verdict21(fig, mode),
                ]
            )
    header = ["figure", "bytecode", *labels, *([f"{labels[-1]}/{labels[0]}"] if len(labels) >= 2 else [])]
    header += ["budget", f"verdict ({labels[-1]})"]
    out += ["  " + line for line in table(rows, header, set(range(2, 2 + len(labels) + (len(labels) >= 2))))]
    out += [
        "",
        "  overhead per executed stage = (first build wall - sum of the stages' own seconds from `build --json`) / N;",
        "  one stage changed: the config value of stage N/2 set to a new value each time (1 stage runs); wall minus",
        "  that stage's own seconds; the fan-out's no-op wall is printed beside it. Budgets are issue 21's; '-' = none",
        "  at that size (context). Exceeded budgets are reported (OVER), not an error.",
    ]
    notes = [f"  {f.what}: {f.note}" for f in state.figures if f.note]
    out += notes
    if state.warnings:
        out += ["", "Warnings"] + [f"  {w}" for w in state.warnings]
    if state.errors:
        out += ["", "ERRORS"] + [f"  {e}" for e in state.errors]
    out += ["", f"benchmark took {fmt_s(meta.get('elapsed_s'))}"]
    return "\n".join(out)


# -- derived figures and budgets ---------------------------------------------------------------------


def derive(results: Results) -> None:
    bare = results.baseline.get("bare_sh_s")
    for w in results.workloads:
        if "error" in w:
            continue
        if bare is not None:
            w["beyond_bare_per_stage_s"] = (w["first_s"] - w["n"] * bare) / w["n"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for w in results.workloads:
        if "error" not in w:
            groups.setdefault((w["shape"], w["hermetic"]), []).append(w)
    for items in groups.values():
        items.sort(key=lambda w: w["n"])
        for a, b in itertools.pairwise(items):
            b["marginal_overhead_per_stage_s"] = (
                (b["first_s"] - b["stage_seconds_sum"]) - (a["first_s"] - a["stage_seconds_sum"])
            ) / (b["n"] - a["n"])
            b["marginal_noop_per_stage_s"] = (b["noop_s"] - a["noop_s"]) / (b["n"] - a["n"])
            if bare is not None:  # sandbox start-up, restoring inputs etc. counted as overhead too
                b["marginal_beyond_bare_per_stage_s"] = (b["first_s"] - a["first_s"]) / (b["n"] - a["n"]) - bare
            b["marginal_from"] = a["n"]

    for w in results.workloads:
        name = f"{w['shape']} N={w['n']}" + ("" if w["hermetic"] == "off" else f" hermetic={w['hermetic']}")
        if "error" in w:
            continue
        if w["n"] == 1000 and w["hermetic"] == "off":
            noop = w.get("noop_plain_s", w["noop_s"])
            results.check(
                f"no-op build, {name} (plain output; --json: {fmt_s(w['noop_s'])})",
                fmt_s(noop),
                f"< {BUDGET_NOOP_1000_S} s",
                noop < BUDGET_NOOP_1000_S,
            )
        results.check(
            f"per-stage overhead, {name}",
            fmt_ms(w["overhead_per_stage_s"]),
            f"< {BUDGET_STAGE_OVERHEAD_S * 1000:.0f} ms",
            w["overhead_per_stage_s"] < BUDGET_STAGE_OVERHEAD_S,
        )
        if "marginal_overhead_per_stage_s" in w:
            m = w["marginal_overhead_per_stage_s"]
            results.check(
                f"  marginal per-stage overhead {w['marginal_from']}->{w['n']} (fixed costs excluded)",
                fmt_ms(m),
                f"< {BUDGET_STAGE_OVERHEAD_S * 1000:.0f} ms",
                m < BUDGET_STAGE_OVERHEAD_S,
            )
        if "marginal_beyond_bare_per_stage_s" in w:
            m = w["marginal_beyond_bare_per_stage_s"]
            results.check(
                f"  marginal per-stage cost beyond the bare command {w['marginal_from']}->{w['n']}",
                fmt_ms(m),
                f"< {BUDGET_STAGE_OVERHEAD_S * 1000:.0f} ms",
                m < BUDGET_STAGE_OVERHEAD_S,
            )
    for (shape, hermetic), items in groups.items():
        marginals = [w["marginal_overhead_per_stage_s"] for w in items if "marginal_overhead_per_stage_s" in w]
        if len(marginals) >= 2:
            growth = marginals[-1] / marginals[0] if marginals[0] > 0 else float("inf")
            results.check(
                f"per-stage overhead flat as N grows, {shape} hermetic={hermetic}",
                f"marginal {items[-1]['marginal_from']}->{items[-1]['n']} / {items[1]['marginal_from']}->"
                f"{items[1]['n']} = {growth:.2f}x",
                f"<= {FLAT_TOLERANCE}x",
                growth <= FLAT_TOLERANCE,
            )


# -- output ------------------------------------------------------------------------------------------


def table(rows: list[list[str]], header: list[str], right: set[int]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(
            str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i]) for i, c in enumerate(r)
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def workload_name(w: dict[str, Any]) -> str:
    if w["hermetic"] == "off":
        return w["shape"]
    return w["shape"] + (" (bwrap)" if w.get("sandboxed", True) else " (auto: NOT sandboxed)")


def render(results: Results) -> str:
    m = results.meta
    out = [
        f"modelspec benchmark — modelspec {m.get('modelspec_version')}, Python {m['python']}, {m['cpus']} CPUs, "
        f"{m['platform']}",
        f"builds: `{m['cli']} build SPEC -j {m['jobs']} --json`, wall clock of the whole process; no-op = median of "
        f"{m['repeat']}; bytecode {m['bytecode']}",
        f"load average (1 min) before: {m['load_before']:.2f}, after: {m.get('load_after', float('nan')):.2f}"
        + (
            "  -- other processes were busy: figures are noisy"
            if max(m["load_before"], m.get("load_after", 0)) > 0.7
            else ""
        ),
        "",
        "Baselines",
    ]
    b = results.baseline
    out.append(f"  python -c pass                                  {fmt_ms(results.cli.get('python_startup_s'))}")
    out.append(f"  bare stage command (/bin/sh -c 'cat; echo')     {fmt_ms(b.get('bare_sh_s'))}")
    out.append(
        f"  same command in modelspec's bwrap command line  "
        f"{fmt_ms(b.get('bare_bwrap_s')) if b.get('bare_bwrap_s') is not None else 'n/a (no bwrap)'}"
    )
    out += ["", "CLI"]
    out.append(
        f"  {results.cli.get('help_cmd', 'modelspec')} --help (median of 5)    {fmt_s(results.cli.get('help_s'))}"
    )
    fraud = results.cli.get("fraud", {})
    if fraud.get("status") == "ok":
        out.append(
            f"  no-op build specs/fraud.yaml (median)   {fmt_s(fraud['noop_s'])}  "
            f"(runs: {', '.join(fmt_s(x) for x in fraud['noop_all_s'])})"
        )
    else:
        out.append(f"  no-op build specs/fraud.yaml            {fraud.get('status', 'not measured')}")

    out += ["", "Generated graphs: builds (tiny /bin/sh stages; `bwrap` = hermetic: auto with bubblewrap)"]
    rows = []
    for w in results.workloads:
        if "error" in w:
            rows.append([workload_name(w), str(w["n"]), "FAILED", "", "", "", ""])
            continue
        inc_ok = "ok" if w["incremental_ran"] == w["incremental_expected"] else "WRONG"
        rows.append(
            [
                workload_name(w),
                str(w["n"]),
                fmt_s(w["first_s"]),
                fmt_s(w["noop_s"]),
                fmt_s(w.get("noop_plain_s")),
                fmt_s(w["incremental_s"]),
                f"{w['incremental_ran']}/{w['incremental_expected']} {inc_ok}",
            ]
        )
    header = ["workload", "N", "first build", "no-op (--json)", "no-op (plain)", "incremental", "ran/expected"]
    out += ["  " + line for line in table(rows, header, set(range(1, 7)))]
    out.append("  incremental: after changing the config value of stage N/2 (chain: N/2 stages must run, fan-out: 1)")

    out += ["", "Generated graphs: per-stage overhead of the first build"]
    rows = []
    for w in results.workloads:
        if "error" in w:
            continue
        rows.append(
            [
                workload_name(w),
                str(w["n"]),
                fmt_s(w["first_s"]),
                fmt_s(w["stage_seconds_sum"]),
                fmt_ms(w["overhead_per_stage_s"]),
                fmt_ms(w["wall_per_stage_s"]),
                fmt_ms(w.get("beyond_bare_per_stage_s")),
                fmt_ms(w.get("marginal_overhead_per_stage_s")),
                fmt_ms(w.get("marginal_beyond_bare_per_stage_s")),
            ]
        )
    header = [
        "workload",
        "N",
        "first build",
        "sum of stage s",
        "overhead/stage",
        "wall/stage",
        "beyond bare sh/stage",
        "marginal/stage",
        "marginal beyond sh",
    ]
    out += ["  " + line for line in table(rows, header, set(range(1, 9)))]
    out += [
        "  overhead/stage = (first build wall - sum of the stages' seconds from `build --json`) / N",
        "  wall/stage = first build wall / N;  beyond bare sh/stage = (first build wall - N x the bare command) / N",
        "  (the stages' recorded seconds include restoring inputs and starting the sandbox; 'beyond bare sh' "
        "counts those as overhead)",
        "  marginal/stage = increase of (wall - sum of stage seconds) per added stage since the previous size: "
        "fixed start-up costs excluded;",
        "  marginal beyond sh = increase of the wall per added stage minus the bare command (sandbox start-up "
        "included)",
    ]

    h = results.hashing
    if h:
        size = h["bytes"]
        out += [
            "",
            f"Hashing ({size / GIB:.2f} GiB file of random bytes, page-cached; "
            "reference and digest_file: best of 5, interleaved)",
        ]
        out.append(
            f"  blake3 update_mmap, max_threads=AUTO (reference)  {fmt_rate(size, h['reference_s'])}  "
            f"({fmt_s(h['reference_s'])})"
        )
        out.append(
            f"  modelspec.digest.digest_file                      {fmt_rate(size, h['digest_file_s'])}  "
            f"({h['ratio'] * 100:.0f}% of reference)"
        )
        out.append(
            f"  StatCache.digest, first (hashes)                  {fmt_rate(size, h['statcache_first_s'])}  "
            f"({fmt_s(h['statcache_first_s'])})"
        )
        out.append(f"  StatCache.digest, second (same process)           {fmt_ms(h['statcache_second_s'])}")
        out.append(f"  StatCache.digest, after save() and reload         {fmt_ms(h['statcache_reloaded_s'])}")
        out.append(
            f"  LocalStore.put_file (copy into the store)         {fmt_rate(size, h['store_put_file_s'])}  "
            f"({fmt_s(h['store_put_file_s'])})"
        )
        out.append(
            f"  LocalStore.verify (re-hash an object)             {fmt_rate(size, h['store_verify_s'])}  "
            f"({fmt_s(h['store_verify_s'])})"
        )
        if "big_first_s" in h:

            def hashed(n: int) -> str:
                return f"hashed {n / size:.2f}x the file" if n >= 0 else "hashed ?"

            out.append("  build of 1 stage reading the file as a data input:")
            out.append(
                f"    first build                     {fmt_s(h['big_first_s'])}  ({hashed(h['big_first_hashed'])})"
            )
            out.append(
                f"    no-op build                     {fmt_s(h['big_noop_s'])}  ({hashed(h['big_noop_hashed'])})"
            )
            out.append(
                f"    rerun after a config change     {fmt_s(h['big_rerun_s'])}  ({hashed(h['big_rerun_hashed'])})"
            )
    elif results.meta.get("skip_hash"):
        out += ["", "Hashing: skipped (--skip-hash)"]

    out += ["", "DVC"]
    d = results.dvc
    if not d:
        out.append("  not run (use --dvc). " + DVC_REFERENCE)
    elif d.get("status") == "unavailable":
        out.append("  dvc: unavailable. " + DVC_REFERENCE)
    else:
        out.append(f"  {d['status']}; chain workload, `dvc repro` vs `modelspec build` (ratio = dvc / modelspec)")
        by_n = {
            w["n"]: w
            for w in results.workloads
            if w["shape"] == "chain" and w["hermetic"] == "off" and "error" not in w
        }
        for r in d.get("runs", []):
            if "error" in r:
                out.append(f"  N={r['n']}: dvc failed: {r['error'].splitlines()[0]}")
                continue
            ms = by_n.get(r["n"])
            first_ratio = f"{r['first_s'] / ms['first_s']:.1f}x" if ms else "-"
            noop_ratio = f"{r['noop_s'] / ms['noop_s']:.1f}x" if ms else "-"
            out.append(
                f"  N={r['n']:<5} first: dvc {fmt_s(r['first_s'])} vs {fmt_s(ms['first_s']) if ms else '-'} "
                f"({first_ratio});  no-op: dvc {fmt_s(r['noop_s'])} vs {fmt_s(ms['noop_s']) if ms else '-'} "
                f"({noop_ratio})"
            )
        out.append("  " + DVC_REFERENCE)

    if results.profiles:
        for label, p in results.profiles.items():
            where = f"{label} build of chain N={results.meta.get('profile_n')} (cProfile, all threads"
            if "error" in p:
                out += ["", f"Profile: {where})", "  failed: " + (p["error"].splitlines() or [""])[-1]]
                continue
            out += ["", f"Profile: {where}; modelspec functions by cumulative time)"]
            out += ["  " + line for line in p["cumulative"].splitlines()]
            out += ["", f"Profile: {where}; all functions by own time)"]
            out += ["  " + line for line in p["tottime"].splitlines()]
            kept = f"saved: {p['file']}" if results.meta.get("kept") else "--keep keeps the .prof files"
            out.append(f"  ({kept}; wall with the profiler: {fmt_s(p['wall_s'])})")

    out += ["", "Budgets (DESIGN.md §9)"]
    rows = [[b.what, b.figure, b.budget, b.verdict] for b in results.budgets]
    out += ["  " + line for line in table(rows, ["figure", "measured", "budget", "verdict"], set())]
    if results.warnings:
        out += ["", "Warnings"] + [f"  {w}" for w in results.warnings]
    if results.errors:
        out += ["", "ERRORS"] + [f"  {e}" for e in results.errors]
    out += [
        "",
        f"benchmark took {fmt_s(results.meta.get('elapsed_s'))}"
        + (f"; temp dirs kept in {results.meta['base']}" if results.meta.get("kept") else ""),
    ]
    return "\n".join(out)


# -- main --------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError("sizes must be integers >= 2")
    return sizes


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description="modelspec performance benchmark: prints each figure of DESIGN.md §9 with its budget.",
        epilog="Exit 0 when every build succeeded (budgets exceeded are printed as OVER); 1 when a build failed "
        "or ran a wrong number of stages.",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("10,100,1000"),
        help="graph sizes N for the chain and fan-out workloads (default: 10,100,1000)",
    )
    parser.add_argument(
        "--hermetic-sizes",
        type=parse_sizes,
        default=parse_sizes("10,100"),
        help="sizes also measured with hermetic: auto, i.e. in bubblewrap (default: 10,100)",
    )
    parser.add_argument("--shapes", default="chain,fanout", help="workload shapes (default: chain,fanout)")
    parser.add_argument(
        "-j", "--jobs", type=int, default=1, help="modelspec build -j (default 1: comparable per-stage figures)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="no-op builds per workload, median taken (default 3)")
    parser.add_argument("--skip-hash", action="store_true", help="skip the hashing figures")
    parser.add_argument("--hash-gib", type=float, default=1.0, help="size of the hashed file in GiB (default 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument(
        "--dvc",
        action="store_true",
        help="also run the chain workload with DVC (venv in ~/.cache/modelspec-bench/dvc-venv) at sizes 10 and 100",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile (cProfile, all threads) the first and no-op build of the largest chain",
    )
    parser.add_argument("--no-fraud", action="store_true", help="do not time the no-op build of specs/fraud.yaml")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run the CLI with the environment as it is (by default bytecode is cached in "
        "~/.cache/modelspec-bench/pycache, even if PYTHONDONTWRITEBYTECODE is set)",
    )
    parser.add_argument(
        "--compile-everything",
        action="store_true",
        help="issue 21: in the uncached runs compile the standard library and dependencies too (an empty "
        "PYTHONPYCACHEPREFIX), not only modelspec's own modules",
    )
    parser.add_argument(
        "--issue21",
        action="store_true",
        help="measure issue 21's budget table (instead of DESIGN.md §9's) for this checkout; implied by "
        "--compare and --modelspec",
    )
    parser.add_argument(
        "--modelspec",
        action="append",
        metavar="EXE",
        default=[],
        help="a modelspec executable to time for issue 21's table (repeatable: one column each, the last one is "
        "judged against the budgets); default: this checkout (python -m modelspec)",
    )
    parser.add_argument(
        "--compare",
        metavar="BEFORE_EXE",
        help="the `before` column: a modelspec executable of the old code, timed beside --modelspec (default: "
        "this checkout) on the same generated workloads",
    )
    parser.add_argument(
        "--only",
        default=",".join(ISSUE21_GROUPS),
        help="issue 21: the workload groups to measure, of fraud (its no-op, versions, show), chain (no-op, plan, "
        "overhead off), bwrap (overhead under bubblewrap), fanout (checkout, one stage changed); default: all",
    )
    args = parser.parse_args(argv)
    args.only = {g.strip() for g in args.only.split(",") if g.strip()}
    if not args.only or not args.only <= set(ISSUE21_GROUPS):
        parser.error(f"--only: a comma-separated list of {', '.join(ISSUE21_GROUPS)}")
    for exe in [*args.modelspec, *([args.compare] if args.compare else [])]:
        if shutil.which(exe) is None:
            parser.error(f"--modelspec/--compare: {exe!r} is not an executable file")
    args.issue21 = args.issue21 or bool(args.modelspec or args.compare)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if not set(args.shapes) <= {"chain", "fanout"}:
        parser.error("--shapes: chain and/or fanout")
    if args.hash_gib <= 0:
        parser.error("--hash-gib must be positive")
    if args.jobs < 1 or args.repeat < 1:
        parser.error("--jobs and --repeat must be >= 1")
    return args


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="modelspec-bench-"))
    try:
        yield base
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def cli_version(argv: list[str]) -> str:
    proc = subprocess.run([*argv, "--version"], capture_output=True, text=True, env=child_env())
    return proc.stdout.strip() if proc.returncode == 0 else f"--version: exit {proc.returncode}"


def issue21_clis(args: argparse.Namespace) -> list[Cli]:
    """--compare BEFORE and --modelspec EXE... (default: this checkout), labelled before/after when two."""
    argvs = [[args.compare]] if args.compare else []
    argvs += [[exe] for exe in args.modelspec] or [modelspec_cmd()]
    if len(argvs) == 2:
        labels = ["before", "after"]
    elif len(argvs) == 1:
        labels = ["after"]
    else:
        labels = [f"cli{i + 1}" for i in range(len(argvs))]
    return [Cli(label, tuple(a), cli_version(a)) for label, a in zip(labels, argvs, strict=True)]


def main_issue21(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    clis = issue21_clis(args)
    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": f"{platform.system()} {platform.machine()}",
        "repeat": args.repeat,
        "sizes": args.sizes,
        "load_before": os.getloadavg()[0],
    }
    named = ", ".join(f"{c.label} = {' '.join(c.argv)}" for c in clis)
    log(f"issue 21 figures for {named}; load average {meta['load_before']:.2f}")
    with workdir(args.keep) as base:
        state = Issue21(clis, base, args.repeat, compile_everything=args.compile_everything)
        issue21_figures(state, args.sizes, args.only - ({"fraud"} if args.no_fraud else set()))
        meta["elapsed_s"] = time.perf_counter() - started
        meta["load_after"] = os.getloadavg()[0]
        meta["base"] = str(base) if args.keep else None
        if args.json:
            print(json.dumps({"meta": meta, **state.to_dict()}, indent=2, default=str))
        else:
            print(render21(state, meta))
    return 1 if state.errors else 0


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if args.issue21:
        return main_issue21(args)
    started = time.perf_counter()
    results = Results()
    try:
        import modelspec

        version = modelspec.__version__
    except ImportError:
        print("modelspec is not importable (pip install -e .)", file=sys.stderr)
        return 1
    results.meta.update(
        modelspec_version=version,
        python=platform.python_version(),
        cpus=os.cpu_count(),
        platform=f"{platform.system()} {platform.machine()}",
        jobs=args.jobs,
        repeat=args.repeat,
        sizes=args.sizes,
        cli=" ".join(Path(a).name if i == 0 else a for i, a in enumerate(modelspec_cmd())),
        skip_hash=args.skip_hash,
        bwrap=shutil.which("bwrap"),
        load_before=os.getloadavg()[0],
    )
    global USE_BYTECODE_CACHE
    USE_BYTECODE_CACHE = not args.no_bytecode_cache
    results.meta["bytecode"] = (
        f"cached in {PYCACHE}"
        if USE_BYTECODE_CACHE
        else "as the environment says"
        + (" (PYTHONDONTWRITEBYTECODE set: not cached)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "")
    )
    with workdir(args.keep) as base:
        results.meta["base"] = str(base)
        results.meta["kept"] = args.keep
        warm_up(base, args.jobs)
        try:
            cli_figures(results)
            if not args.no_fraud:
                fraud_noop(results, args.repeat)
        except BenchError as exc:
            results.errors.append(str(exc))
        log("baselines: bare command, bwrap")
        results.baseline["bare_sh_s"] = bare_command_seconds(base)
        results.baseline["bare_bwrap_s"] = bare_bwrap_seconds(base)

        plan = [(shape, n, "off") for shape in args.shapes for n in args.sizes]
        if shutil.which("bwrap"):
            plan += [(shape, n, "auto") for shape in args.shapes for n in args.hermetic_sizes]
        else:
            results.warnings.append("bwrap is not installed: the hermetic: auto figures were not measured")
        for shape, n, hermetic in plan:
            try:
                results.workloads.append(run_workload(base, shape, n, hermetic, args.jobs, args.repeat))
            except BenchError as exc:
                results.errors.append(str(exc))
                results.workloads.append({"shape": shape, "n": n, "hermetic": hermetic, "error": str(exc)})
        if not args.skip_hash:
            try:
                hashing_figures(results, base, args.hash_gib, args.jobs)
            except BenchError as exc:
                results.errors.append(str(exc))
        if args.dvc:
            dvc_figures(results, base, args.sizes, args.repeat)
        if args.profile:
            results.meta["profile_n"] = max(args.sizes)
            profile_figures(results, base, max(args.sizes), args.jobs)
        derive(results)
        results.meta["elapsed_s"] = time.perf_counter() - started
        results.meta["load_after"] = os.getloadavg()[0]
        if args.json:
            print(json.dumps(results.to_dict(), indent=2, default=str))
        else:
            print(render(results))
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
