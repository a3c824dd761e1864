"""Environments materialized from hash-pinned locks with real uv, and from nix files with
real nix-build; used inside the real bubblewrap sandbox."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Repo, states

SPEC = """\
modelspec: 1
name: envy
version: "1.0"
code: {{repo: ..}}
environment: {environment}
hermetic: strict
stages:
  probe:
    cmd: {cmd}
    shell: true
    outputs: {{out: out.txt}}
artifacts: [probe.out]
"""
PY_CMD = '"python -c \\"import iniconfig, sys; print(iniconfig.__name__, sys.prefix)\\" > ${outputs.out}"'


@pytest.fixture(scope="session")
def iniconfig_lock(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real hash-pinned lock of one small pure-Python package, made by `modelspec env lock`."""
    folder = tmp_path_factory.mktemp("lock")
    (folder / "requirements.in").write_text("iniconfig==2.0.0\n")
    subprocess.run(
        [sys.executable, "-m", "modelspec", "env", "lock", "requirements.in", "-o", "requirements.lock"],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    text = (folder / "requirements.lock").read_text()
    assert "--hash=sha256:" in text and "iniconfig==2.0.0" in text
    return text


def make_env_spec(repo: Repo, lock_text: str, cmd: str = PY_CMD, python: str = "3.11") -> str:
    repo.write("env/requirements.lock", lock_text, dedent=False)
    environment = f'{{python: "{python}", lock: env/requirements.lock}}'
    repo.write("specs/envy.yaml", SPEC.format(environment=environment, cmd=cmd), dedent=False)
    repo.commit("env spec")
    return "specs/envy.yaml"


def output_of(repo: Repo, spec: str) -> str:
    repo.modelspec("checkout", spec, "--out", "o", check=True)
    return (repo.path / "o/probe/out.txt").read_text()


def envs(repo: Repo) -> list[str]:
    folder = repo.path / ".modelspec" / "envs"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def test_a_uv_environment_runs_inside_the_sandbox(repo: Repo, iniconfig_lock: str) -> None:
    spec = make_env_spec(repo, iniconfig_lock)
    report = repo.build_json(spec)
    assert states(report) == {"envy:probe": "ran"}
    assert output_of(repo, spec) == "iniconfig /ms/env\n"
    listed = json.loads(repo.modelspec("env", "list", "--json", check=True).stdout)
    assert [e["digest"] for e in listed] == [f"blake3:{envs(repo)[0]}"]


def test_two_concurrent_builds_create_the_environment_once(repo: Repo, iniconfig_lock: str) -> None:
    spec = make_env_spec(repo, iniconfig_lock)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "modelspec", "build", spec],
            cwd=repo.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum(out.count("creating uv environment") for out, _err in outputs) == 1
    assert len(envs(repo)) == 1


def test_a_tampered_hash_fails_and_leaves_no_half_made_environment(repo: Repo, iniconfig_lock: str) -> None:
    tampered = re.sub(r"sha256:[0-9a-f]{8}", "sha256:00000000", iniconfig_lock)
    assert tampered != iniconfig_lock
    spec = make_env_spec(repo, tampered)
    result = repo.modelspec("build", spec, env={"UV_NO_CACHE": "1"})
    assert result.returncode == 1
    assert "hash" in result.stdout.lower() + result.stderr.lower()
    assert "Traceback" not in result.stderr
    leftovers = os.listdir(repo.path / ".modelspec" / "envs")
    assert [name for name in leftovers if not name.endswith(".lock")] == []


def test_a_python_version_the_machine_lacks_is_a_clear_error(repo: Repo, iniconfig_lock: str) -> None:
    spec = make_env_spec(repo, iniconfig_lock, python="3.4")
    result = repo.modelspec("env", "create", spec)
    assert result.returncode == 1
    assert "no Python 3.4 interpreter" in result.stderr and "3.11" in result.stderr
    assert "Traceback" not in result.stderr


def test_env_create_then_rm(repo: Repo, iniconfig_lock: str) -> None:
    spec = make_env_spec(repo, iniconfig_lock)
    created = json.loads(repo.modelspec("env", "create", spec, "--json", check=True).stdout)
    assert Path(created["path"]).is_dir()
    again = json.loads(repo.modelspec("env", "create", spec, "--json", check=True).stdout)
    assert again == created
    repo.modelspec("env", "rm", created["digest"][7:20], check=True)
    assert envs(repo) == []


NIX_FILE = r"""
derivation {
  name = "hello-env";
  system = builtins.currentSystem;
  builder = "${./tools}/sh";
  args = [ "-c" ("set -e; bb=${./tools}/busybox; $bb mkdir -p $out/bin; $bb cp $bb $out/bin/busybox; "
    + "$bb printf '#!%s/bin/busybox sh\necho hello from nix\n' $out > $out/bin/hello; $bb chmod +x $out/bin/hello") ];
}
"""


def test_a_nix_environment_built_offline_with_a_private_store(repo: Repo, tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    assert busybox and shutil.which("nix-build"), "CI installs nix-bin and busybox-static"
    repo.write("nix/env.nix", NIX_FILE)
    (repo.path / "nix/tools").mkdir()
    for name in ("sh", "busybox"):  # busybox picks its applet from its file name
        shutil.copy(busybox, repo.path / "nix/tools" / name)
    repo.write(
        "specs/envy.yaml", SPEC.format(environment="{nix: nix/env.nix}", cmd='"hello > ${outputs.out}"'), dedent=False
    )
    repo.commit("nix")
    env = {"MODELSPEC_NIX_STORE": str(tmp_path / "nixstore")}
    report = json.loads(repo.modelspec("build", "specs/envy.yaml", "--offline", "--json", env=env, check=True).stdout)
    assert states(report) == {"envy:probe": "ran"}
    assert output_of(repo, "specs/envy.yaml") == "hello from nix\n"
    gc_root = repo.path / ".modelspec" / "envs" / envs(repo)[0] / "result"
    assert os.readlink(gc_root).startswith("/nix/store/")


def test_nix_missing_is_a_clear_error(repo: Repo, tmp_path: Path) -> None:
    repo.write("nix/env.nix", NIX_FILE)
    repo.write(
        "specs/envy.yaml", SPEC.format(environment="{nix: nix/env.nix}", cmd='"hello > ${outputs.out}"'), dedent=False
    )
    repo.commit("nix")
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("git", "bwrap"):
        os.symlink(shutil.which(tool) or tool, bare / tool)
    result = repo.modelspec("build", "specs/envy.yaml", env={"PATH": str(bare)})
    assert result.returncode == 1
    assert "neither nix-build nor nix-portable is installed" in result.stderr
