"""The values of the chunk layer: how files are chunked (`ChunkPolicy`), a file's recipe
(its size and chunk list) and its bytes on disk, and what pruning did.

    recipe:  MSRCP001  <u64 file size>  <u32 count>  then per chunk: <32-byte blake3> <u32 length>
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..digest import hex_of
from .cutting import AVERAGE

_RECIPE = struct.Struct("<8sQI")
_ROW = struct.Struct("<32sI")
_MAGIC = b"MSRCP001"


@dataclass(frozen=True)
class ChunkPolicy:
    """How large files are chunked. `keep_whole`: whether a newly stored file also keeps its
    whole copy (hot) until gc cools it; False stores large files as chunks only."""

    threshold: int = 4 << 20
    average: int = AVERAGE
    pack_limit: int = 64 << 20
    min_saving: float = 1 / 16
    level: int = 1
    keep_whole: bool = True
    min_live: float = 0.5  # a pack whose live fraction falls below this is rewritten by gc


DEFAULT_CHUNKING = ChunkPolicy()


def recipe_file(root: str, digest: str) -> str:
    """Where the recipe of object `digest` lies in the store at `root`: a path the object
    store can look at without loading the chunk layer (zstd, the pack indexes)."""
    hexpart = hex_of(digest)
    return f"{root}/recipes/{hexpart[:2]}/{hexpart}"


@dataclass(frozen=True)
class Recipe:
    """A file as its chunks, in order."""

    size: int
    chunks: list[tuple[bytes, int]] = field(default_factory=list)  # (blake3 of the raw chunk, raw length)


@dataclass(frozen=True)
class PruneReport:
    """What pruning packs did."""

    removed: int = 0  # packs removed
    written: int = 0  # packs written by repacking
    freed: int = 0  # bytes


def recipe_bytes(size: int, chunks: list[tuple[bytes, int]]) -> bytes:
    return _RECIPE.pack(_MAGIC, size, len(chunks)) + b"".join(_ROW.pack(d, n) for d, n in chunks)


def parse_recipe(data: bytes) -> Recipe | None:
    """The recipe, or None when the bytes are not a whole one."""
    if len(data) < _RECIPE.size:
        return None
    magic, size, count = _RECIPE.unpack_from(data)
    if magic != _MAGIC or len(data) != _RECIPE.size + count * _ROW.size:
        return None
    return Recipe(size, list(_ROW.iter_unpack(data[_RECIPE.size :])))


def recipe_size(head: bytes) -> int:
    """The file size a recipe's first bytes give (0 if they are not a recipe's)."""
    if len(head) < _RECIPE.size or head[:8] != _MAGIC:
        return 0
    return int(_RECIPE.unpack_from(head)[1])
