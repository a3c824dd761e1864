"""`du`: bytes per model and version, logical (what the files hold) and stored (what the store
spends on them: whole copies, and the packed chunks of large files, each counted once).

A version's `unique` and `shared` bytes are logical, as before the chunk layer; `stored` is what
its objects take (a chunk shared with another version counted in both) and `added` what it
added to the versions of its model before it (their chunks and whole copies not counted again).
A model's `dedup` is its logical bytes over its stored bytes; the store's, all objects' logical
bytes over everything on disk.
"""

from __future__ import annotations

from typing import Any

from ..build.needed import expand, version_entries
from ..registry.registry import Registry
from ..store.objects import LocalStore
from ..store.workspace import Workspace


def disk_usage(workspace: Workspace, registry: Registry) -> dict[str, Any]:
    """Bytes per model and version (logical unique and shared, stored, added), and the store's."""
    store = workspace.store
    versions = sorted(registry.versions_by_status("active"), key=lambda v: v.id)
    owners: dict[str, set[int]] = {}
    objects_of: dict[int, set[str]] = {}
    for version in versions:
        objects_of[version.id] = set(expand(store, (e for _w, e in version_entries(version))))
        for digest in objects_of[version.id]:
            owners.setdefault(digest, set()).add(version.id)
    sizes = {d: _size(store, d) for d in owners}
    # What each object takes: its whole copy (keyed by its digest) and its chunks (by theirs).
    stored_size: dict[str | bytes, int] = {}
    stored_size.update(store.chunks.stored_sizes().items())
    parts = {d: _parts(store, d, stored_size) for d in owners}
    models: dict[str, dict[str, Any]] = {}
    seen: dict[str, set[str | bytes]] = {}  # per model: the whole copies and chunks counted so far
    for version in versions:
        model = models.setdefault(version.name, {"bytes": 0, "stored": 0, "versions": {}})
        mine = {part for digest in objects_of[version.id] for part in parts[digest]}
        earlier = seen.setdefault(version.name, set())
        stored = sum(stored_size.get(part, 0) for part in mine)
        added = sum(stored_size.get(part, 0) for part in mine - earlier)
        earlier |= mine
        model["stored"] += added
        model["versions"][version.version] = {"unique": 0, "shared": 0, "stored": stored, "added": added}
    name_of = {v.id: v.name for v in versions}
    number_of = {v.id: v.version for v in versions}
    for digest, who in owners.items():
        for version_id in who:
            usage = models[name_of[version_id]]["versions"][number_of[version_id]]
            usage["unique" if len(who) == 1 else "shared"] += sizes[digest]
        for name in {name_of[i] for i in who}:
            models[name]["bytes"] += sizes[digest]
    for model in models.values():
        model["dedup"] = round(model["bytes"] / model["stored"], 2) if model["stored"] else None
    logical = sum(_size(store, d) for d in store.iter())
    on_disk = _on_disk(store)
    return {
        "store_bytes": on_disk,
        "logical_bytes": logical,
        "dedup": round(logical / on_disk, 2) if on_disk else None,
        "models": models,
    }


def _parts(store: LocalStore, digest: str, stored_size: dict[str | bytes, int]) -> set[str | bytes]:
    """What an object takes in the store: its whole copy (noting its size), and its chunks."""
    found: set[str | bytes] = set()
    if store.is_whole(digest):
        found.add(digest)
        stored_size[digest] = _size(store, digest)
    recipe = store.chunks.recipe(digest) if store.chunks.has(digest) else None
    if recipe is not None:
        found |= {chunk for chunk, _n in recipe.chunks}
    return found


def _size(store: LocalStore, digest: str) -> int:
    info = store.stat(digest)
    return 0 if info is None else info.size


def _on_disk(store: LocalStore) -> int:
    """Whole copies, packs and recipes: the bytes the store's objects take on disk."""
    total = 0
    for folder in (store.objects, store.chunks.packs, store.chunks.recipes):
        if folder.is_dir():
            total += sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    return total
