"""What the crash trials of a large model's push and fetch share (test_crash_chunked_push.py,
test_crash_chunked_fetch.py, two files so that pytest-xdist runs them side by side): a
workspace whose model is a 12 MiB file each build rewrites 5% of, its remote a real S3
server (moto, on loopback) behind a proxy adding 40 ms a request, and the checks that a
fresh store pulls every version whole."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crash import run

# A large model pushed as recipes and chunks: each build rewrites 5% of a 12 MiB file, so a
# push sends a pack or two of new chunks, then the recipe; a kill may fall between them.
BIG_SPEC = """\
modelspec: 1
name: big
version: "1.0"
code: {repo: ..}
data:
  base: {path: data/base.bin}
config: {dir: conf}
stages:
  train:
    cmd: >-
      sh -c 'cp ${inputs.base} ${outputs.model} && chmod u+w ${outputs.model} &&
      head -c 655360 /dev/urandom | dd of=${outputs.model} bs=65536 seek=${config.train.v} conv=notrunc 2>/dev/null'
    inputs: [base]
    params: [train]
    outputs: {model: model.bin}
artifacts: [train.model]
"""


@contextmanager
def big_workspace(root: Path, s3_endpoint: str) -> Iterator[Path]:
    """A git repository at `root` holding the big spec, its remote a fresh bucket behind a
    proxy adding 40 ms to each request, as a real network does: a push lasts long enough
    for kills to land between its chunks and its recipe."""
    from faultproxy import fault_proxy
    from s3server import new_bucket

    for folder in ("specs", "conf", "data"):
        (root / folder).mkdir(parents=True)
    (root / "specs" / "big.yaml").write_text(BIG_SPEC)
    (root / "conf" / "config.yaml").write_text("train: {v: 0}\n")
    (root / "data" / "base.bin").write_bytes(random.Random(3).randbytes(12 << 20))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "big"]):
        subprocess.run(
            ["git", "-C", str(root), *args], check=True, env={"PATH": "/usr/bin", **env}, capture_output=True
        )
    bucket = new_bucket(s3_endpoint)
    with fault_proxy(s3_endpoint) as (endpoint, faults):
        faults.latency = 0.04
        (root / "modelspec.yaml").write_text(f"remote: {{url: 's3://{bucket}/big', endpoint: '{endpoint}'}}\n")
        yield root


def build(root: Path, v: int) -> None:
    """A version of the big model whose 640 KiB at 64 KiB block `v` are new."""
    built = run(root, ["build", "specs/big.yaml", f"train.v={v}", "--no-push"])
    assert built.returncode == 0, built.stderr


def kill_after(root: Path, args: list[str], delay: float) -> None:
    """Run `modelspec ARGS` in the workspace and SIGKILL it after `delay` seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelspec", *args], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def fresh_pull_problems(root: Path, into: Path) -> list[str]:
    """Every active version's objects, pulled by a store that has none of them: each one's
    blake3 must match (a chunked one reassembled from the chunks that arrived)."""
    from modelspec.build.loading import open_registry
    from modelspec.build.needed import labelled_objects, version_entries
    from modelspec.errors import StoreError
    from modelspec.store.objects import LocalStore
    from modelspec.store.remote import RemoteStore
    from modelspec.store.remote_cache import open_remote
    from modelspec.store.workspace import find_workspace

    workspace = find_workspace(root)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    with open_registry(workspace) as registry:
        wanted = {
            d
            for version in registry.versions_by_status("active")
            for d in labelled_objects(workspace.store, version_entries(version))
        }
    fresh = LocalStore(into)
    fresh.tmp.mkdir(parents=True)
    try:
        RemoteStore(remote.blobs).download(fresh, wanted)
    except StoreError as exc:
        return [f"a fresh pull failed: {exc.message}"]
    return [f"{d} does not match its blake3 after a fresh pull" for d in sorted(wanted) if not fresh.verify(d)]
