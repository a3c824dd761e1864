"""Environments: materialize a hash-pinned lock once per environment digest.

    <home>/envs/<hex>/          a relocatable venv (uv), or a nix gc root + manifest
    <home>/envs/<hex>.lock      held while it is created, so concurrent builds create it once
    <home>/envs/tmp-<pid>-…     a half-made environment; renamed into place only when complete

uv installs with `--require-hashes --no-build`: without `--no-build`, a wheel whose hash
does not match would silently be replaced by a build from source.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .digest import hex_of
from .errors import EnvironmentBuildError
from .events import Event, Reporter, ignore
from .store import LocalStore, remove_path, write_atomic

MANIFEST = "modelspec-env.json"
MANIFEST_FORMAT = 2


ENV_MOUNT = "/ms/env"  # where a venv is mounted in the sandbox (fixed: keys hold no host path)


@dataclass(frozen=True)
class Environment:
    """A materialized environment and what a runner needs to put it on a stage's PATH."""

    digest: str
    path: Path  # <home>/envs/<hex>
    host_bin: str  # its bin directory on the host (for the process runner)
    sandbox_bin: str  # its bin directory inside the sandbox
    binds: tuple[tuple[str, str], ...]  # (host path, sandbox path) pairs to mount read-only


def uv_bin() -> str:
    import uv

    return str(uv.find_uv_bin())


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock; released by the kernel if the holder dies.

    gc removes lock files nobody holds: a lock taken on a file that was removed (or
    replaced) meanwhile guards nothing, so it is taken again on the file now at the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if _same_file(handle.fileno(), path):
                    yield
                    return
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _same_file(fd: int, path: Path) -> bool:
    try:
        at_path = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (at_path.st_dev, at_path.st_ino)


def ensure_environment(
    pinned: Mapping[str, Any],
    env_file: Path,
    envs_dir: Path,
    store: LocalStore,
    *,
    offline: bool = False,
    reporter: Reporter = ignore,
) -> Environment:
    """The environment for a lock's `environment` entry, created if it does not exist yet."""
    digest = str(pinned["digest"])
    target = envs_dir / hex_of(digest)
    existing = _load(target, digest)
    if existing is not None:
        return existing
    with file_lock(envs_dir / f"{hex_of(digest)}.lock"):
        existing = _load(target, digest)
        if existing is not None:
            return existing
        remove_path(target)  # an environment of an older format (or a damaged one)
        envs_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=envs_dir, prefix=f"tmp-{os.getpid()}-"))
        reporter(Event("env-create", data={"digest": digest, "kind": pinned["kind"]}))
        started = time.monotonic()
        try:
            if pinned["kind"] == "uv":
                # Install from the store's copy: the workspace file may change under us.
                stored = store.put_file(env_file, digest=str(pinned["file_digest"]))
                details = _create_uv(temp, str(pinned["python"]), store.path_of(stored), pinned["file"], offline)
                details["lock_object"] = stored
            else:
                from .nixenv import create_nix

                details = create_nix(temp, env_file, offline=offline)
            manifest = {
                "format": MANIFEST_FORMAT,
                "digest": digest,
                "kind": pinned["kind"],
                "python": pinned["python"],
                "file": pinned["file"],
                "created": time.time(),
                **details,
            }
            write_atomic(temp / MANIFEST, json.dumps(manifest, sort_keys=True).encode())
            os.rename(temp, target)
        except BaseException:
            remove_path(temp)
            raise
        reporter(Event("env-ready", data={"digest": digest, "seconds": time.monotonic() - started}))
    loaded = _load(target, digest)
    assert loaded is not None
    return loaded


def _load(target: Path, digest: str) -> Environment | None:
    try:
        manifest = json.loads((target / MANIFEST).read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    if manifest.get("format") != MANIFEST_FORMAT:
        return None
    binds = tuple((host, inside) for host, inside in manifest["binds"])
    if manifest["kind"] == "nix":
        return Environment(digest, target, manifest["host_bin"], manifest["sandbox_bin"], binds)
    return Environment(digest, target, str(target / "bin"), f"{ENV_MOUNT}/bin", ((str(target), ENV_MOUNT), *binds))


def _create_uv(temp: Path, python: str, lock_object: Path, lock_name: str, offline: bool) -> dict[str, Any]:
    interpreter = find_interpreter(python)
    uv = uv_bin()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""}
    _uv([uv, "venv", "--quiet", "--relocatable", "--python", interpreter, str(temp)], env)
    requirements = lock_object
    if lock_name.endswith("uv.lock"):
        requirements = _export_uv_lock(uv, lock_object, temp, env)
    sync = [
        uv,
        "pip",
        "sync",
        "--quiet",
        "--python",
        str(temp / "bin" / "python"),
        "--require-hashes",
        "--no-build",
        "--link-mode",
        "hardlink",
        str(requirements),
    ]
    if offline:
        sync.append("--offline")
    _uv(sync, env, hint="with --offline, run once without it (online) to fill uv's cache" if offline else "")
    base = _base_prefix(temp)  # the venv's python is a symlink to it: mount it where it is
    return {"binds": [[base, base]] if base else []}


def find_interpreter(python: str) -> str:
    """The path of an interpreter of version `python` on this machine, or a clear error."""
    uv = uv_bin()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    found = subprocess.run([uv, "python", "find", "--no-project", python], capture_output=True, text=True, env=env)
    if found.returncode == 0:
        return found.stdout.strip()
    listing = subprocess.run(
        [uv, "python", "list", "--only-installed", "--output-format", "json"], capture_output=True, text=True, env=env
    )
    try:
        versions = sorted({f"{e['version']} ({e['path']})" for e in json.loads(listing.stdout)})
    except ValueError:
        versions = []
    raise EnvironmentBuildError(
        f"no Python {python} interpreter on this machine; found: {', '.join(versions) or 'none'}",
        hint=f"install Python {python} (e.g. apt-get install python{python}) or change environment.python",
    )


def _export_uv_lock(uv: str, lock_object: Path, temp: Path, env: dict[str, str]) -> Path:
    project = Path(tempfile.mkdtemp(dir=temp.parent, prefix=f"tmp-{os.getpid()}-uvlock-"))
    try:
        (project / "uv.lock").write_bytes(lock_object.read_bytes())
        out = _uv(
            [
                uv,
                "export",
                "--frozen",
                "--no-emit-project",
                "--format",
                "requirements-txt",
                "--directory",
                str(project),
            ],
            env,
        )
        requirements = temp / "requirements.txt"
        requirements.write_text(out)
        return requirements
    finally:
        remove_path(project)


def _uv(argv: list[str], env: dict[str, str], hint: str = "") -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        if "hash" in detail.lower() and "mismatch" in detail.lower():
            raise EnvironmentBuildError(
                f"hash mismatch while installing the environment:\n{detail}",
                hint="the lock does not match the published packages; re-lock with `modelspec env lock`",
            )
        raise EnvironmentBuildError(f"`uv {argv[1]}` failed:\n{detail}", hint=hint)
    return result.stdout


def _base_prefix(venv: Path) -> str:
    """The base interpreter's prefix (pyvenv.cfg `home` is its bin directory)."""
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return str(Path(value.strip()).parent)
    return ""


def list_environments(envs_dir: Path) -> list[dict[str, Any]]:
    found = []
    if envs_dir.is_dir():
        for entry in sorted(envs_dir.iterdir()):
            manifest = entry / MANIFEST
            if entry.is_dir() and manifest.is_file():
                data = json.loads(manifest.read_bytes())
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
                found.append({**data, "path": str(entry), "bytes": size})
    return found


def lock_requirements(requirements_in: Path, output: Path, python: str) -> None:
    """Write a hash-pinned lock for `requirements_in` (`uv pip compile --generate-hashes`)."""
    env = {
        **os.environ,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CUSTOM_COMPILE_COMMAND": f"modelspec env lock {requirements_in.name}",
    }
    _uv(
        [
            uv_bin(),
            "pip",
            "compile",
            "--quiet",
            "--generate-hashes",
            "--python-version",
            python,
            str(requirements_in),
            "-o",
            str(output),
        ],
        env,
    )


def remove_environment(envs_dir: Path, prefix: str) -> str:
    """Delete the environment whose digest starts with `prefix`; returns its digest."""
    from .errors import UsageError

    wanted = prefix.removeprefix("blake3:")
    matches = [e for e in list_environments(envs_dir) if str(e["digest"]).removeprefix("blake3:").startswith(wanted)]
    if len(matches) != 1:
        found = ", ".join(str(m["digest"])[7:19] for m in matches) or "none"
        raise UsageError(
            f"{prefix!r} matches {len(matches)} environments ({found})",
            hint="give more of the digest; `modelspec env list` shows them",
        )
    digest = str(matches[0]["digest"])
    with file_lock(envs_dir / f"{hex_of(digest)}.lock"):
        remove_path(Path(str(matches[0]["path"])))
    return digest
