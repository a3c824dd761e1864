"""Files modelspec writes for people honour the umask; objects in the store stay read-only.

Lock files, build records, export manifests and action-cache entries are replaced
atomically through a temp file. That temp file used to come from `mkstemp` (mode 0600), so
a team sharing a workspace under umask 022 could not read each other's `specs/x.lock`.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Repo

SPEC = """\
modelspec: 1
name: modes
version: "1.0"
code: {repo: ..}
stages:
  s:
    cmd: sh -c 'echo made > ${outputs.out}'
    outputs: {out: out.txt}
artifacts: [s.out]
"""


def modelspec(repo: Repo, umask: int, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelspec", *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=300,
        umask=umask,
    )
    assert result.returncode == 0, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_0666_less_the_umask_and_objects_stay_read_only(repo: Repo, umask: int) -> None:
    repo.write("specs/modes.yaml", SPEC, dedent=False)
    repo.commit("modes")
    modelspec(repo, umask, "build", "specs/modes.yaml")
    modelspec(repo, umask, "export", "modes@1.0.0", "exported")
    home = repo.path / ".modelspec"
    written = {
        "the lock file": repo.path / "specs" / "modes.lock",
        "the build record": home / "builds" / "modes.json",
        "the export manifest": repo.path / "exported" / "manifest.json",
        "an action-cache entry": next((home / "ac").rglob("*.json")),
    }
    expected = 0o666 & ~umask
    assert {what: oct(mode(path)) for what, path in written.items()} == {what: oct(expected) for what in written}
    objects = [p for p in (home / "objects").rglob("*") if p.is_file()]
    assert objects and {oct(mode(p)) for p in objects} <= {oct(0o444), oct(0o555)}
