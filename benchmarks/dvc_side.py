"""DVC 3 with dvc-s3 pushing and pulling the same files as modelspec, to the same moto server
(used by remote_bench.py). DVC lives only in the benchmark's own venv, made on first use
under the user's cache folder: it is no dependency of modelspec.

Each case is one DVC repository whose files sit in one directory added by `dvc add` (one
.dvc file for the lot: DVC's fast path, far quicker than a .dvc file per output). Timed:
`dvc push`, the same push again (nothing to send), and `dvc pull` in a fresh git clone
with an empty cache (pull = fetch + checkout into the workspace, as a DVC user runs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

DVC_REQUIREMENT = "dvc[s3]>=3,<4"
REMOTE = "bench"


def default_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "modelspec-bench" / "dvc-venv"


def ensure_dvc(venv: Path) -> Path | None:
    """The dvc executable in `venv`, installing DVC there first if it is not yet; None (and
    why, printed) when it cannot be installed."""
    dvc = venv / "bin" / "dvc"
    installed = venv / ".modelspec-bench-installed"  # written only after pip succeeded
    if installed.exists() and dvc.exists():
        return dvc
    print(f"installing {DVC_REQUIREMENT} into {venv} (first use only)", flush=True)
    python = shutil.which("python3.11") or sys.executable
    steps = ([python, "-m", "venv", str(venv)], [str(venv / "bin" / "pip"), "install", "-q", DVC_REQUIREMENT])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"DVC not installed ({' '.join(step[:3])} failed): no DVC figures\n{done.stderr[-2000:]}")
            return None
    installed.write_text(DVC_REQUIREMENT + "\n")
    return dvc


class DvcBench:
    """Runs DVC against one S3 remote (`s3://<bucket>/dvc` on the moto endpoint)."""

    def __init__(self, dvc: Path, endpoint: str, bucket: str, root: Path, jobs: int) -> None:
        self.dvc = dvc
        self.endpoint = endpoint
        self.url = f"s3://{bucket}/dvc"
        self.root = root
        self.jobs = jobs
        # The AWS credentials are the benchmark's dummy ones, already in the environment.
        # No analytics, no update check: this machine reaches no such service.
        self.env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(root / "dvc-site-cache")}
        for key, value in (("NAME", "bench"), ("EMAIL", "bench@example.invalid")):
            self.env[f"GIT_AUTHOR_{key}"] = self.env[f"GIT_COMMITTER_{key}"] = value

    def run(self, where: Path, *args: str) -> None:
        done = subprocess.run([str(self.dvc), *args], cwd=where, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"dvc {' '.join(args)} failed in {where}:\n{done.stdout}\n{done.stderr}")

    def git(self, where: Path, *args: str) -> None:
        subprocess.run(["git", *args], cwd=where, env=self.env, check=True, capture_output=True)

    def version(self) -> str:
        done = subprocess.run([str(self.dvc), "--version"], env=self.env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def repository(self, name: str, files: Iterable[Path]) -> Path:
        """A git + DVC repository holding copies of `files` under data/, added and committed."""
        repo = self.root / f"dvc-{name}"
        (repo / "data").mkdir(parents=True)
        for file in files:
            # Copies, not links: DVC may replace or re-permission what it adds.
            shutil.copyfile(file, repo / "data" / file.name)
        self.git(repo, "init", "-q", "-b", "main")
        self.run(repo, "init", "-q")
        for setting in (("core.analytics", "false"), ("core.check_update", "false")):
            self.run(repo, "config", *setting)
        self.run(repo, "remote", "add", "-d", REMOTE, self.url)
        self.run(repo, "remote", "modify", REMOTE, "endpointurl", self.endpoint)
        self.run(repo, "add", "-q", "data")
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "-q", "-m", name)
        return repo

    def push_pull(self, name: str, files: list[Path], timed: Callable[[str, Callable[[], object]], float]) -> dict:
        """Times push, push again and pull (fresh clone, empty cache) of `files`; the seconds by step."""
        repo = self.repository(name, files)
        jobs = ("-j", str(self.jobs))
        what = f"{len(files)} {name}"
        figures = {"push": timed(f"push {what} (dvc push -j {self.jobs})", lambda: self.run(repo, "push", *jobs))}
        figures["again"] = timed(f"push {what} again (dvc, nothing to send)", lambda: self.run(repo, "push", *jobs))
        clone = self.root / f"dvc-{name}-clone"
        self.git(self.root, "clone", "-q", str(repo), str(clone))
        figures["pull"] = timed(
            f"pull {what} (dvc pull -j {self.jobs}, fresh clone)", lambda: self.run(clone, "pull", *jobs)
        )
        pulled = sorted(p.name for p in (clone / "data").iterdir())
        if pulled != sorted(f.name for f in files):
            raise RuntimeError(f"dvc pull of {name} brought {len(pulled)} files, not {len(files)}")
        return figures
