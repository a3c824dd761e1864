"""What a stage reads, put in the store: code snapshots of the resolved commit and data
snapshots of the workspace. Both are needed to run a stage and, later, to reproduce it."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Container, Mapping
from pathlib import Path

from ..digest import hex_of
from ..errors import StoreError
from ..resolve import gitcode
from ..store.files import remove_path
from ..store.objects import Entry, LocalStore
from ..store.owner import temp_prefix
from ..store.protocol import ObjectStore
from ..store.statcache import StatCache
from ..store.workspace import Workspace
from .graph import DataInput, ResolvedSpec


def complete(store: ObjectStore, entry: Entry, elsewhere: Container[str] = ()) -> bool:
    """Is every object of the entry (a file, or a tree and all it holds) in the store, or
    `elsewhere` (held on the remote, to be fetched when needed: a tree's document is always
    here, so that what it holds can be listed)?"""
    if not store.has(entry.digest):
        return entry.type == "file" and entry.digest in elsewhere
    if entry.type == "file":
        return True
    try:
        return all(store.has(d) or d in elsewhere for d in store.tree_objects(entry))
    except StoreError:
        return False


def code_snapshot(resolved: ResolvedSpec, code: Mapping[str, object], workspace: Workspace, store: LocalStore) -> Entry:
    """The stage's code as a tree in the store, exported from git once per code digest.
    (A `LocalStore`: the export is made in its temp directory, to be moved in, not copied.)"""
    index = workspace.snapshots_dir / hex_of(str(code["digest"]))
    try:
        entry = Entry.from_dict(json.loads(index.read_bytes()))
        if complete(store, entry):
            return entry
    except (FileNotFoundError, ValueError, KeyError):
        pass
    paths = [str(p) for p in code["paths"]]  # type: ignore[attr-defined]
    files = gitcode.files_under(resolved.code_files, paths)
    export = Path(tempfile.mkdtemp(dir=store.tmp, prefix=f"{temp_prefix(store.tmp)}code-"))
    try:
        dirty = bool(resolved.lock.code.get("dirty"))
        gitcode.export_files(resolved.spec.repo_root, files, export, from_working_tree=dirty)
        entry = store.put_path(export, move=True)
    finally:
        remove_path(export)
    store.write_file(index, json.dumps(entry.to_dict()).encode())
    return entry


def data_snapshot(source: DataInput, repo_root: Path, store: ObjectStore, statcache: StatCache) -> Entry:
    """The locked data in the store: copied in (never linked), checked to be what was locked."""
    entry = Entry.from_dict(source.entry)
    if complete(store, entry):
        return entry
    if source.path is None:
        raise StoreError(f"the artifact of {source.entry['registered']} is no longer in the store (retired?)")
    stored = store.put_path(repo_root / source.path, known=statcache.digest)
    if stored.digest != entry.digest:
        raise StoreError(f"{source.path} changed during the build; build again")
    return entry
