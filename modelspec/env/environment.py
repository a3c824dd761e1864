"""Environments: materialize a hash-pinned lock once per environment digest.

    <home>/envs/<hex>/          a relocatable venv (uv), or a nix gc root + manifest
    <home>/envs/<hex>.lock      held while it is created, so concurrent builds create it once
    <home>/envs/tmp-<hex>-…     a half-made environment; renamed into place only when complete.
                                One whose `<hex>.lock` is free was left by a killed creator.

uv installs with `--require-hashes --no-build`: without `--no-build`, a wheel whose hash
does not match would silently be replaced by a build from source. It copies (never
hardlinks) from its cache, and the tree is then made read-only with the digest, size and
mtime of every file in the manifest: a write into one environment can reach neither uv's
cache nor any other environment, and is detected before the environment is used again
(size and mtime, cheaply) and by `verify --all` (every byte).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..children import die_with_parent
from ..digest import digest_file, hex_of
from ..errors import EnvironmentBuildError
from ..events import Event, Reporter, ignore
from ..spec.locklines import option_lines
from ..spec.yamlsource import open_regular
from ..store.objects import LocalStore, remove_path, write_atomic
from ..text import plural

MANIFEST = "modelspec-env.json"
MANIFEST_FORMAT = 3  # 3: copied files, read-only, with a table of file digests


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
                details = _create_uv(temp, str(pinned["python"]), store.path_of(stored), pinned["file"], offline)
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
                **_seal(temp),
            }
            write_atomic(temp / MANIFEST, json.dumps(manifest, sort_keys=True).encode())
            _make_read_only(temp)
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


def _seal(root: Path) -> dict[str, Any]:
    """The manifest's table of every file (size, mtime_ns, digest) and symlink (target)."""
    files: dict[str, list[Any]] = {}
    links: dict[str, str] = {}
    for relative, entry in _walk(root):
        if entry.is_symlink():
            links[relative] = os.readlink(entry.path)
            continue
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(info.st_mode):
            os.chmod(entry.path, stat.S_IMODE(info.st_mode) & ~0o222)  # chmod leaves the mtime alone
            files[relative] = [info.st_size, info.st_mtime_ns, digest_file(entry.path)]
    return {"files": files, "links": links}


def _make_read_only(root: Path) -> None:
    (root / MANIFEST).chmod(0o444)
    for folder, _dirs, _files in os.walk(root, topdown=False):
        os.chmod(folder, stat.S_IMODE(os.stat(folder).st_mode) & ~0o222)


def _walk(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relative path, entry) of everything below `root` but directories and the manifest;
    symlinks are not followed."""
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as scan:
            for entry in scan:
                relative = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, relative + "/"))
                elif relative != MANIFEST:
                    yield relative, entry


def changed_files(root: Path, manifest: Mapping[str, Any], *, rehash: bool) -> list[str]:
    """What differs from the manifest's table: `changed: PATH`, `added: PATH`, `removed: PATH`.

    Without `rehash`, a file whose size and mtime are as recorded is taken as unchanged
    (one stat per file); with it, every file is read and hashed."""
    files: dict[str, list[Any]] = manifest.get("files", {})
    links: dict[str, str] = manifest.get("links", {})
    changes: list[str] = []
    seen: set[str] = set()
    try:
        for relative, entry in _walk(root):
            seen.add(relative)
            recorded = files.get(relative)
            if entry.is_symlink() and relative in links:
                if links[relative] != os.readlink(entry.path):
                    changes.append(f"changed: {relative}")
            elif not entry.is_symlink() and recorded is not None:
                info = entry.stat(follow_symlinks=False)
                same_size = stat.S_ISREG(info.st_mode) and info.st_size == recorded[0]
                suspect = rehash or info.st_mtime_ns != recorded[1]  # a touched file may hold the same bytes
                if not same_size or (suspect and digest_file(entry.path) != recorded[2]):
                    changes.append(f"changed: {relative}")
            elif recorded is not None or relative in links:
                changes.append(f"changed: {relative}")  # a file became a symlink, or the reverse
            elif "__pycache__/" not in relative:
                # Python caches byte code beside a module on import, checked against its source.
                changes.append(f"added: {relative}")
    except OSError as exc:
        changes.append(f"unreadable: {exc.filename or root} ({exc.strerror})")
    changes += [f"removed: {relative}" for relative in sorted((files.keys() | links.keys()) - seen)]
    return sorted(changes)


def verify_environments(envs_dir: Path) -> dict[str, list[str]]:
    """Every environment whose files differ from its manifest (each byte re-hashed): digest → changes."""
    changed: dict[str, list[str]] = {}
    for manifest in _manifests(envs_dir):
        if manifest.get("format") == MANIFEST_FORMAT:
            changes = changed_files(Path(manifest["path"]), manifest, rehash=True)
            if changes:
                changed[str(manifest["digest"])] = changes
    return changed


def _manifests(envs_dir: Path) -> Iterator[dict[str, Any]]:
    if envs_dir.is_dir():
        for entry in sorted(envs_dir.iterdir()):
            manifest = entry / MANIFEST
            if entry.is_dir() and manifest.is_file():
                yield {**json.loads(manifest.read_bytes()), "path": str(entry)}


def _create_uv(temp: Path, python: str, lock_object: Path, lock_name: str, offline: bool) -> dict[str, Any]:
    interpreter = find_interpreter(python)
    uv = uv_bin()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""}
    _uv([uv, "venv", "--quiet", "--relocatable", "--python", interpreter, str(temp)], env)
    requirements = lock_object
    if lock_name.endswith("uv.lock"):
        requirements = _export_uv_lock(uv, lock_object, temp, env)
    else:
        problems = option_lines(lock_object.read_text(errors="replace"))
        if problems:  # a lock made before such lines were refused at resolution
            line, message = problems[0]
            raise EnvironmentBuildError(f"{lock_name}:{line}: {message}")
    sync = [
        uv,
        "pip",
        "sync",
        "--quiet",
        "--python",
        str(temp / "bin" / "python"),
        "--require-hashes",
        "--no-build",
        # A copy, never a hardlink into uv's cache: a write into this environment must not
        # reach the cache and, through it, every other environment.
        "--link-mode",
        "copy",
        str(requirements),
    ]
    if offline:
        sync.append("--offline")
    _uv(sync, env, hint="with --offline, run once without it (online) to fill uv's cache" if offline else "")
    (temp / "requirements.txt").unlink(missing_ok=True)  # the exported uv.lock: not part of the venv
    base = _base_prefix(temp)  # the venv's python is a symlink to it: mount it where it is
    return {"binds": [[base, base]] if base else [], "hidden": _site_packages(interpreter)}


def _site_packages(interpreter: str) -> list[str]:
    """The base interpreter's site-packages (and dist-packages) directories that exist."""
    script = (
        "import json, os, site, sysconfig\n"
        "found = site.getsitepackages() + [sysconfig.get_path('purelib'), sysconfig.get_path('platlib')]\n"
        "print(json.dumps(sorted({os.path.normpath(p) for p in found if os.path.isdir(p)})))"
    )
    found = _run([interpreter, "-I", "-S", "-c", script], {**os.environ})
    if found.returncode != 0:
        raise EnvironmentBuildError(f"{interpreter} could not name its site-packages:\n{found.stderr.strip()}")
    return [str(p) for p in json.loads(found.stdout)]


def find_interpreter(python: str) -> str:
    """The path of an interpreter of version `python` on this machine, or a clear error."""
    uv = uv_bin()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    found = _run([uv, "python", "find", "--no-project", python], env)
    if found.returncode == 0:
        return found.stdout.strip()
    listing = _run([uv, "python", "list", "--only-installed", "--output-format", "json"], env)
    try:
        versions = sorted({f"{e['version']} ({e['path']})" for e in json.loads(listing.stdout)})
    except ValueError:
        versions = []
    raise EnvironmentBuildError(
        f"no Python {python} interpreter on this machine; found: {', '.join(versions) or 'none'}",
        hint=f"install Python {python} (e.g. apt-get install python{python}) or change environment.python",
    )


def _export_uv_lock(uv: str, lock_object: Path, temp: Path, env: dict[str, str]) -> Path:
    project = Path(tempfile.mkdtemp(dir=temp, prefix="uvlock-"))  # inside: a kill leaves nothing else
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


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a helper that dies with modelspec: killed, modelspec must leave no uv writing
    into a half-made environment."""
    return subprocess.run(argv, capture_output=True, text=True, env=env, preexec_fn=die_with_parent)


def _uv(argv: list[str], env: dict[str, str], hint: str = "") -> str:
    result = _run(argv, env)
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
    for data in _manifests(envs_dir):
        entry = Path(data["path"])
        size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
        summary = {k: v for k, v in data.items() if k not in ("files", "links")}  # thousands of rows
        found.append({**summary, "bytes": size})
    return found


def lock_requirements(requirements_in: Path, output: Path, python: str) -> None:
    """Write a hash-pinned lock for `requirements_in` (`uv pip compile --generate-hashes`)."""
    open_regular(requirements_in, os.path.relpath(requirements_in)).close()  # uv would block on a FIFO
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
