#!/usr/bin/env python3
"""Registry benchmark: queries on a registry holding 100,000 versions of one model.

A script, not a test (stdlib, modelspec and its dependencies). In a temporary workspace it

* fills `.modelspec/registry.db` (or, with `--url`, the empty PostgreSQL database at URL,
  which the workspace's `modelspec.yaml` then names) with N versions of model `m` (5 metrics, one artifact, one
  lineage row and one audit event each), all but the last `--api` of them by batch inserts
  into the registry's own tables (the audit events are chained exactly as the registry
  chains them, so `audit --verify` still holds), the rest through `Registry.register`, whose
  per-registration time is reported (it is measured at the full size, the worst case);
* times, median of 5 runs each, against the budget of an interactive registry query
  (under 100 ms): `Registry.list_versions(m, where=auc>0.99)`, `Catalog.versions(...)` (the
  path `modelspec versions` takes), `Registry.resolve('m@1.0.54321')`,
  `Catalog.show(...)` (the path of `modelspec show`) and `Catalog.alias_history(m,
  production, at=...)` (`alias history --at`, over 500 moves);
* prints the database's plan of the statement `list_versions` sends for the `--where` query, the
  time of `audit --verify` over every event, and the cost of opening the registry;
* times the CLI wall-clock of `modelspec versions m --where 'auc>0.999' --json` and
  `modelspec show m@1.0.500 --json` in that workspace (median of 5 after a warm-up), next to
  `modelspec --version` (interpreter start-up and click alone) and the import of
  `modelspec.catalog` (SQLAlchemy included), which make up most of a CLI query's time.

Exit status 0 when every figure was measured (a budget exceeded prints OVER), 1 when a query
returned something wrong or a CLI command failed. Figures are wall-clock and sensitive to
other load on the machine: the load average before and after is printed.

    python benchmarks/registry_bench.py
    python benchmarks/registry_bench.py --versions 60000 --api 200 --keep /tmp/regbench
    python benchmarks/registry_bench.py --url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from modelspec.catalog import Catalog  # noqa: E402
from modelspec.registry import tables as t  # noqa: E402
from modelspec.registry.audit import GENESIS, event_digest  # noqa: E402
from modelspec.registry.registry import Registry, VersionDraft  # noqa: E402
from modelspec.registry.transfer import advance_sequences  # noqa: E402
from modelspec.spec.refs import parse_where  # noqa: E402
from modelspec.store.workspace import Workspace  # noqa: E402

BUDGET_QUERY_S = 0.100
NAME = "m"
METRICS = ("auc", "f1", "precision", "recall", "loss")
CHUNK = 5000


def fake_hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def make_record(rng: random.Random, i: int) -> dict[str, Any]:
    """About what a real build records: params, data digests, per-stage keys, logs, timings."""
    return {
        "params": {"train.lr": round(0.001 * (1 + i % 97), 6), "train.epochs": 10 + i % 7, "model.depth": 3 + i % 5},
        "data": {
            "transactions": {"path": "data/transactions.csv", "digest": "blake3:" + fake_hex(rng), "size": 1 << 20}
        },
        "stages": {
            stage: {
                "key": "blake3:" + fake_hex(rng),
                "log": "blake3:" + fake_hex(rng),
                "code_tree": "blake3:" + fake_hex(rng),
                "seconds": round(rng.uniform(0.1, 30), 3),
                "hermetic": True,
            }
            for stage in ("featurize", "train", "evaluate")
        },
        "environment": None,
        "dirty": False,
        "spec": "specs/m.yaml",
    }


def make_metrics(rng: random.Random) -> dict[str, float]:
    values = {name: round(rng.uniform(0.5, 1.0), 6) for name in METRICS}
    values["loss"] = round(1 - values["auc"] + rng.uniform(0, 0.05), 6)
    return values


def bulk_fill(registry: Registry, count: int, rng: random.Random, start_time: float) -> None:
    """Insert `count` versions (patches 0..count-1) through the registry's tables, in chunks."""
    with registry.engine.connect() as conn:
        conn.execution_options(modelspec_write=True)
        with conn.begin():
            prev, seq = GENESIS, 0
            for first in range(0, count, CHUNK):
                versions, metrics, artifacts, lineage, events = [], [], [], [], []
                for i in range(first, min(first + CHUNK, count)):
                    vid = i + 1
                    created = start_time + i
                    content = "blake3:" + fake_hex(rng)
                    commit = f"{rng.getrandbits(160):040x}"
                    values = make_metrics(rng)
                    versions.append(
                        {
                            "id": vid,
                            "name": NAME,
                            "version": f"1.0.{i}",
                            "major": 1,
                            "minor": 0,
                            "patch": i,
                            "content_id": content,
                            "lock": "blake3:" + fake_hex(rng),
                            "commit": commit,
                            "environment": None,
                            "hermetic": True,
                            "author": "bench",
                            "host": "bench-host",
                            "tool_version": "0.1.0",
                            "created": created,
                            "status": "active",
                            "record": json.dumps(make_record(rng, i), sort_keys=True),
                        }
                    )
                    metrics += [{"version_id": vid, "key": k, "value": v} for k, v in values.items()]
                    artifacts.append(
                        {
                            "version_id": vid,
                            "name": "train.model",
                            "type": "file",
                            "digest": "blake3:" + fake_hex(rng),
                            "size": 4096,
                        }
                    )
                    lineage.append(
                        {
                            "version_id": vid,
                            "kind": "data",
                            "name": "transactions",
                            "ref": "data/transactions.csv",
                            "digest": "blake3:" + fake_hex(rng),
                            "upstream_id": None,
                        }
                    )
                    seq += 1
                    payload = json.dumps({"commit": commit, "content_id": content, "metrics": values}, sort_keys=True)
                    subject = f"{NAME}@1.0.{i}"
                    digest = event_digest(seq, created, "build", "bench", subject, payload, prev)
                    events.append(
                        {
                            "seq": seq,
                            "time": created,
                            "kind": "build",
                            "actor": "bench",
                            "subject": subject,
                            "payload": payload,
                            "prev": prev,
                            "digest": digest,
                        }
                    )
                    prev = digest
                conn.execute(sa.insert(t.versions), versions)
                conn.execute(sa.insert(t.metrics), metrics)
                conn.execute(sa.insert(t.artifacts), artifacts)
                conn.execute(sa.insert(t.lineage), lineage)
                conn.execute(sa.insert(t.events), events)
            conn.execute(sa.delete(t.meta).where(t.meta.c.key == "audit_head"))
            conn.execute(sa.insert(t.meta).values(key="audit_head", value=f"{seq} {prev}"))
            if conn.dialect.name == "postgresql":
                advance_sequences(conn)  # the ids were given: the next version gets the next one


def api_fill(registry: Registry, count: int, rng: random.Random) -> list[float]:
    """Register `count` more versions through `Registry.register`; seconds per call."""
    seconds = []
    for i in range(count):
        draft = VersionDraft(
            name=NAME,
            spec_version="1.0",
            content_id="blake3:" + fake_hex(rng),
            lock="blake3:" + fake_hex(rng),
            commit=f"{rng.getrandbits(160):040x}",
            environment=None,
            hermetic=True,
            author="bench",
            host="bench-host",
            tool_version="0.1.0",
            record=make_record(rng, i),
            artifacts={"train.model": {"type": "file", "digest": "blake3:" + fake_hex(rng), "size": 4096}},
            metrics=make_metrics(rng),
            lineage=[
                {
                    "kind": "data",
                    "name": "transactions",
                    "ref": "data/transactions.csv",
                    "digest": "blake3:" + fake_hex(rng),
                }
            ],
        )
        started = time.perf_counter()
        _version, created, _revived = registry.register(draft)
        seconds.append(time.perf_counter() - started)
        assert created
    return seconds


def median_time(func: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


# How the CLI is run: `--cli EXE` times an installed `modelspec` script instead (with a
# resident running for it, `modelspec resident start`, the command runs there).
CLI = [sys.executable, "-m", "modelspec"]


def cli_time(workspace: Path, args: list[str], runs: int = 5) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELSPEC_HOME"}
    command = [*CLI, *args]
    subprocess.run(command, cwd=workspace, env=env, capture_output=True, check=False)  # warm-up
    times, out = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"modelspec {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        out = done.stdout
    return statistics.median(times), out


def import_time(module: str, runs: int = 5) -> float:
    """Median seconds to import `module` in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return statistics.median(times)


def verdict(seconds: float, budget: float) -> str:
    return "ok" if seconds < budget else "OVER"


def explain(registry: Registry, where: str) -> list[str]:
    """The database's plan for the very statement `list_versions` sends (captured as it runs)."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM versions" in statement:
            captured.append((statement, parameters))

    sa.event.listen(registry.engine, "before_cursor_execute", capture)
    try:
        registry.list_versions(NAME, where=parse_where(where))
    finally:
        sa.event.remove(registry.engine, "before_cursor_execute", capture)
    statement, parameters = captured[0]
    explained = "EXPLAIN QUERY PLAN" if registry.backend == "sqlite" else "EXPLAIN"
    with registry.engine.connect() as conn:
        return [str(row[-1]) for row in conn.exec_driver_sql(f"{explained} {statement}", parameters)]


def promote_often(registry: Registry, moves: int) -> float:
    """`moves` promotions of m@production (m@1.0.0, m@1.0.1, ...), a second or more apart: the
    time of the middle one."""
    clock, start, ticks = registry.clock, time.time(), itertools.count()
    registry.clock = lambda: start + next(ticks)
    try:
        for i in range(moves):
            registry.promote(f"m@1.0.{i}", "production", "bench")
    finally:
        registry.clock = clock
    return float(registry.alias_history(NAME, "production")[moves // 2]["time"])


def database_size(registry: Registry) -> str:
    if registry.backend == "sqlite":
        return f"{registry.shown}: {Path(registry.shown).stat().st_size / 1e6:.0f} MB"
    with registry.engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar() or 0
        version = conn.exec_driver_sql("SHOW server_version").scalar()
    return f"PostgreSQL {version} database: {size / 1e6:.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=100_000, help="versions in the registry (default 100000)")
    parser.add_argument("--api", type=int, default=1000, help="of which registered through the API (default 1000)")
    parser.add_argument("--keep", type=Path, help="build the workspace here and keep it (default: a temp dir)")
    parser.add_argument("--url", help="an empty PostgreSQL (or SQLite) database for the registry (default: SQLite)")
    parser.add_argument("--cli", help="a modelspec executable to time (default: python -m modelspec)")
    args = parser.parse_args()
    if args.cli:
        CLI[:] = [args.cli]
    if args.url:  # the CLI commands below read the same registry
        os.environ["MODELSPEC_REGISTRY_URL"] = args.url
    if not 0 <= args.api <= args.versions or args.versions < 54_322:
        parser.error("need --versions >= 54322 (m@1.0.54321 must exist) and 0 <= --api <= --versions")

    root = args.keep or Path(tempfile.mkdtemp(prefix="modelspec-regbench-"))
    if args.keep and root.exists():
        shutil.rmtree(root)
    home = root / ".modelspec"
    failures = 0
    try:
        rng = random.Random(20261130)
        print(f"registry benchmark: {args.versions:,} versions of {NAME!r}, 5 metrics each")
        print(f"python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, SQLAlchemy {sa.__version__}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        print(f"workspace: {root}")
        clock_base = time.time() - args.versions
        if args.url:
            root.mkdir(parents=True, exist_ok=True)
            (root / "modelspec.yaml").write_text(f"registry: {args.url}\n")
            registry = Registry(args.url)
            if registry.info()["counts"]["events"]:
                parser.error(f"{registry.shown} is not empty: give the URL of a new database")
        else:
            registry = Registry.at(home / "registry.db")
        print(f"registry: {registry.backend} ({registry.url_shown})")

        started = time.perf_counter()
        bulk = args.versions - args.api
        bulk_fill(registry, bulk, rng, clock_base)
        bulk_seconds = time.perf_counter() - started
        print(
            f"\nfill: {bulk:,} versions by batch inserts in {bulk_seconds:.1f} s "
            f"({bulk_seconds / max(bulk, 1) * 1e6:.0f} µs each, audit chain included)"
        )
        per_call = api_fill(registry, args.api, rng)
        if per_call:
            print(
                f"fill: {args.api:,} versions through Registry.register at {bulk:,}+ versions: "
                f"median {statistics.median(per_call) * 1e3:.2f} ms, mean {statistics.mean(per_call) * 1e3:.2f} ms, "
                f"max {max(per_call) * 1e3:.1f} ms per registration ({sum(per_call):.1f} s in all)"
            )
        print(database_size(registry))
        middle = promote_often(registry, 500)

        catalog = Catalog(Workspace(root=root, home=home), registry)
        expected_high = None
        with registry.engine.connect() as conn:
            expected_high = conn.execute(
                sa.select(sa.func.count())
                .select_from(t.metrics)
                .where(t.metrics.c.key == "auc", t.metrics.c.value > 0.99)
            ).scalar()
        where = parse_where("auc>0.99")
        prefix = registry.resolve("m@1.0.54321").content_id.removeprefix("blake3:")[:8]
        figures = [
            ("Registry.list_versions(m, where=auc>0.99)", lambda: registry.list_versions(NAME, where=where)),
            ("Catalog.versions(m, where='auc>0.99')", lambda: catalog.versions(NAME, "auc>0.99")),
            ("Registry.resolve('m@1.0.54321')", lambda: registry.resolve("m@1.0.54321")),
            ("Catalog.show('m@1.0.54321')", lambda: catalog.show("m@1.0.54321")),
            (
                "Catalog.alias_history(m, production, at=...)",
                lambda: catalog.alias_history(NAME, "production", middle),
            ),
            # Beyond the brief: a content-id prefix scans the model's versions (LIKE), and
            # `audit --limit 20` reads only the newest events.
            (f"Registry.resolve('m@{prefix}')  [extra]", lambda: registry.resolve(f"m@{prefix}")),
            ("Registry.events(limit=20)  [extra]", lambda: registry.events(limit=20)),
        ]
        print(f"\nqueries (median of 5; budget < {BUDGET_QUERY_S * 1e3:.0f} ms each):")
        for label, func in figures:
            seconds, result = median_time(func)
            if isinstance(result, dict) and "history" in result:
                shown = f"{len(result['history'])} moves, at: {result['at']['targets']}"
                if len(result["history"]) != 500 or result["at"]["targets"] != [["1.0.250", 1.0]]:
                    print(f"  WRONG: {label} returned {shown}")
                    failures += 1
            elif isinstance(result, list) and result and isinstance(result[0], dict) and "seq" in result[0]:
                shown = f"{len(result):,} events, newest {result[-1]['seq']:,}"
                if len(result) != 20 or result[-1]["seq"] != args.versions + 500:
                    print(f"  WRONG: {label} returned events {[e['seq'] for e in result]}")
                    failures += 1
            elif isinstance(result, list):
                shown = f"{len(result):,} versions"
                if len(result) != expected_high:
                    print(f"  WRONG: {label} returned {len(result)} versions, expected {expected_high}")
                    failures += 1
            else:
                ref = result.ref if hasattr(result, "ref") else result["ref"]
                shown = ref
                if ref != "m@1.0.54321":
                    print(f"  WRONG: {label} returned {ref}")
                    failures += 1
            print(f"  {label:<44} {seconds * 1e3:8.2f} ms  {verdict(seconds, BUDGET_QUERY_S):<4}  ({shown})")

        print("\nquery plan of list_versions(m, where=auc>0.99):")
        for line in explain(registry, "auc>0.99"):
            print(f"  {line}")

        seconds, problem = median_time(registry.verify_audit, runs=1)
        print(f"\naudit --verify over {args.versions + 500:,} events: {seconds:.2f} s ({problem or 'intact'})")
        if problem:
            failures += 1
        registry.close()
        url = args.url or f"sqlite:///{home / 'registry.db'}"
        seconds, _ = median_time(lambda: Registry(url).close())
        print(f"opening the registry (engine, connection, schema check): {seconds * 1e3:.1f} ms")

        print("\nCLI wall-clock in that workspace (median of 5 after a warm-up):")
        base, _ = cli_time(root, ["--version"])
        print(f"  {'modelspec --version (start-up only)':<52} {base * 1e3:8.0f} ms")
        imports = import_time("modelspec.catalog")
        print(f"  {'importing modelspec.catalog (SQLAlchemy included)':<52} {imports * 1e3:8.0f} ms")
        for args_, check in (
            (["versions", NAME, "--where", "auc>0.999", "--json"], lambda out: f"{len(json.loads(out)):,} versions"),
            (["show", "m@1.0.500", "--json"], lambda out: json.loads(out)["ref"]),
            (
                ["alias", "history", NAME, "production", "--at", "2000-01-01", "--json"],
                lambda out: f"{len(json.loads(out)['history'])} moves",
            ),
        ):
            try:
                seconds, out = cli_time(root, args_)
            except RuntimeError as exc:
                print(f"  FAILED: {exc}")
                failures += 1
                continue
            label = "modelspec " + " ".join(f"'{a}'" if ">" in a else a for a in args_)
            beyond = (seconds - base) * 1e3
            print(f"  {label:<52} {seconds * 1e3:8.0f} ms  ({check(out)}; {beyond:.0f} ms beyond start-up)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
