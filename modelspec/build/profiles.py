"""The data profile of each tabular input of a version (a CSV or Parquet file), taken once
per data digest and kept as a small object in the store: `modelspec drift` compares
versions by their profiles alone, so it works after their data was garbage-collected."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..digest import canonical_json, hex_of
from ..drift.profile import is_tabular, profile_file
from ..spec.lockdata import PathData
from ..store.owner import temp_prefix
from ..store.statcache import StatCache
from ..store.workspace import Workspace
from .graph import ResolvedSpec


def data_profiles(workspace: Workspace, item: ResolvedSpec, statcache: StatCache) -> dict[str, str]:
    """Input name → the digest of its profile, for each tabular file input of the spec."""
    found = {}
    for name, data in sorted(item.lock.data.items()):
        if isinstance(data, PathData) and data.entry.get("type") == "file" and is_tabular(data.path):
            found[name] = profile_digest(workspace, item.spec.repo_root, data, statcache)
    return found


def profile_digest(workspace: Workspace, repo_root: Path, data: PathData, statcache: StatCache) -> str:
    """The profile of the locked bytes, from the index of profiles by data digest when it
    was taken before (`.modelspec/profiles/`)."""
    store = workspace.store
    index = workspace.home / "profiles" / hex_of(data.digest)
    try:
        known = index.read_text().strip()
        if store.has(known):
            return known
    except (FileNotFoundError, ValueError):
        pass
    path, temporary = _locked_bytes(workspace, repo_root, data, statcache)
    try:
        profile = profile_file(path, data.path)
    finally:
        if temporary:
            path.unlink(missing_ok=True)
    digest = store.put_bytes(canonical_json(profile))
    store.write_file(index, digest.encode())
    return digest


def _locked_bytes(workspace: Workspace, repo_root: Path, data: PathData, statcache: StatCache) -> tuple[Path, bool]:
    """A path holding exactly the locked bytes: the working file while it still has them
    (its digest known to the stat cache, so nothing is read twice), else a temporary copy
    of the snapshot (True)."""
    path = repo_root / data.path
    try:
        if statcache.digest(path) == data.digest:
            return path, False
    except OSError:
        pass
    store = workspace.store
    handle, temp = tempfile.mkstemp(prefix=f"{temp_prefix(store.tmp)}profile-", dir=store.tmp)
    with os.fdopen(handle, "wb") as out, store.open(data.digest) as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            out.write(chunk)
    return Path(temp), True
