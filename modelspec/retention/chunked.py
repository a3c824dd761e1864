"""gc's part in the chunk layer: which objects stay hot (a whole copy beside their chunks),
cooling the rest, and pruning packs.

Hot: the objects of versions an alias points at or a pin holds, and of each spec's last
build, so checkout, `deploy-config` paths and hardlinks stay instant for them (one cooled
before it was promoted or pinned is made whole again). Every other
kept object of 4 MiB or more is cooled (its whole copy removed, its chunks kept) once it
is older than the grace period; reading it reassembles it. Then packs whose chunks no recipe
needs are removed, and packs mostly dead are rewritten (as restic's `prune`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..build.needed import needed_objects
from ..registry.facts import VersionFacts
from ..registry.registry import ModelVersion
from ..store.objects import LocalStore


@dataclass(frozen=True)
class ChunkGc:
    warmed: int = 0  # hot objects that were cold (promoted, pinned since) given a whole copy again
    cooled: int = 0  # objects whose whole copy was (or, in a dry run, would be) removed
    cooled_bytes: int = 0
    packs_removed: int = 0
    packs_written: int = 0
    pack_bytes: int = 0  # freed by pruning packs

    def to_dict(self) -> dict[str, int]:
        return {
            "warmed": self.warmed,
            "cooled": self.cooled,
            "cooled_bytes": self.cooled_bytes,
            "packs_removed": self.packs_removed,
            "packs_written": self.packs_written,
            "pack_bytes": self.pack_bytes,
        }


def hot_objects(
    store: LocalStore, kept: Iterable[ModelVersion], facts: dict[str, list[VersionFacts]], records: list[dict[str, Any]]
) -> set[str]:
    """The objects that keep a whole copy: aliased and pinned versions', and last builds'."""
    hot_ids = {f.id for versions in facts.values() for f in versions if f.aliases or f.pinned}
    return set(needed_objects(store, [v for v in kept if v.id in hot_ids], records))


def cool_and_prune(
    store: LocalStore, live: set[str], hot: set[str], cutoff: float, *, dry_run: bool, swept: set[str]
) -> ChunkGc:
    """Cool the live objects that are not hot and older than `cutoff`; prune the packs (a dry
    run: what pruning would free once the `swept` objects are gone)."""
    policy = store.chunking
    if policy is None:
        return ChunkGc()
    warmed = 0
    for digest in sorted(hot):
        if not store.is_whole(digest) and store.chunks.has(digest):
            warmed += 1
            if not dry_run:
                store.checked_path(digest)  # reassembled, checked, whole again
    cooled = cooled_bytes = 0
    for digest in sorted(live - hot):
        if not store.is_whole(digest):
            continue
        info = store.stat(digest)
        if info is None or info.size < policy.threshold or info.stored_at > cutoff:
            continue
        try:
            if dry_run or store.cool(digest):
                cooled += 1
                cooled_bytes += info.size
        except OSError:  # no room for its chunks (a full disk): cooling waits for a later gc
            break
    try:
        pruned = store.chunks.prune(dry_run=dry_run, gone=swept)
    except OSError:  # no room to rewrite packs: remove only the dead ones, which writes nothing
        pruned = store.chunks.prune(0.0, dry_run=dry_run, gone=swept)
    return ChunkGc(warmed, cooled, cooled_bytes, pruned.removed, pruned.written, pruned.freed)
