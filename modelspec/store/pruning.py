"""Pruning the chunk layer's packs, as restic `prune` does: a pack no kept recipe needs a chunk
of is removed, and one whose live fraction (of its stored bytes) is below `min_live` is
rewritten with only its live chunks. `plan_prune` decides from the packs' indexes alone (pure,
tested on values); `read_packs`, `apply_prune` and `drop_markers` do the I/O, and
`ChunkStore.prune` runs them under the store's exclusive lock.

Crash safety: the live chunks of the packs that go are written to new packs, sealed durable,
before any old pack is removed; a prune killed at any instant leaves every chunk a recipe
names in a whole pack (some perhaps in two).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptObjectError
from .packs import Located, PackWriter, read_index
from .recipes import Recipe


@dataclass(frozen=True, slots=True)
class PackRows:
    """One pack as its index describes it: its chunks, and its size on disk."""

    name: str
    size: int
    rows: tuple[tuple[bytes, Located], ...]


@dataclass(frozen=True)
class PrunePlan:
    """Which packs go (dead, or rewritten), which live chunks are copied out of them first
    (each once, and none a pack that stays already holds), and the bytes that frees."""

    old: tuple[str, ...] = ()
    copies: tuple[tuple[bytes, Located], ...] = ()
    freed: int = 0


def plan_prune(packs: Iterable[PackRows], live: Set[bytes], bad: Set[tuple[str, str]], min_live: float) -> PrunePlan:
    """The packs, in name order: one whose live chunks (named by a kept recipe, and not
    quarantined there: `bad` holds (chunk hex, pack) pairs) make at least `min_live` of its
    size stays; any other goes, its live chunks copied unless a pack before it in that order
    (kept, or copied from) holds them already."""
    old: list[str] = []
    copies: list[tuple[bytes, Located]] = []
    placed: set[bytes] = set()
    freed = 0
    for pack in sorted(packs, key=lambda p: p.name):
        keep = [(d, w) for d, w in pack.rows if d in live and (d.hex(), pack.name) not in bad]
        live_bytes = sum(w.stored for _d, w in keep)
        if keep and live_bytes >= min_live * pack.size:
            placed |= {d for d, _w in keep}
            continue
        old.append(pack.name)
        freed += pack.size - live_bytes
        for chunk, where in keep:
            if chunk not in placed:
                placed.add(chunk)
                copies.append((chunk, where))
    return PrunePlan(tuple(old), tuple(copies), freed)


def live_chunks(digests: Iterable[str], recipe: Callable[[str], Recipe | None]) -> set[bytes]:
    """The chunks the recipes of `digests` name (a damaged recipe, quarantined as it is read,
    names none)."""
    live: set[bytes] = set()
    for digest in digests:
        try:
            found = recipe(digest)
        except CorruptObjectError:
            continue
        if found is not None:
            live.update(chunk for chunk, _n in found.chunks)
    return live


def read_packs(folder: Path, names: Iterable[str]) -> list[PackRows]:
    """The packs' indexes and sizes; a pack gone meanwhile, or whose index is damaged, is left
    out (neither removed nor counted)."""
    found = []
    for name in names:
        path = folder / f"{name}.pack"
        try:
            rows = tuple(read_index(path))
            size = path.stat().st_size
        except (FileNotFoundError, ValueError):
            continue
        found.append(PackRows(name, size, rows))
    return found


def apply_prune(plan: PrunePlan, folder: Path, writer: PackWriter) -> int:
    """Copy the plan's live chunks into new packs, sealed durable, then remove the old packs;
    how many packs were written."""
    handles: dict[str, int] = {}
    try:
        for chunk, where in plan.copies:
            fd = handles.get(where.pack)
            if fd is None:
                fd = handles[where.pack] = os.open(folder / f"{where.pack}.pack", os.O_RDONLY)
            writer.add(chunk, os.pread(fd, where.stored, where.offset), where.raw, where.codec)
    finally:
        for fd in handles.values():
            os.close(fd)
    try:
        writer.seal()
    except BaseException:
        writer.abandon()
        raise
    for name in plan.old:  # only now: their live chunks are in a durable pack
        if name not in writer.sealed:  # else rewritten as the very same pack (same index, same name)
            (folder / f"{name}.pack").unlink(missing_ok=True)
    return len(writer.sealed)


def drop_markers(quarantine: Path, folder: Path, packs: set[str] | None = None) -> None:
    """Forget the damage (markers in `quarantine`) of `packs` (written anew), or of packs no
    longer in `folder`."""
    if not quarantine.is_dir():
        return
    for marker in os.listdir(quarantine):
        pack = marker.partition("-")[2]
        if (pack in packs) if packs is not None else not (folder / f"{pack}.pack").exists():
            (quarantine / marker).unlink(missing_ok=True)
