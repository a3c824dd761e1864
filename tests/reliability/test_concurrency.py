"""Four builds of overlapping specs, a gc and a promote, all at once on one workspace,
repeated: every build succeeds, each stage runs at most once per key, no version number
is given twice, and nothing a version needs is swept. On each backend: the registry in the
store (SQLite), and on a PostgreSQL server (`registry:` in modelspec.yaml)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from conftest import Repo

BASE = """\
modelspec: 1
name: base
version: "1.0"
code: {repo: ..}
data: {raw: {path: data/raw.txt}}
stages:
  make:
    cmd: sh -c 'sleep 0.5; sort ${inputs.raw} > ${outputs.table}'
    inputs: [raw]
    outputs: {table: table.txt}
artifacts: [make.table]
"""
USER = """\
modelspec: 1
name: {name}
version: "2.1"
code: {{repo: ..}}
data:
  table: {{spec: base, output: make.table}}
config: {{dir: conf/{name}}}
stages:
  use:
    cmd: sh -c 'sleep 0.3; cat ${{inputs.table}} > ${{outputs.model}}; echo ${{config.use.v}} >> ${{outputs.model}}'
    inputs: [table]
    params: [use]
    outputs: {{model: model.txt}}
artifacts: [use.model]
retention: {{keep_last: 2}}
"""


def start(repo: Repo, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "modelspec", *args], cwd=repo.path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_concurrent_builds_gc_and_promote(repo: Repo, registry_url: str) -> None:
    repo.write("specs/base.yaml", BASE, dedent=False)
    for name in ("alpha", "beta"):
        repo.write(f"specs/{name}.yaml", USER.format(name=name), dedent=False)
        repo.write(f"conf/{name}/config.yaml", "use: {v: 0}\n")
    repo.write("data/raw.txt", "c\nb\na\n")
    server = "" if registry_url.startswith("sqlite") else f"registry: {registry_url}\n"
    repo.write("modelspec.yaml", "retention: {grace: 0s}\n" + server)
    repo.commit("overlapping specs")
    first = repo.build_json("specs/alpha.yaml")
    assert first["versions"] == {
        "base": {"ref": "base@1.0.0", "new": True},
        "alpha": {"ref": "alpha@2.1.0", "new": True},
    }
    lineage = json.loads(repo.modelspec("lineage", "alpha@2.1.0", "--json", check=True).stdout)
    assert [item.get("version") for item in lineage["upstream"]] == ["base@1.0.0"]

    runs: Counter[tuple[str, str]] = Counter()
    for round_ in range(1, 3):
        builds = [
            start(repo, "build", "specs/alpha.yaml", f"use.v={round_}", "--json"),
            start(repo, "build", "specs/beta.yaml", f"use.v={round_}", "--json"),
            start(repo, "build", "specs/alpha.yaml", f"use.v={round_ + 10}", "--json"),
            start(repo, "build", "specs/beta.yaml", "specs/alpha.yaml", f"use.v={round_ + 20}", "--json"),
        ]
        others = [start(repo, "gc"), start(repo, "promote", "alpha@latest", "production")]
        for proc in builds:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, (out, err)
            for row in json.loads(out)["nodes"]:
                if row["state"] == "ran":
                    runs[(row["node"], row["key"])] += 1
        for proc in others:
            _out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, (out, err)
    assert [key for key, count in runs.items() if count > 1] == []
    assert runs[("base:make", first["nodes"][0]["key"])] == 0  # built once, before the rounds

    for name in ("alpha", "beta"):
        listed = json.loads(repo.modelspec("versions", name, "--json", check=True).stdout)
        numbers = [v["version"] for v in listed]
        assert len(numbers) == len(set(numbers))
        ids = [v["content_id"] for v in listed]
        assert len(ids) == len(set(ids))
        for version in listed:
            if version["status"] == "active":
                assert repo.modelspec("verify", version["ref"]).returncode == 0, version["ref"]
    assert repo.modelspec("verify", "--all").returncode == 0
    assert repo.modelspec("audit", "--verify").returncode == 0
