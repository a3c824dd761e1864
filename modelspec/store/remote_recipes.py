"""A remote's recipes: the chunk lists of the large objects pushed as chunks
(store/remote_chunks.py moves the chunks).

    <remote>/recipes/<hex>             a file's size and chunk list (store/recipes.py) and its blake3
    <remote>/quarantine/recipes/<hex>  a recipe found damaged, or naming a chunk that is gone

A recipe carries its own blake3, so a damaged one is refused, never believed. A process keeps
the recipes it has read, and a workspace keeps them beside its pack indices, each under the
blob it came from: a recipe quarantined and pushed again (by a modelspec that cuts
otherwise, its chunks perhaps others) is read again, never believed as it was.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from pathlib import Path

import blake3

from ..digest import PREFIX, hex_of
from ..errors import CorruptObjectError, StoreError
from .blobs import HEAD_AT_MOST, BlobInfo, Blobs, set_aside
from .files import write_atomic
from .progress import run_all
from .recipes import Recipe, parse_recipe, recipe_bytes

RECIPES = "recipes/"
QUARANTINED_RECIPES = "quarantine/recipes/"


def chunk_digest(chunk: bytes) -> str:
    """A chunk's digest as an object on the remote, from its name (the blake3 of its raw bytes)."""
    return PREFIX + chunk.hex()


def chunk_of(digest: str) -> bytes:
    """A chunk's name (its raw blake3) from its digest: `chunk_digest` undone."""
    return bytes.fromhex(hex_of(digest))


def recipe_name(digest: str) -> str:
    return f"{RECIPES}{hex_of(digest)}"


def encode(recipe: Recipe) -> bytes:
    body = recipe_bytes(recipe.size, recipe.chunks)
    return body + blake3.blake3(body).digest()  # a damaged recipe is refused, never believed


def decode(data: bytes, digest: str = "") -> Recipe | None:
    """The recipe, None when damaged; a whole one of a format this modelspec does not know (a
    newer one wrote it) is an error, never taken for damage, which would take it out of service."""
    if len(data) < 32 or blake3.blake3(data[:-32]).digest() != data[-32:]:
        return None
    recipe = parse_recipe(data[:-32])
    if recipe is None and data[:6] == _FORMAT[:6] and data[:8] != _FORMAT:
        raise StoreError(
            f"the recipe of object {digest or '?'} on the remote is of format "
            f"{data[:8].decode(errors='replace')}, newer than this modelspec's",
            hint="upgrade modelspec (pip install -U modelspec)",
        )
    return recipe


_FORMAT = recipe_bytes(0, [])[:8]  # this modelspec's recipe format: MSRCP and its number


class RecipeCatalog:
    """The remote's recipes: which objects have one, and their chunk lists. A recipe read is
    kept (in this process, and on disk beside the pack indices) under its object's digest and
    the blob it was read from (`stamp`: its size and tag): one quarantined and pushed again,
    perhaps cut otherwise, is another blob, read afresh, never the old one believed."""

    def __init__(self, blobs: Blobs, cache: Path | None = None) -> None:
        self.blobs = blobs
        self.cache = cache / "recipes" if cache is not None else None
        self._read: dict[str, tuple[str, Recipe]] = {}  # digest → (stamp, recipe)
        self._there: dict[str, str] = {}  # digest → the stamp of its recipe, as last listed or looked up
        self._lock = threading.Lock()

    def listed(self) -> dict[str, float]:
        """Every recipe on the remote: object digest → when it was created. Those kept here
        that are no longer there (deleted by a remote gc, or replaced) are forgotten."""
        infos = {PREFIX + info.name.rsplit("/", 1)[-1]: info for info in self.blobs.scan(RECIPES)}
        there = {d: stamp(info) for d, info in infos.items()}
        with self._lock:
            self._there = dict(there)
            self._read = {d: kept for d, kept in self._read.items() if there.get(d) == kept[0]}
        if self.cache is not None and self.cache.is_dir():
            wanted = {f"{hex_of(d)}.{s}" for d, s in there.items()}
            for path in self.cache.iterdir():
                if not path.name.startswith(".") and path.name not in wanted:  # not a writer's temp
                    path.unlink(missing_ok=True)
        return {d: info.modified for d, info in infos.items()}

    def head(self, digest: str) -> BlobInfo | None:
        """The object's recipe blob, looked up now (None: the object has no recipe)."""
        info = self.blobs.head(recipe_name(digest))
        with self._lock:
            if info is None:
                self._there.pop(digest, None)
            else:
                self._there[digest] = stamp(info)
        return info

    def present(self, digests: set[str], jobs: int = 8) -> set[str]:
        """Which of the objects have a recipe: a HEAD each for a few, else one listing."""
        if not digests:
            return set()
        if len(digests) <= HEAD_AT_MOST:
            from concurrent.futures import ThreadPoolExecutor

            ordered = sorted(digests)
            with ThreadPoolExecutor(max(1, min(jobs, len(ordered)))) as pool:
                there = list(pool.map(lambda d: self.head(d) is not None, ordered))
            return {d for d, yes in zip(ordered, there, strict=True) if yes}
        return digests & set(self.listed())

    def get(self, digest: str) -> Recipe | None:
        """The object's recipe (verified), None if it has none. A damaged one is quarantined
        and raises: the object is no longer on the remote, and a push sends it again. Which
        blob is its recipe is known from the last listing or lookup, else looked up now."""
        with self._lock:
            there = self._there.get(digest)
        if there is None:
            info = self.head(digest)
            if info is None:
                return None
            there = stamp(info)
        with self._lock:
            known = self._read.get(digest)
        if known is not None and known[0] == there:
            return known[1]
        cached = self.cache / f"{hex_of(digest)}.{there}" if self.cache is not None else None
        if cached is not None:
            with contextlib.suppress(OSError):
                recipe = decode(cached.read_bytes(), digest)
                if recipe is not None:
                    return self._keep(digest, there, recipe)
        data = None
        for _attempt in range(2):  # bytes damaged on the way are fetched once more
            data = self.blobs.get(recipe_name(digest))
            if data is None:
                return None
            recipe = decode(data, digest)
            if recipe is not None:
                # Kept under the stamp known before the read: if the blob was replaced since,
                # the next listing's stamp differs, and it is read again (never the reverse).
                if cached is not None:
                    with contextlib.suppress(OSError):  # a cache that cannot be written costs a download
                        cached.parent.mkdir(parents=True, exist_ok=True)
                        write_atomic(cached, data, durable=False)
                return self._keep(digest, there, recipe)
        self.quarantine(digest)
        raise CorruptObjectError(
            f"the recipe of object {digest} on the remote {self.blobs.url} is damaged; it was moved to "
            f"{QUARANTINED_RECIPES}",
            hint="push it again from a workspace that has it (`modelspec push`)",
        )

    def get_all(self, digests: Iterable[str], jobs: int = 8, *, damaged: bool = False) -> dict[str, Recipe]:
        """The recipes of the objects that have one, read `jobs` at a time. A damaged one is
        quarantined and raises, or with `damaged` is left out (its object is no longer on the
        remote)."""
        found: dict[str, Recipe] = {}
        lock = threading.Lock()

        def read(digest: str) -> None:
            try:
                recipe = self.get(digest)
            except CorruptObjectError:
                if not damaged:
                    raise
                return
            if recipe is not None:
                with lock:
                    found[digest] = recipe

        run_all(read, sorted(set(digests)), jobs)
        return found

    def _keep(self, digest: str, there: str, recipe: Recipe) -> Recipe:
        with self._lock:
            self._read[digest] = (there, recipe)
        return recipe

    def quarantine(self, digest: str) -> None:
        """Take a recipe out of service (damaged, or naming a chunk that is gone), keeping its
        bytes: the object no longer counts as on the remote, so the next push sends it again."""
        set_aside(self.blobs, recipe_name(digest), QUARANTINED_RECIPES + hex_of(digest))
        with self._lock:
            self._read.pop(digest, None)
            self._there.pop(digest, None)
        if self.cache is not None and self.cache.is_dir():
            for path in self.cache.glob(f"{hex_of(digest)}.*"):
                path.unlink(missing_ok=True)


def stamp(info: BlobInfo) -> str:
    """Which blob a recipe's name holds: a recipe pushed again is another (its tag; its size
    and time where a remote gives no tag)."""
    which = f"{info.size}:{info.tag}" if info.tag else f"{info.size}:{info.modified!r}"
    return blake3.blake3(which.encode()).hexdigest()[:16]
