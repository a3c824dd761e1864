#!/usr/bin/env python3
"""Web view benchmark: the pages of `modelspec serve` over a registry of 100,000 versions.

A script, not a test. In a temporary workspace it fills the registry with N versions of
model `m` (5 metrics, one artifact, one lineage row and one audit event each) by
registry_bench.py's generator, moves `m@production` and `m@staging` a few hundred times,
then times each page in-process through the ASGI app (Starlette's TestClient: the
server's time, routing, queries and template rendering; no network), median of 5 after a
warm-up, against the issue's budgets:

* the versions page, 50 a page: the first, a middle one (after=1.0.50000) and the last,
  newest first; filtered (`where=auc>0.99`) and sorted by a metric;  < 200 ms
* a version page (`/models/m/1.0.54321`, lineage drawn);            < 100 ms
* the metric chart of the last 1,000 versions (`metrics?last=1000`);  < 300 ms
* the models page (`/`);                                             < 200 ms

then the same pages from a real `modelspec serve` on a loopback port over HTTP (once its
background verification of the audit log is done), and checks that each page holds what
it should (the first page starts at the newest version, the last ends at 1.0.0, the
middle one follows its cursor, the chart has 1,000 points per metric). Exit status 1 when
a page is wrong or fails, 0 otherwise (a budget exceeded prints OVER). Figures are
wall-clock, sensitive to other load on the machine.

    python benchmarks/web_bench.py
    python benchmarks/web_bench.py --versions 60000 --keep /tmp/webbench
    python benchmarks/web_bench.py --keep /tmp/webbench --reuse   # time again, without filling
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import registry_bench as gen  # noqa: E402  (the registry benchmark's generator)
from fastapi.testclient import TestClient  # noqa: E402

from modelspec import api  # noqa: E402
from modelspec.registry.registry import Registry  # noqa: E402
from modelspec.web import create_app  # noqa: E402

MOVES = 200  # alias moves of production (and a few of staging)


def fill(root: Path, count: int) -> None:
    """The registry of the workspace `root`: `count` versions, aliases moved over time."""
    home = root / ".modelspec"
    (root / "modelspec.yaml").write_text("")
    registry = Registry.at(home / "registry.db")
    try:
        rng = random.Random(20261205)
        started = time.perf_counter()
        gen.bulk_fill(registry, count, rng, time.time() - count)
        print(f"fill: {count:,} versions in {time.perf_counter() - started:.1f} s")
        clock, start, ticks = registry.clock, time.time() - MOVES, iter(range(10 * MOVES))
        registry.clock = lambda: start + next(ticks)
        try:
            for i in range(MOVES):
                registry.promote(f"m@1.0.{count - MOVES * 10 + i * 10}", "production", "bench")
            for i in range(5):
                registry.promote(f"m@1.0.{count - 1 - i}", "staging", "bench")
        finally:
            registry.clock = clock
    finally:
        registry.close()


def timed(client: TestClient, url: str, runs: int = 5) -> tuple[float, str]:
    client.get(url)  # warm-up: the template compiled, the database's pages cached
    times, text = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code}: {response.text[:500]}")
        text = response.text
    return statistics.median(times), text


def first_column(html: str) -> list[str]:
    """The versions listed on a versions page, in order."""
    return re.findall(r'<tr class="[a-z]+">\s*<td><a href="/models/m/([0-9.]+)">', html)


def over_http(root: Path, pages: list[tuple[str, str]]) -> int:
    """The same pages from a real `modelspec serve` on a loopback port, as a browser gets
    them (median of 5 after a warm-up); the number of pages that failed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = root / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "modelspec", "serve", "--port", str(port)], cwd=root,
                                  stdout=out, stderr=out)  # fmt: skip
    failures = 0
    try:
        deadline = time.monotonic() + 60
        while "serving" not in log.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                print(f"  modelspec serve did not start:\n{log.read_text()}")
                return 1
            time.sleep(0.1)
        # The audit page waits for serve's background verification of the log, which would
        # otherwise share the interpreter with the pages timed.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/audit?limit=1", timeout=600) as response:
            response.read()
        print(f"\nthe same pages through modelspec serve on 127.0.0.1:{port} (HTTP, median of 5):")
        for label, url in pages:
            times = []
            try:
                for _ in range(6):
                    started = time.perf_counter()
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{url}", timeout=120) as response:
                        response.read()
                    times.append(time.perf_counter() - started)
            except OSError as exc:
                print(f"  WRONG: {label}: {exc}")
                failures += 1
                continue
            print(f"  {label:<46} {statistics.median(times[1:]) * 1e3:8.1f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=100_000, help="versions in the registry (default 100000)")
    parser.add_argument("--keep", type=Path, help="build the workspace here and keep it (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="time the pages of the --keep workspace as it is")
    args = parser.parse_args()
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep DIR")
    if args.versions < 54_322:
        parser.error("need --versions >= 54322 (m@1.0.54321 must exist)")
    root = args.keep or Path(tempfile.mkdtemp(prefix="modelspec-webbench-"))
    if args.keep and root.exists() and not args.reuse:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    newest, middle = args.versions - 1, args.versions // 2
    failures = 0
    try:
        print(f"web view benchmark: {args.versions:,} versions of 'm', 5 metrics each")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        if not args.reuse:
            fill(root, args.versions)

        def starts(first: str, count: int = 50) -> Callable[[str], str]:
            def check(html: str) -> str:
                listed = first_column(html)
                if len(listed) != count or listed[0] != first:
                    raise AssertionError(
                        f"listed {len(listed)} versions from {listed[:1]}, expected {count} from {first}"
                    )
                return f"{listed[0]} … {listed[-1]}"

            return check

        def ends_at_zero(html: str) -> str:
            listed = first_column(html)
            if len(listed) != 50 or listed[-1] != "1.0.0":
                raise AssertionError(f"the last page lists {listed[:1]} … {listed[-1:]}")
            return f"{listed[0]} … {listed[-1]}"

        def points(html: str) -> str:
            chart = html[html.index("<svg") : html.index("</svg>")]
            lines = re.findall(r'<polyline points="([^"]*)"', chart)
            shown = [len(line.split()) for line in lines]
            if len(shown) != 5 or any(n != 1000 for n in shown):
                raise AssertionError(f"the chart's lines have {shown} points, expected 5 x 1,000")
            return "5 metrics, 1,000 points each, aliases marked" if "production" in chart else "no alias marked"

        def holds(*words: str) -> Callable[[str], str]:
            def check(html: str) -> str:
                missing = [w for w in words if w not in html]
                if missing:
                    raise AssertionError(f"the page lacks {missing}")
                return ", ".join(words)

            return check

        # fmt: off
        pages = [
            ("versions, first page", "/models/m", 0.200, starts(f"1.0.{newest}")),
            (f"versions, middle page (after=1.0.{middle})", f"/models/m?after=1.0.{middle}", 0.200,
             starts(f"1.0.{middle - 1}")),
            ("versions, last page", "/models/m?last=true", 0.200, ends_at_zero),
            ("versions, filtered where=auc>0.99", "/models/m?where=auc%3E0.99", 0.200, holds("versions match")),
            ("versions, filtered, last page", "/models/m?where=auc%3E0.99&last=true", 0.200, holds("versions match")),
            ("versions, sorted by auc", "/models/m?sort=auc", 0.200, holds("sorted by auc")),
            ("versions, sorted by auc, middle page", "/models/m?sort=auc&after=1.0.54321", 0.200,
             holds("sorted by auc")),
            ("version page m@1.0.54321", "/models/m/1.0.54321", 0.100,
             holds("svg", 'class="lineage"', "train.model")),
            ("metric chart of the last 1,000 versions", "/models/m/metrics?last=1000", 0.300, points),
            ("models page", "/", 0.200, holds("production →")),
            ("alias history of production (200 moves)", "/models/m/aliases/production?at=2000-01-01", 0.200,
             holds("pointed to")),
            ("api: versions, first page", "/api/models/m/versions", 0.200, holds('"after": ')),
            ("audit log, newest 100 (not verified)", "/audit?verify=false", 0.200, holds("promote")),
        ]
        # fmt: on
        workspace = api.workspace_of(root / "modelspec.yaml")
        with contextlib.chdir(root), api.open_catalog(workspace, read_only=True) as catalog:
            client = TestClient(create_app(catalog))
            print("\npages (server time in-process, median of 5 after a warm-up):")
            for label, url, budget, check in pages:
                try:
                    seconds, html = timed(client, url)
                    said = check(html)
                except (AssertionError, RuntimeError) as exc:
                    print(f"  WRONG: {label}: {exc}")
                    failures += 1
                    continue
                verdict = "ok" if seconds < budget else "OVER"
                print(f"  {label:<46} {seconds * 1e3:8.1f} ms  < {budget * 1e3:.0f} ms {verdict:<4}  ({said})")
        failures += over_http(
            root, [(label, url) for label, url, _budget, _check in pages if not url.startswith("/api")]
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
