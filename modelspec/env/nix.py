"""Nix environments: `nix-build` (or `nix-portable nix-build`) of the spec's nix file.

The build result is kept alive by a gc root (`result`, an out-link inside the
environment's directory); its `bin` goes on the stage's PATH and its closure is mounted
read-only at its /nix/store paths in the sandbox. `MODELSPEC_NIX_STORE` selects a store
other than the default one (`--store DIR`, a chroot store that needs no daemon).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..errors import EnvironmentBuildError


def nix_command() -> list[str]:
    if shutil.which("nix-build"):
        return []
    if shutil.which("nix-portable"):
        return ["nix-portable"]
    raise EnvironmentBuildError(
        "this spec's environment is a nix file, but neither nix-build nor nix-portable is installed",
        hint="install nix (apt-get install nix-bin) or put nix-portable on PATH",
    )


def create_nix(temp: Path, nix_file: Path, *, offline: bool) -> dict[str, Any]:
    prefix = nix_command()
    store = os.environ.get("MODELSPEC_NIX_STORE", "")
    options = ["--store", store] if store else []
    if offline:
        options += ["--option", "substituters", ""]
    out_link = temp / "result"
    build = subprocess.run(
        [*prefix, "nix-build", str(nix_file), "--out-link", str(out_link), *options], capture_output=True, text=True
    )
    if build.returncode != 0:
        raise EnvironmentBuildError(f"nix-build {nix_file.name} failed:\n{build.stderr.strip()[-2000:]}")
    out_path = build.stdout.strip().splitlines()[-1]
    closure = subprocess.run(
        [*prefix, "nix-store", "--query", "--requisites", out_path, *options[:2]], capture_output=True, text=True
    )
    if closure.returncode != 0:
        raise EnvironmentBuildError(f"nix-store --query failed:\n{closure.stderr.strip()}")
    root = store.rstrip("/")  # a chroot store keeps /nix/store/x at <store>/nix/store/x
    binds = [[root + path, path] for path in closure.stdout.split()]
    return {"binds": binds, "host_bin": root + out_path + "/bin", "sandbox_bin": out_path + "/bin", "out": out_path}
