"""Quality gates end to end, with real builds of one small model whose metrics come from its
config: `build` judges and exits 1 on a failed gate (0 with --no-gate-exit), `versions` and
`show` say rejected, `promote` refuses it until `--force --reason` (audited), a registered
input skips it, `gate REF` judges again, and gates are not part of the content id. And
`metrics`: the versions' metrics with deltas, aliases and sparklines, and their chart."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import Any
from xml.etree import ElementTree

import pytest
from conftest import Repo

SPEC = """\
modelspec: 1
name: m
version: "1.0"
code: {repo: ..}
config: {dir: conf}
hermetic: off
stages:
  fit:
    cmd: sh src/fit.sh ${config.auc} ${config.latency} ${outputs.metrics}
    code: [src/fit.sh]
    params: [auc, latency]
    outputs: {metrics: metrics.json}
    metrics: metrics
artifacts: [fit.metrics]
"""
GATES = """\
gates:
  - {metric: auc, direction: higher, threshold: 0.80}
  - {metric: auc, direction: higher, vs: production, min_abs_change: -0.005}
  - {metric: latency_ms, direction: lower, threshold: 50}
"""
FIT = """printf '{"auc": %s, "latency_ms": %s}' "$1" "$2" > "$3"\n"""
CONSUMER = """\
modelspec: 1
name: user
version: "1.0"
code: {repo: ..}
hermetic: off
data:
  upstream: {spec: m@RANGE, output: metrics, allow: [unsandboxed]}
stages:
  copy:
    cmd: cp ${inputs.upstream} ${outputs.copy}
    inputs: [upstream]
    outputs: {copy: copy.json}
artifacts: [copy.copy]
"""


def run(repo: Repo, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = repo.cli(*args)
    assert result.returncode == code, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


def as_json(repo: Repo, *args: str, code: int = 0) -> Any:
    return json.loads(run(repo, *args, "--json", code=code).stdout)


def make(repo: Repo) -> None:
    repo.write("specs/m.yaml", SPEC + GATES, dedent=False)
    repo.write("conf/config.yaml", "auc: 0.85\nlatency: 20\n")
    repo.write("src/fit.sh", FIT, dedent=False)
    repo.commit("m")


def test_gates_from_build_to_promotion(repo: Repo) -> None:
    make(repo)
    first = repo.modelspec("build", "specs/m.yaml")  # the real CLI, once
    assert first.returncode == 0, first.stdout + first.stderr
    assert "gates of m@1.0.0: passed" in first.stdout
    assert "passed  auc vs production: change ≥ -0.005 (higher is better): no baseline: no version is production" in (
        first.stdout
    )
    run(repo, "promote", "m@1.0.0", "production")

    worse = run(repo, "build", "specs/m.yaml", "auc=0.84", code=1)  # a CI job fails
    assert "gates of m@1.0.1: FAILED: the version is rejected" in worse.stdout
    assert "FAILED  auc vs production: change ≥ -0.005 (higher is better): change -0.01 < -0.005 vs m@1.0.0" in (
        worse.stdout
    )
    report = as_json(repo, "build", "specs/m.yaml", "auc=0.7", "latency=60", "--no-gate-exit")
    judged = report["versions"]["m"]["gates"]
    assert (judged["version"], judged["verdict"], judged["rejected"]) == ("m@1.0.2", "failed", True)
    assert [r["passed"] for r in judged["results"]] == [False, False, False]
    assert judged["results"][2]["value"] == 60 and judged["results"][1]["baseline_version"] == "m@1.0.0"

    rows = {r["version"]: r for r in as_json(repo, "versions", "m")}
    assert [(rows[v]["status"], rows[v]["gate"]) for v in ("1.0.0", "1.0.1", "1.0.2")] == [
        ("active", "passed"),
        ("rejected", "failed"),
        ("rejected", "failed"),
    ]
    table = run(repo, "versions", "m").stdout
    assert "gates" in table.splitlines()[0] and "rejected" in table
    shown = as_json(repo, "show", "m@1.0.1")
    assert shown["status"] == "rejected" and shown["gates"]["verdict"] == "failed"
    assert "FAILED  auc vs production" in run(repo, "show", "m@1.0.1").stdout

    refused = run(repo, "promote", "m@1.0.1", "production", code=2)
    assert "m@1.0.1 was rejected by its quality gates" in refused.stderr and "--force --reason" in refused.stderr
    assert "needs --reason" in run(repo, "promote", "m@1.0.1", "production", "--force", code=2).stderr
    run(repo, "promote", "m@1.0.1", "production", "--force", "--reason", "latency wins this week")
    shown = as_json(repo, "show", "m@1.0.1")
    assert shown["status"] == "active" and shown["gates"]["verdict"] == "overridden"
    assert shown["gates"]["details"]["reason"] == "latency wins this week"
    events = as_json(repo, "audit")["events"]
    assert [e["kind"] for e in events[-2:]] == ["gate", "promote"]
    assert events[-2]["payload"]["verdict"] == "overridden"
    run(repo, "audit", "--verify")
    holds = run(repo, "registry", "info").stdout.splitlines()[-1]
    assert holds.endswith("0 reproductions, 0 pins, 4 gate verdicts, 9 audit events"), holds  # each count once

    # A registered input takes the newest version its gates did not reject (1.0.1, accepted
    # by the override), not the rejected 1.0.2; a range holding only rejected versions is refused.
    repo.write("specs/user.yaml", CONSUMER.replace("RANGE", "^1.0"), dedent=False)
    repo.commit("user")
    lock = as_json(repo, "lock", "specs/user.yaml")["user"]
    assert lock["data"]["upstream"]["registered"] == "m@1.0.1"
    repo.write("specs/user.yaml", CONSUMER.replace("RANGE", "1.0.2"), dedent=False)
    repo.commit("user 1.0.2")
    refused = run(repo, "lock", "specs/user.yaml", code=2)
    assert "no version of m in '1.0.2' passed its quality gates: skipped 1.0.2 (rejected)" in refused.stderr

    # `gate` judges again against today's production (1.0.1) and records it.
    again = as_json(repo, "gate", "m@1.0.2", code=1)
    assert again["recorded"] and again["results"][1]["baseline_version"] == "m@1.0.1"
    assert as_json(repo, "gate", "m@1.0.0")["verdict"] == "passed"


def test_gates_are_not_part_of_the_content_id(repo: Repo) -> None:
    make(repo)
    built = repo.build_json("specs/m.yaml", in_process=True)["versions"]["m"]
    assert (built["ref"], built["new"], built["gates"]["verdict"]) == ("m@1.0.0", True, "passed")
    repo.write("specs/m.yaml", SPEC + GATES.replace("0.80", "0.9"), dedent=False)
    repo.commit("a stricter gate")
    report = as_json(repo, "build", "specs/m.yaml", code=1)
    assert report["versions"]["m"]["ref"] == "m@1.0.0" and not report["versions"]["m"]["new"]
    assert report["versions"]["m"]["gates"]["verdict"] == "failed"  # the same content, judged by the new gates
    repo.write("specs/m.yaml", SPEC, dedent=False)
    repo.commit("no gates")
    report = as_json(repo, "build", "specs/m.yaml")
    assert report["versions"]["m"] == {"ref": "m@1.0.0", "new": False}
    # Without gates in the spec, `gate` judges by the gates the version was last judged by,
    # or by a spec's; a version never judged says what to do.
    assert as_json(repo, "gate", "m@1.0.0", code=1)["verdict"] == "failed"
    run(repo, "build", "specs/m.yaml", "auc=0.95")
    never = run(repo, "gate", "m@1.0.1", code=2)
    assert "m@1.0.1 was never judged by quality gates" in never.stderr and "--spec" in never.stderr
    repo.write("specs/gated.yaml", (SPEC + GATES).replace("name: m", "name: other"), dedent=False)
    repo.commit("another model's spec")
    assert "is the spec of other, not of m" in run(repo, "gate", "m@1.0.1", "--spec", "specs/gated.yaml", code=2).stderr
    repo.write("specs/gated.yaml", SPEC + GATES, dedent=False)
    repo.commit("m's gates again")
    assert as_json(repo, "gate", "m@1.0.1", "--spec", "specs/gated.yaml")["verdict"] == "passed"


def test_metrics_over_versions_with_deltas_aliases_and_a_plot(repo: Repo) -> None:
    make(repo)
    for overrides in ((), ("auc=0.9", "latency=30"), ("auc=0.7",)):
        repo.cli("build", "specs/m.yaml", "--no-gate-exit", *overrides, check=True)
        if not overrides:
            run(repo, "promote", "m@1.0.0", "production")
    table = run(repo, "metrics", "m").stdout.splitlines()
    assert table[0].split() == ["version", "created", "(UTC)", "status", "auc", "latency_ms", "aliases"]
    assert table[1].split()[-1] == "production" and table[1].split()[3:5] == ["active", "0.85"]
    assert "0.9 (+0.05)" in table[2] and "30 (+10)" in table[2]
    assert "rejected" in table[3] and "0.7 (-0.2)" in table[3]
    assert table[4] == "auc         ▆█▁  min 0.7  max 0.9  last 0.7"
    assert table[5] == "latency_ms  ▁█▁  min 20  max 30  last 20"

    found = as_json(repo, "metrics", "m", "--metric", "auc")
    assert found["metrics"] == ["auc"]
    assert [(v["version"], v["aliases"], v["deltas"]) for v in found["versions"]] == [
        ("1.0.0", ["production"], {}),
        ("1.0.1", [], {"auc": pytest.approx(0.05)}),
        ("1.0.2", [], {"auc": pytest.approx(-0.2)}),
    ]
    assert found["summary"]["auc"]["sparkline"] == "▆█▁"
    assert "did you mean 'auc'" in run(repo, "metrics", "m", "--metric", "acu", code=2).stderr
    assert "is not a date" in run(repo, "metrics", "m", "--since", "last week", code=2).stderr
    assert as_json(repo, "metrics", "m", "--since", "2999-01-01")["versions"] == []

    plot = repo.path / "out" / "m.svg"
    assert as_json(repo, "metrics", "m", "--plot", str(plot))["plot"] == str(plot)
    svg = ElementTree.parse(plot).getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "production" in texts and "auc" in texts and "latency_ms" in texts and "1.0.2" in texts
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}polyline"))) == 2
    assert "a plot is written as .svg or .png" in run(repo, "metrics", "m", "--plot", "m.pdf", code=2).stderr
    png = repo.path / "m.png"
    if importlib.util.find_spec("matplotlib") is not None:  # the `plot` extra
        run(repo, "metrics", "m", "--plot", str(png))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    else:
        assert "pip install 'modelspec[plot]'" in run(repo, "metrics", "m", "--plot", str(png), code=2).stderr
        assert not png.exists()
    assert [p.name for p in (repo.path / "out").iterdir()] == ["m.svg"]  # no temp file left behind


def build_loading(repo: Repo, *args: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """A real build in a subprocess, and whether it imported SQLAlchemy (opened the registry)."""
    code = (
        "import atexit, sys; atexit.register(lambda: print('sqlalchemy:', 'sqlalchemy' in sys.modules)); "
        "from modelspec.cli import main; sys.argv = ['modelspec', *sys.argv[1:]]; main()"
    )
    done = subprocess.run([sys.executable, "-c", code, "build", *args], cwd=repo.path, capture_output=True, text=True)
    return done, "sqlalchemy: True" in done.stdout


def test_a_no_op_build_reuses_its_verdict_until_the_registry_moves(repo: Repo) -> None:
    make(repo)
    run(repo, "build", "specs/m.yaml")
    run(repo, "build", "specs/m.yaml", "auc=0.9")
    noop, opened = build_loading(repo, "specs/m.yaml", "auc=0.9")
    assert noop.returncode == 0 and not opened, noop.stdout + noop.stderr  # the registry was not opened
    assert "gates of m@1.0.1: passed" in noop.stdout
    run(repo, "promote", "m@1.0.1", "production")  # the baseline moved: judged again
    again, opened = build_loading(repo, "specs/m.yaml", "auc=0.9")
    assert opened and "change +0 ≥ -0.005 vs m@1.0.1" in again.stdout
    assert not build_loading(repo, "specs/m.yaml", "auc=0.9")[1]
    repo.write("specs/m.yaml", SPEC + GATES.replace("0.80", "0.95"), dedent=False)  # other gates
    repo.commit("stricter")
    stricter, opened = build_loading(repo, "specs/m.yaml", "auc=0.9")
    assert opened and stricter.returncode == 1 and "FAILED  auc ≥ 0.95: 0.9 < 0.95" in stricter.stdout
    repeat, opened = build_loading(repo, "specs/m.yaml", "auc=0.9")
    assert not opened and repeat.returncode == 1 and "FAILED: the version is rejected" in repeat.stdout
