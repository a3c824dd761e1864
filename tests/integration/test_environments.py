"""Environments materialized from hash-pinned locks with real uv, and from nix files with
real nix-build; used inside the real bubblewrap sandbox."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
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


TAMPER_SPEC = """\
modelspec: 1
name: tamper
version: "1.0"
code: {repo: ..}
environment: {python: "3.11", lock: env/requirements.lock}
hermetic: "off"
stages:
  write:
    cmd: python src/tamper.py ${outputs.out}
    code: [src/tamper.py]
    outputs: {out: out.txt}
artifacts: [write.out]
"""
# A `hermetic: off` stage that writes into its own environment (root ignores the read-only bits).
TAMPER_PY = """\
import os, pathlib, sys
import iniconfig
module = pathlib.Path(iniconfig.__file__)
os.chmod(module, 0o644)
module.write_text(module.read_text() + "TAMPERED = True\\n")
pathlib.Path(sys.argv[1]).write_text("done\\n")
"""
INICONFIG = "lib/python3.11/site-packages/iniconfig/__init__.py"


def env_dir(repo: Repo) -> Path:
    [name] = envs(repo)
    return repo.path / ".modelspec" / "envs" / name


def test_an_environment_shares_no_file_and_a_changed_one_is_refused(tmp_path: Path, iniconfig_lock: str) -> None:
    """Environment files were writable hard links into uv's cache, shared by every
    environment: one write changed the model of every workspace, with `verify --all` clean."""
    first, second = Repo(tmp_path / "first"), Repo(tmp_path / "second")
    spec = make_env_spec(first, iniconfig_lock)
    first.write("specs/tamper.yaml", TAMPER_SPEC, dedent=False)
    first.write("src/tamper.py", TAMPER_PY, dedent=False)
    first.commit("tamper")
    first.build_json(spec)
    for path in env_dir(first).rglob("*"):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            assert info.st_nlink == 1, f"{path} is a hard link shared with {info.st_nlink - 1} other paths"
            assert info.st_mode & 0o222 == 0, f"{path} is writable"
    first.build_json("specs/tamper.yaml")
    assert "TAMPERED" in (env_dir(first) / INICONFIG).read_text()

    # Neither uv's cache nor another workspace's environment changed.
    make_env_spec(second, iniconfig_lock)
    second.build_json(spec)
    assert "TAMPERED" not in (env_dir(second) / INICONFIG).read_text()
    assert second.modelspec("verify", "--all").returncode == 0

    # The changed environment is named by `verify --all` and is not used.
    verified = first.modelspec("verify", "--all")
    assert verified.returncode == 1, verified.stdout
    assert f"environment blake3:{envs(first)[0]} changed after it was created" in verified.stdout
    assert f"changed: {INICONFIG}" in verified.stdout
    listed = json.loads(first.modelspec("verify", "--all", "--json").stdout)
    changed = [{"digest": f"blake3:{envs(first)[0]}", "changes": [f"changed: {INICONFIG}"]}]
    assert listed["changed_environments"] == changed
    refused = first.modelspec("build", spec, "--force")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"changed after it was created (1 file), so it is not used: changed: {INICONFIG}" in refused.stderr
    assert f"modelspec env rm {envs(first)[0][:12]}" in refused.stderr

    # What the error says to do works.
    first.modelspec("env", "rm", envs(first)[0][:12], check=True)
    assert states(first.build_json(spec, "--force")) == {"envy:probe": "ran"}
    assert "TAMPERED" not in (env_dir(first) / INICONFIG).read_text()
    assert first.modelspec("verify", "--all").returncode == 0


PROBE_SPEC = """\
modelspec: 1
name: envy
version: "1.0"
code: {repo: ..}
environment: {python: "3.11", lock: env/requirements.lock}
hermetic: strict
stages:
  probe:
    cmd: python src/probe.py SITE ${outputs.out}
    code: [src/probe.py]
    outputs: {out: report.json}
artifacts: [probe.out]
"""
PROBE_PY = """\
import json, os, sys
site, out = sys.argv[1], sys.argv[2]
sys.path.append(site)
report = {"listing": sorted(os.listdir(site)) if os.path.isdir(site) else None}
import iniconfig, decimal, sqlite3  # the lock's package and the base interpreter's standard library
try:
    import pip
    report["pip"] = pip.__file__
except ImportError as exc:
    report["pip"] = type(exc).__name__
json.dump(report, open(out, "w"))
"""


def test_a_strict_stage_cannot_import_from_the_base_interpreters_site_packages(repo: Repo, iniconfig_lock: str) -> None:
    from modelspec.env.uv import find_interpreter

    base = find_interpreter("3.11")
    site = subprocess.run(
        [base, "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert "pip" in os.listdir(site), f"the test needs a package the lock does not pin in {site}"
    repo.write("env/requirements.lock", iniconfig_lock, dedent=False)
    repo.write("specs/envy.yaml", PROBE_SPEC.replace("SITE", site), dedent=False)
    repo.write("src/probe.py", PROBE_PY, dedent=False)
    repo.commit("probe")
    repo.build_json("specs/envy.yaml")
    repo.modelspec("checkout", "specs/envy.yaml", "--out", "o", check=True)
    report = json.loads((repo.path / "o/probe/report.json").read_text())
    assert report["listing"] in (None, []), "the base interpreter's site-packages is absent or empty"
    assert report["pip"] == "ModuleNotFoundError"


def uv_child_of(pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and (entry / "comm").read_text().strip() == "uv":
                    return int(entry.name)
            except (OSError, IndexError, ValueError):
                continue
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_killed_environment_creation_leaves_no_uv_running_and_its_leftover_is_removed(
    repo: Repo, iniconfig_lock: str
) -> None:
    spec = make_env_spec(repo, iniconfig_lock)
    plain = SPEC.replace("name: envy", "name: plain").replace("environment: {environment}\n", "")
    repo.write("specs/plain.yaml", plain.format(cmd='"echo > ${outputs.out}"'), dedent=False)
    repo.commit("a spec without an environment")
    repo.build_json("specs/plain.yaml")  # gc needs a registry
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelspec", "env", "create", spec],
        cwd=repo.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uv = None
    try:
        deadline = time.monotonic() + 60
        while uv is None and proc.poll() is None and time.monotonic() < deadline:
            uv = uv_child_of(proc.pid)
            time.sleep(0.002)
        assert uv is not None, "never saw modelspec run uv"
        os.kill(uv, signal.SIGSTOP)  # a stopped uv outlives its parent unless the kernel kills it
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while alive(uv) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(uv), "uv survived modelspec"
    finally:
        if uv is not None and alive(uv):
            os.kill(uv, signal.SIGKILL)
    folder = repo.path / ".modelspec" / "envs"
    assert [p.name for p in folder.glob("tmp-*")], "the kill left no half-made environment to clean up"
    repo.modelspec("gc", check=True)
    assert list(folder.glob("tmp-*")) == []
    report = repo.build_json(spec)
    assert states(report) == {"envy:probe": "ran"}
