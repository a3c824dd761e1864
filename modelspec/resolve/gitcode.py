"""Code refs: resolve a ref to a commit, list and digest the declared code paths, export them.

A code file is identified by its git blob id, so a clean checkout and `--allow-dirty`
working files with the same bytes produce the same code digest.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..digest import digest_json, git_blob_sha1
from ..errors import GitError

SYMLINK_MODE = "120000"


@dataclass(frozen=True, slots=True)
class CodeFile:
    path: str  # relative to the repository root, '/'-separated
    mode: str  # git mode: 100644, 100755 or 120000
    blob: str  # git blob id (sha1 hex)


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    time: int  # committer time, seconds since the epoch: SOURCE_DATE_EPOCH


def git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    try:
        result = subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True, check=False)
    except FileNotFoundError:
        raise GitError("git is not installed", hint="install git (apt-get install git)") from None
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def resolve_commit(repo: Path, ref: str) -> Commit:
    try:
        out = git(repo, "log", "-1", "--format=%H %ct", "--end-of-options", f"{ref}^{{commit}}", "--")
    except GitError:
        raise GitError(
            f"code.ref {ref!r} does not name a commit in {repo}",
            hint="use a commit, branch or tag that exists (git log --oneline)",
        ) from None
    sha, time = out.decode().split()
    return Commit(sha, int(time))


def committed_files(repo: Path, commit: str, paths: Iterable[str]) -> list[CodeFile]:
    """Every file under `paths` at `commit` (one `git ls-tree` for all paths)."""
    paths = sorted(set(paths))
    if not paths:
        return []
    out = git(repo, "ls-tree", "-r", "-z", "--full-tree", commit, "--", *paths)
    files = []
    for record in out.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            mode, kind, blob = meta.decode().split()
            if kind == "blob":
                files.append(CodeFile(name.decode(), mode, blob))
    return files


def dirty_files(repo: Path, commit: str, paths: Iterable[str]) -> list[str]:
    """Files under `paths` whose working copy differs from `commit` (including untracked)."""
    paths = sorted(set(paths))
    if not paths:
        return []
    out = git(repo, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", "--", *paths)
    head = ""
    changed: list[str] = []
    records = out.split(b"\0")
    i = 0
    while i < len(records):
        record = records[i].decode(errors="replace")
        i += 1
        if record.startswith("# branch.oid "):
            head = record.split()[-1]
        elif record.startswith(("1 ", "u ")):
            changed.append(record.split(" ", 8 if record[0] == "1" else 10)[-1])
        elif record.startswith("2 "):
            changed.append(record.split(" ", 9)[-1])
            i += 1  # the rename's original path follows
        elif record.startswith("? "):
            changed.append(record[2:])
    if head != commit:
        diff = git(repo, "diff", "--name-only", "-z", commit, "--", *paths)
        changed += [name.decode() for name in diff.split(b"\0") if name]
    return sorted(set(changed))


def working_files(repo: Path, paths: Iterable[str]) -> list[CodeFile]:
    """Files under `paths` as they are on disk (tracked and untracked, not ignored)."""
    paths = sorted(set(paths))
    if not paths:
        return []
    out = git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths)
    files = []
    for name in sorted({n.decode() for n in out.split(b"\0") if n}):
        full = repo / name
        try:
            info = full.lstat()
        except FileNotFoundError:
            continue  # deleted in the working tree
        if stat.S_ISLNK(info.st_mode):
            files.append(CodeFile(name, SYMLINK_MODE, git_blob_sha1(os.readlink(full).encode())))
        else:
            mode = "100755" if info.st_mode & stat.S_IXUSR else "100644"
            files.append(CodeFile(name, mode, git_blob_sha1(full.read_bytes())))
    return files


def files_under(files: list[CodeFile], paths: Iterable[str]) -> list[CodeFile]:
    """The subset of `files` inside any of `paths` (a path names a file or a directory)."""
    prefixes = [p.rstrip("/") for p in paths]
    return [f for f in files if any(f.path == p or f.path.startswith(p + "/") for p in prefixes)]


def code_digest(files: list[CodeFile]) -> str:
    return digest_json({"format": 1, "files": sorted([f.path, f.mode, f.blob] for f in files)})


def escaping_symlinks(repo: Path, files: list[CodeFile], dirty: bool) -> list[str]:
    """Symlinks among `files` whose target leaves the repository."""
    bad = []
    links = [f for f in files if f.mode == SYMLINK_MODE]
    targets = _read_blobs(repo, [f.blob for f in links]) if links and not dirty else {}
    for link in links:
        target = os.readlink(repo / link.path) if dirty else targets[link.blob].decode()
        joined = os.path.normpath(PurePosixPath(link.path).parent / target)
        if target.startswith("/") or joined == ".." or joined.startswith("../"):
            bad.append(f"{link.path} -> {target}")
    return bad


def export_files(repo: Path, files: list[CodeFile], dest: Path, *, from_working_tree: bool) -> None:
    """Write `files` under `dest`, from the commit's blobs or from the working tree."""
    blobs = {} if from_working_tree else _read_blobs(repo, sorted({f.blob for f in files}))
    for f in files:
        target = dest / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.mode == SYMLINK_MODE:
            link = os.readlink(repo / f.path) if from_working_tree else blobs[f.blob].decode()
            os.symlink(link, target)
            continue
        data = (repo / f.path).read_bytes() if from_working_tree else blobs[f.blob]
        target.write_bytes(data)
        os.chmod(target, 0o755 if f.mode == "100755" else 0o644)


def _read_blobs(repo: Path, blobs: list[str]) -> dict[str, bytes]:
    """Blob contents through one `git cat-file --batch`."""
    out = git(repo, "cat-file", "--batch", input="".join(b + "\n" for b in blobs).encode())
    contents: dict[str, bytes] = {}
    pos = 0
    for _ in blobs:
        header_end = out.index(b"\n", pos)
        sha, _kind, size = out[pos:header_end].decode().split()
        start = header_end + 1
        contents[sha] = out[start : start + int(size)]
        pos = start + int(size) + 1
    return contents


def commit_author(repo: Path) -> str:
    """The name git would record as author (GIT_AUTHOR_NAME, else user.name), or ''."""
    try:
        ident = git(repo, "var", "GIT_AUTHOR_IDENT").decode()
    except GitError:
        return ""
    return ident.partition("<")[0].strip()
