"""An environment's manifest: what it was made from, and a table of every file it holds.

    <home>/envs/<hex>/modelspec-env.json    format, digest, kind, python, lock file, binds,
                                            and each file's size, mtime and digest

Once made, the tree is read-only and sealed by the table: a changed file is found before
the environment is used again (size and mtime, cheaply) and by `verify --all` (every byte).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..digest import digest_file

MANIFEST = "modelspec-env.json"
MANIFEST_FORMAT = 3  # 3: copied files, read-only, with a table of file digests


def seal(root: Path) -> dict[str, Any]:
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


def make_read_only(root: Path) -> None:
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
    for manifest in manifests(envs_dir):
        if manifest.get("format") == MANIFEST_FORMAT:
            changes = changed_files(Path(manifest["path"]), manifest, rehash=True)
            if changes:
                changed[str(manifest["digest"])] = changes
    return changed


def manifests(envs_dir: Path) -> Iterator[dict[str, Any]]:
    if envs_dir.is_dir():
        for entry in sorted(envs_dir.iterdir()):
            manifest = entry / MANIFEST
            if entry.is_dir() and manifest.is_file():
                yield {**json.loads(manifest.read_bytes()), "path": str(entry)}


def list_environments(envs_dir: Path) -> list[dict[str, Any]]:
    found = []
    for data in manifests(envs_dir):
        entry = Path(data["path"])
        size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
        summary = {k: v for k, v in data.items() if k not in ("files", "links")}  # thousands of rows
        found.append({**summary, "bytes": size})
    return found

