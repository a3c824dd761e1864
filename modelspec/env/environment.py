"""Environments: materialize a hash-pinned lock once per environment digest.

    <home>/envs/<hex>/          a relocatable venv (uv), or a nix gc root + manifest
    <home>/envs/<hex>.lock      held while it is created, so concurrent builds create it once
    <home>/envs/tmp-<hex>-…     a half-made environment; renamed into place only when complete.
                                One whose `<hex>.lock` is free was left by a killed creator.

This module is the pool: finding, creating (under the lock), loading and removing an
environment. How a venv is installed is in `uv.py` (and `nix.py`); the manifest that seals
a finished environment, and the checks against it, are in `manifest.py`.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digest import hex_of
from ..errors import EnvironmentBuildError
from ..events import Event, Reporter, ignore
from ..store.files import remove_path, write_atomic
from ..store.objects import LocalStore
from ..text import plural
from .manifest import MANIFEST, MANIFEST_FORMAT, changed_files, list_environments, make_read_only, seal
from .uv import create_uv

ENV_MOUNT = "/ms/env"  # where a venv is mounted in the sandbox (fixed: keys hold no host path)


@dataclass(frozen=True)
class Environment:
    """A materialized environment and what a runner needs to put it on a stage's PATH."""

    digest: str
    path: Path  # <home>/envs/<hex>
    host_bin: str  # its bin directory on the host (for the process runner)
    sandbox_bin: str  # its bin directory inside the sandbox
    binds: tuple[tuple[str, str], ...]  # (host path, sandbox path) pairs to mount read-only
    # Sandbox paths shown as empty directories: the base interpreter's site-packages, so
    # that only its standard library (never a package the lock does not pin) is reachable.
    hidden: tuple[str, ...] = ()


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
    store: LocalStore,  # uv installs from the stored lock file's path
    *,
    offline: bool = False,
    reporter: Reporter = ignore,
) -> Environment:
    """The environment for a lock's `environment` entry, created if it does not exist yet.

    Raises `EnvironmentBuildError` for an environment whose files changed since it was made."""
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
        _remove_half_made(envs_dir, hex_of(digest))  # we hold its lock: their creator is gone
        envs_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=envs_dir, prefix=f"{TEMP_PREFIX}{hex_of(digest)}-"))
        reporter(Event("env-create", data={"digest": digest, "kind": pinned["kind"]}))
        started = time.monotonic()
        try:
            if pinned["kind"] == "uv":
                # Install from the store's copy: the workspace file may change under us.
                stored = store.put_file(env_file, digest=str(pinned["file_digest"]))
                details = create_uv(temp, str(pinned["python"]), store.path_of(stored), pinned["file"], offline)
                details["lock_object"] = stored
            else:
                from .nix import create_nix

                details = create_nix(temp, env_file, offline=offline)
            manifest = {
                "format": MANIFEST_FORMAT,
                "digest": digest,
                "kind": pinned["kind"],
                "python": pinned["python"],
                "file": pinned["file"],
                "created": time.time(),
                **details,
                **seal(temp),
            }
            write_atomic(temp / MANIFEST, json.dumps(manifest, sort_keys=True).encode())
            make_read_only(temp)
            os.rename(temp, target)
        except BaseException:
            remove_path(temp)
            raise
        reporter(Event("env-ready", data={"digest": digest, "seconds": time.monotonic() - started}))
    loaded = _load(target, digest)
    assert loaded is not None
    return loaded


TEMP_PREFIX = "tmp-"


def _remove_half_made(envs_dir: Path, hexpart: str) -> None:
    """Remove what a creator of this environment left when it was killed (hold its lock)."""
    for leftover in envs_dir.glob(f"{TEMP_PREFIX}{hexpart}-*"):
        remove_path(leftover)


def remove_abandoned(envs_dir: Path) -> list[str]:
    """Remove half-made environments whose creator is gone: its `<hex>.lock` is free (lock-based,
    not PID-based, liveness: a creator in another PID namespace is still seen). Returns their names."""
    removed: list[str] = []
    if not envs_dir.is_dir():
        return removed
    for leftover in sorted(envs_dir.glob(f"{TEMP_PREFIX}*")):
        hexpart = leftover.name.removeprefix(TEMP_PREFIX).partition("-")[0]
        lock = envs_dir / f"{hexpart}.lock"
        if len(hexpart) != 64 or not lock.exists():
            continue  # not one of ours (or from a version that named them by PID)
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being created right now
            try:
                remove_path(leftover)
                removed.append(leftover.name)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    return removed


def _load(target: Path, digest: str) -> Environment | None:
    try:
        manifest = json.loads((target / MANIFEST).read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    if manifest.get("format") != MANIFEST_FORMAT:
        return None
    changes = changed_files(target, manifest, rehash=False)
    if changes:
        raise EnvironmentBuildError(
            f"the environment {digest} was changed after it was created "
            f"({_count(changes)}), so it is not used: {_summary(changes)}",
            hint=f"remove it with `modelspec env rm {hex_of(digest)[:12]}` and build again (it is re-created from "
            "the lock); a `hermetic: off` stage must not write into its environment",
        )
    binds = tuple((host, inside) for host, inside in manifest["binds"])
    hidden = tuple(manifest.get("hidden", ()))
    if manifest["kind"] == "nix":
        return Environment(digest, target, manifest["host_bin"], manifest["sandbox_bin"], binds)
    return Environment(
        digest, target, str(target / "bin"), f"{ENV_MOUNT}/bin", ((str(target), ENV_MOUNT), *binds), hidden
    )


def _count(changes: list[str]) -> str:
    return plural(len(changes), "file")


def _summary(changes: list[str], limit: int = 5) -> str:
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more



def remove_environment(envs_dir: Path, prefix: str) -> str:
    """Delete the environment whose digest starts with `prefix`; returns its digest."""
    from ..errors import UsageError

    wanted = prefix.removeprefix("blake3:")
    matches = [e for e in list_environments(envs_dir) if str(e["digest"]).removeprefix("blake3:").startswith(wanted)]
    if len(matches) != 1:
        found = ", ".join(str(m["digest"])[7:19] for m in matches) or "none"
        raise UsageError(
            f"{prefix!r} matches {plural(len(matches), 'environment')} ({found})",
            hint="give more of the digest; `modelspec env list` shows them",
        )
    digest = str(matches[0]["digest"])
    with file_lock(envs_dir / f"{hex_of(digest)}.lock"):
        remove_path(Path(str(matches[0]["path"])))
    return digest
