"""The bubblewrap sandbox enforces what a spec declares (real bwrap: CI installs it, and
these tests fail rather than skip when it is missing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import Repo, states

SPEC = """\
modelspec: 1
name: box
version: "1.0"
code: {{repo: ..}}
data:
  allowed: {{path: data/allowed.txt}}
hermetic: {hermetic}
stages:
  probe:
    cmd: {cmd}
    shell: true
    code: [src]
    inputs: [allowed]
    outputs: {{out: out.txt}}
artifacts: [probe.out]
"""


def probe(
    repo: Repo, cmd: str, *args: str, hermetic: str = "strict", env: dict[str, str] | None = None
) -> dict[str, object]:
    """Build a one-stage spec running `cmd` (through /bin/sh) and return its node row."""
    repo.write("specs/box.yaml", SPEC.format(cmd=json.dumps(cmd), hermetic=hermetic), dedent=False)
    repo.write("data/allowed.txt", "allowed\n")
    repo.write("data/secret.txt", "undeclared\n")
    repo.write("src/tool.sh", "echo tool\n")
    repo.commit("probe")
    result = repo.modelspec("build", "specs/box.yaml", "--json", *args, env=env)
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    return {**report["nodes"][0], "report": report}


def test_bwrap_is_installed() -> None:
    assert shutil.which("bwrap"), "bubblewrap is required: apt-get install bubblewrap"


def test_network_is_unreachable_and_the_failure_says_so(repo: Repo) -> None:
    row = probe(
        repo,
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=3)\" && echo > ${outputs.out}",
    )
    assert row["state"] == "failed"
    assert "no network" in str(row["reason"])


def test_loopback_exists_but_host_services_are_not_reachable(repo: Repo) -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        row = probe(repo, f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)\"")
    finally:
        server.close()
    assert row["state"] == "failed"


def test_declared_input_config_and_code_are_visible(repo: Repo) -> None:
    row = probe(repo, "cat ${inputs.allowed} src/tool.sh /ms/config.json > ${outputs.out}")
    assert row["state"] == "ran", row
    repo.modelspec("checkout", "specs/box.yaml", "--out", "o", check=True)
    assert (repo.path / "o/probe/out.txt").read_text() == "allowed\necho tool\n{}\n"


@pytest.mark.parametrize("target", ["${inputs.allowed}", "src/tool.sh", "/ms/config.json", "/etc/hostname-x", "/usr/x"])
def test_cannot_write_outside_the_output_directory(repo: Repo, target: str) -> None:
    row = probe(repo, f"echo evil > {target} && echo > ${{outputs.out}}")
    assert row["state"] == "failed"
    assert (repo.path / "data/allowed.txt").read_text() == "allowed\n"


def test_cannot_read_undeclared_files_the_workspace_or_home(repo: Repo, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret").write_text("private\n")
    for path in (repo.path / "data/secret.txt", home / "secret", repo.path / ".modelspec", Path("/root")):
        row = probe(repo, f"cat {path} || ls {path} && echo > ${{outputs.out}}", env={"HOME": str(home)})
        assert row["state"] == "failed", path


def test_the_store_registry_and_other_outputs_are_invisible(repo: Repo) -> None:
    probe(repo, "echo first > ${outputs.out}")
    store = repo.path / ".modelspec" / "objects"
    assert store.is_dir()
    row = probe(repo, f"ls {store} && echo > ${{outputs.out}}")
    assert row["state"] == "failed"


def test_caller_environment_variables_do_not_leak(repo: Repo) -> None:
    row = probe(repo, "env | sort > ${outputs.out}", env={"SECRET_TOKEN": "xyzzy"})
    assert row["state"] == "ran"
    repo.modelspec("checkout", "specs/box.yaml", "--out", "o", check=True)
    seen = (repo.path / "o/probe/out.txt").read_text()
    assert "xyzzy" not in seen
    assert "TZ=UTC" in seen and "PYTHONHASHSEED=0" in seen and "LC_ALL=C.UTF-8" in seen
    commit_time = repo.git("log", "-1", "--format=%ct").strip()
    assert f"SOURCE_DATE_EPOCH={commit_time}" in seen
    assert "HOME=/ms/home" in seen


def test_the_code_is_the_committed_snapshot_not_the_working_tree(repo: Repo) -> None:
    probe(repo, "cat src/tool.sh > ${outputs.out}")
    (repo.path / "README.md").write_text("uncommitted but outside the code paths\n")
    row = probe(repo, "cat src/tool.sh > ${outputs.out}")
    assert row["state"] == "cached"


def test_strict_without_bwrap_fails_before_any_work(repo: Repo) -> None:
    repo.write("specs/box.yaml", SPEC.format(cmd='"echo > ${outputs.out}"', hermetic="strict"), dedent=False)
    repo.write("data/allowed.txt", "allowed\n")
    repo.write("src/tool.sh", "echo tool\n")
    repo.commit()
    result = repo.modelspec("build", "specs/box.yaml", env={"MODELSPEC_BWRAP": ""})
    assert result.returncode == 1
    assert "bubblewrap" in result.stderr and "apt-get install bubblewrap" in result.stderr
    assert not (repo.path / ".modelspec" / "ac").exists()


def test_auto_without_bwrap_warns_once_and_records_not_hermetic(repo: Repo) -> None:
    row = probe(repo, "echo > ${outputs.out}", hermetic="auto", env={"MODELSPEC_BWRAP": ""})
    assert row["state"] == "ran" and row["hermetic"] is False
    repo.write("specs/box.yaml", SPEC.format(cmd='"echo again > ${outputs.out}"', hermetic="auto"), dedent=False)
    repo.commit()
    result = repo.modelspec("build", "specs/box.yaml", env={"MODELSPEC_BWRAP": ""})
    assert result.stdout.count("bubblewrap (bwrap) is not installed") == 1


def test_the_hermetic_mode_is_part_of_the_key(repo: Repo) -> None:
    strict = probe(repo, "echo > ${outputs.out}")
    off = probe(repo, "echo > ${outputs.out}", "--hermetic", "off")
    assert strict["key"] != off["key"] and off["state"] == "ran" and off["hermetic"] is False
    again = probe(repo, "echo > ${outputs.out}")
    assert again["state"] == "cached"


def test_shell_placeholders_cannot_inject_shell_syntax(repo: Repo) -> None:
    repo.write(
        "conf/config.yaml", 'p: {v: "x; echo INJECTED > ${outputs.out}"}\n'.replace("${outputs.out}", "/ms/out/out.txt")
    )
    spec = SPEC.format(cmd=json.dumps("printf %s ${config.p.v} > ${outputs.out}"), hermetic="strict")
    spec = spec.replace("    outputs:", "    params: [p]\n    outputs:").replace(
        "hermetic:", "config: {dir: conf}\nhermetic:"
    )
    repo.write("specs/box.yaml", spec, dedent=False)
    repo.write("data/allowed.txt", "allowed\n")
    repo.write("src/tool.sh", "echo tool\n")
    repo.commit()
    report = repo.build_json("specs/box.yaml")
    assert states(report) == {"box:probe": "ran"}
    repo.modelspec("checkout", "specs/box.yaml", "--out", "o", check=True)
    assert (repo.path / "o/probe/out.txt").read_text() == "x; echo INJECTED > /ms/out/out.txt"
