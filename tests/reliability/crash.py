"""Crash injection: run a modelspec command (build, gc, promote, reproduce, or the creation of
an environment), SIGKILL it at a random instant, run it again, and check that the workspace
is consistent (including that the registry head the store records after each registry
commit still lets the registry open). Used by test_crash.py (a few dozen trials) and by
benchmarks/crash_trials.py (a thousand)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SPEC = """\
modelspec: 1
name: crash
version: "1.0"
code: {repo: ..}
data:
  raw: {path: data/raw.txt}
config: {dir: conf}
stages:
  prep:
    cmd: sh -c 'cat ${inputs.raw} > ${outputs.out}; echo ${config.prep.v} >> ${outputs.out}'
    inputs: [raw]
    params: [prep]
    outputs: {out: prep.txt}
  wide:
    cmd: sh -c 'mkdir ${outputs.tree}; for i in 1 2 3 4 5 6 7 8; do cat ${inputs.prep.out} > ${outputs.tree}/f$i; done'
    inputs: [prep.out]
    outputs: {tree: tree}
  score:
    cmd: sh -c 'cat ${inputs.wide.tree}/f1 > ${outputs.model}; echo {} > ${outputs.metrics}'
    inputs: [wide.tree]
    outputs: {model: model.txt, metrics: metrics.json}
    metrics: metrics
artifacts: [score.model]
retention:
  keep_last: 3
"""
# A spec whose only purpose is its environment: the `env` trial kills its creation.
ENV_SPEC = """\
modelspec: 1
name: crashenv
version: "1.0"
code: {repo: ..}
environment: {python: "3.11", lock: env/requirements.lock}
hermetic: "off"
stages:
  touch:
    cmd: sh -c 'echo > ${outputs.out}'
    outputs: {out: out.txt}
artifacts: [touch.out]
"""
ENV_LOCK = """\
iniconfig==2.0.0 \\
    --hash=sha256:2d91e135bf72d31a410b17c16da610a82cb55f6b0477d1a902134b24a455b8b3 \\
    --hash=sha256:b6a85871a79d2e3b22d2d1b94ac2824226a63c6b741c88f7ae975f18b6778374
"""
# A large model for the chunk layer's trials: each build replaces half of a 32 MiB file, so
# builds write packs, and gc cools versions, removes dead packs and rewrites half-dead ones.
BIG_SPEC = """\
modelspec: 1
name: crashbig
version: "1.0"
code: {repo: ..}
data:
  base: {path: data/big.bin}
config: {dir: conf}
stages:
  train:
    cmd: >-
      sh -c 'cp ${inputs.base} ${outputs.model} && chmod u+w ${outputs.model} &&
      head -c 16777216 /dev/urandom | dd of=${outputs.model} bs=1048576 conv=notrunc 2>/dev/null;
      echo ${config.prep.v} >> ${outputs.model}'
    inputs: [base]
    params: [prep]
    outputs: {model: model.bin}
artifacts: [train.model]
retention:
  keep_last: 2
"""
# How long each command takes here, roughly: kills land anywhere within it.
DURATION = {"build": 1.2, "gc": 0.8, "promote": 0.6, "reproduce": 1.2, "env": 1.0}
CHUNK_DURATION = {"chunks": 2.0, "gc": 1.0}  # the chunk layer's trials (`chunked=True`)


def init_workspace(root: Path, registry: str | None = None, *, chunked: bool = False) -> None:
    """The crash workspace, built once; its registry in the store, or at the URL `registry`;
    `chunked` adds the large model of the chunk layer's trials."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    (root / "specs").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "conf").mkdir()
    (root / "specs" / "crash.yaml").write_text(SPEC)
    (root / "data" / "raw.txt").write_text("raw\n" * 50)
    (root / "conf" / "config.yaml").write_text("prep: {v: 0}\n")
    (root / "modelspec.yaml").write_text("retention: {grace: 0s}\n" + (f"registry: {registry}\n" if registry else ""))
    (root / "specs" / "crashenv.yaml").write_text(ENV_SPEC)
    (root / "env").mkdir()
    (root / "env" / "requirements.lock").write_text(ENV_LOCK)
    subprocess.run(["git", "-C", str(root), "init", "-q", "-b", "main"], check=True, env=env, capture_output=True)
    if chunked:
        (root / "specs" / "crashbig.yaml").write_text(BIG_SPEC)
        (root / "data" / "big.bin").write_bytes(random.Random(0).randbytes(32 << 20))
    for args in (["add", "-A"], ["commit", "-q", "-m", "crash workspace"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=env, capture_output=True)
    run(root, ["build", "specs/crash.yaml"])
    if chunked:
        run(root, ["build", "specs/crashbig.yaml"])


def run(root: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelspec", *args], cwd=root, capture_output=True, text=True,
                          timeout=300)


@dataclass
class Trial:
    operation: str
    delay: float
    problems: list[str] = field(default_factory=list)


def command(operation: str, counter: int) -> list[str]:
    return {
        "build": ["build", "specs/crash.yaml", f"prep.v={counter}"],
        "gc": ["gc"],
        "promote": ["promote", "crash@latest", "production"],
        "reproduce": ["reproduce", "crash@latest"],
        "env": ["env", "create", "specs/crashenv.yaml"],
        "chunks": ["build", "specs/crashbig.yaml", f"prep.v={counter}"],
    }[operation]


def trial(root: Path, rng: random.Random, counter: int, *, chunked: bool = False) -> Trial:
    """One kill: of build, gc, promote, reproduce or env create; with `chunked`, of a build of
    the large model (chunking, packing) or gc (cooling, pruning and repacking packs)."""
    durations = CHUNK_DURATION if chunked else DURATION
    operation = rng.choice(sorted(durations))
    args = command(operation, counter)
    if operation == "env":  # kill it while it creates the environment, not once it exists
        remove_environments(root)
    delay = rng.uniform(0.1, durations[operation])
    proc = subprocess.Popen([sys.executable, "-m", "modelspec", *args], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = Trial(operation, delay)
    survivors = helpers_in(root / ".modelspec" / "envs", wait=1.0)
    if survivors:
        result.problems.append(f"helpers still running after modelspec was killed: {survivors}")
    again = run(root, args)
    if again.returncode != 0:
        result.problems.append(f"the next `{' '.join(args)}` exited {again.returncode}: {again.stderr.strip()[-500:]}")
    result.problems += check(root)
    return result


def helpers_in(folder: Path, wait: float) -> list[str]:
    """Command lines of live processes that name `folder` (uv creating an environment there),
    once `wait` seconds have passed without them all ending."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
            except (OSError, IndexError):
                continue
            if str(folder) in cmdline and not zombie:
                found.append(cmdline)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def remove_environments(root: Path) -> None:
    from modelspec.env.environment import remove_environment
    from modelspec.env.manifest import list_environments

    envs_dir = root / ".modelspec" / "envs"
    for environment in list_environments(envs_dir):
        remove_environment(envs_dir, str(environment["digest"]))


def check(root: Path) -> list[str]:
    """Every invariant that must hold after any crash, as a list of violations."""
    from modelspec.api import open_registry, verify
    from modelspec.errors import ModelspecError
    from modelspec.store.workspace import find_workspace

    problems = []
    workspace = find_workspace(root)
    report = verify(workspace)
    if not report.ok:
        problems.append(f"verify --all: corrupt {report.corrupt}, dropped entries {report.bad_entries}")
    try:  # the store's recorded registry head must still be a prefix of the audit chain
        registry = open_registry(workspace)
    except ModelspecError as exc:
        return [*problems, f"the registry no longer opens: {exc.message}"]
    try:
        tampered = registry.verify_audit()
        if tampered:
            problems.append(f"audit --verify: {tampered}")
        for version in registry.versions_by_status("active"):
            single = verify(workspace, version.ref)
            if not single.ok:
                problems.append(f"{version.ref} lost objects: missing {single.missing}, corrupt {single.corrupt}")
    finally:
        registry.close()
    leftovers = temp_files(workspace.home)
    if leftovers:
        problems.append(f"temp files left behind: {leftovers[:5]}")
    return problems


def temp_files(home: Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(home):
        relative = Path(folder).relative_to(home)
        if relative.parts[:1] in (("objects",), ("quarantine",)):
            dirs[:] = []
            continue
        if relative.parts[:1] == ("envs",) and len(relative.parts) == 1:
            found += [d for d in dirs if d.startswith("tmp-")]
            dirs[:] = []
        for name in files:
            if relative.parts[:1] == ("tmp",) or name.endswith((".tmp", ".new")) or (
                relative.parts[:1] == ("leases",) and name.endswith(".lease")
            ):
                found.append(str(relative / name))
    return found
