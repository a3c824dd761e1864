"""The chunk layer under the object store: large files as content-defined chunks in packs.

    <root>/packs/<hex>.pack          immutable packs of chunks (packs.py)
    <root>/recipes/ab/<hex>          a file's recipe: its size and chunk list, by file digest
    <root>/quarantine/chunks/<c>-<p> a chunk found corrupt in pack p: never served again
    <root>/packs.lock                shared while a file is chunked, exclusive while packs are pruned

A file's whole blake3 stays its identity: a recipe is another form of the same object, and
reassembly checks the whole file against it. Chunks are named by the blake3 of their raw
bytes and stored once, however many files share them.

Crash safety: a file's packs are durable before its recipe is written (atomically), so a
recipe never names a chunk that is not in a whole pack; pruning writes a pack's live chunks
to a new durable pack before removing the old one. A writer holds the lock shared from
looking a chunk up until its recipe is durable, and pruning holds it exclusive, so a chunk a
new recipe reuses is never pruned in between.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Set
from pathlib import Path
from typing import IO, Any, NoReturn

import blake3

from ..digest import PREFIX, hex_of
from ..errors import CorruptObjectError, StoreError
from . import forked
from .chunkmap import ChunkMap
from .cutting import segments
from .files import write_atomic
from .packs import RAW, Located, PackWriter, decode, decode_runs
from .pipeline import Coding, collector_paused, decoded, pack_file, reassemble
from .protocol import ObjectInfo
from .pruning import apply_prune, drop_markers, live_chunks, plan_prune, read_packs
from .recipes import (
    DEFAULT_CHUNKING,
    ChunkPolicy,
    PruneReport,
    Recipe,
    parse_recipe,
    recipe_bytes,
    recipe_file,
    recipe_size,
)

__all__ = ["DEFAULT_CHUNKING", "ChunkPolicy", "ChunkStore", "PruneReport", "Recipe"]


class ChunkStore:
    def __init__(self, root: Path, temp_file: Callable[[], tuple[int, Path]], policy: ChunkPolicy) -> None:
        self.root = root
        self.packs = root / "packs"
        self.recipes = root / "recipes"
        self.quarantine_dir = root / "quarantine" / "chunks"
        self.policy = policy
        self._temp_file = temp_file
        self._tmp = root / "tmp"
        self.map = ChunkMap(self.packs, self.quarantine_dir)
        self._lock = threading.Lock()  # one descriptor per pack, whichever thread opens it

    # -- recipes -------------------------------------------------------------------------

    def recipe_path(self, digest: str) -> Path:
        return Path(recipe_file(os.fspath(self.root), digest))

    def has(self, digest: str) -> bool:
        return self.recipe_path(digest).exists()

    def iter(self) -> Iterator[str]:
        if not self.recipes.is_dir():
            return
        for fan in sorted(os.listdir(self.recipes)):
            for name in sorted(os.listdir(self.recipes / fan)):
                yield PREFIX + name

    def stat(self, digest: str) -> ObjectInfo | None:
        """The file's size (from its recipe's head) and when the recipe was written."""
        try:
            with open(self.recipe_path(digest), "rb") as f:
                head = f.read(64)
                when = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return ObjectInfo(recipe_size(head), when)  # 0 if damaged: reading it quarantines it

    def recipe(self, digest: str) -> Recipe | None:
        try:
            data = self.recipe_path(digest).read_bytes()
        except FileNotFoundError:
            return None
        recipe = parse_recipe(data)
        if recipe is None:
            self.quarantine_recipe(digest)
            raise CorruptObjectError(f"the chunk list of {digest} is damaged and was quarantined")
        return recipe

    def _write_recipe(self, digest: str, size: int, chunks: list[tuple[bytes, int]]) -> None:
        path = self.recipe_path(digest)
        write_atomic(path, recipe_bytes(size, chunks), self._tmp)
        os.chmod(path, 0o444)

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.recipe_path(digest).unlink()

    def quarantine_recipe(self, digest: str) -> None:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.recipe_path(digest), self.quarantine_dir.parent / f"{hex_of(digest)}.recipe")

    # -- the chunk map ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the indexes of packs written since (chunkmap.py)."""
        self.map.refresh()

    def footprint(self, digest: str) -> dict[bytes, int]:
        """The stored length of each chunk of a file (none if it has no recipe)."""
        recipe = self.recipe(digest) if self.has(digest) else None
        if recipe is None:
            return {}
        self.refresh()
        located = self.map.located
        return {chunk: where.stored for chunk, _n in recipe.chunks if (where := located.get(chunk)) is not None}

    def stored_sizes(self) -> dict[bytes, int]:
        """Each chunk's stored length (as one of its packs holds it)."""
        self.refresh()
        return self.map.stored_sizes()

    # -- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, exclusive: bool) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "packs.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

    def add(self, path: Path, digest: str | None = None, name: str = "") -> str:
        """Chunk the file at `path`: new chunks into packs, then its recipe; its digest. With
        `digest` (what the caller has just hashed these bytes to) the file is not hashed
        again; without, it is hashed first (on every core), and a file whose size or mtime
        changed by the end is refused, as the stat cache trusts them. `name` is what the file is
        called, for its format's segments."""
        writer = PackWriter(self.packs, self._temp_file, self.policy.pack_limit)
        with collector_paused(), self._guard(exclusive=False), open(path, "rb") as f:
            before = os.fstat(f.fileno())
            size = before.st_size
            self.refresh()
            with self._sealing(writer):
                chunks, hashed = self._pack_new(f, size, name, writer, hash_first=digest is None)
            after = os.stat(path)
            if (after.st_size, after.st_mtime_ns, after.st_ino) != (size, before.st_mtime_ns, before.st_ino):
                raise StoreError(f"{path} changed while it was being chunked; store it again")
            digest = digest or hashed
            self._write_recipe(digest, size, chunks)
        return digest

    def _pack_new(
        self, f: IO[bytes], size: int, name: str, writer: PackWriter, *, hash_first: bool
    ) -> tuple[list[tuple[bytes, int]], str]:
        """Cut the file; the chunks no pack holds yet go into `writer` (pipeline.py); its chunk
        list, and with `hash_first` its digest (hashed meanwhile)."""
        if not size:
            return [], PREFIX + blake3.blake3().hexdigest()
        coding, known = Coding(self.policy.level, self.policy.min_saving), self.map.located
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as view:
            data = memoryview(view)
            parts = segments(data, name)
            try:
                if forked.wanted(size):
                    chunks, whole = forked.pack_file(
                        f.fileno(), data, parts, self.policy.average, known, coding, writer, hash_whole=hash_first
                    )
                else:
                    chunks, whole = pack_file(
                        data, parts, self.policy.average, known, coding, writer, hash_whole=hash_first
                    )
            finally:
                data.release()
        return chunks, PREFIX + whole.hex() if hash_first else ""

    # -- chunks by name (transfers with a remote) ---------------------------------------

    def lacking(self, chunks: Iterable[bytes]) -> set[bytes]:
        """Which of the chunks no pack here holds."""
        self.refresh()
        return self.map.lacking(chunks)

    def read_chunks(self, chunks: list[tuple[bytes, int]]) -> Iterator[bytes]:
        """Each chunk's raw bytes, in order, checked against its name: a corrupt one is
        quarantined and raises (never sent to a remote)."""
        import zstandard

        self.refresh()
        decompressor = zstandard.ZstdDecompressor()
        handles: dict[str, int] = {}
        try:
            for chunk, length in chunks:
                raw = bytes(self._read(chunk, length, decompressor, handles))
                if blake3.blake3(raw).digest() != chunk:
                    self.quarantine_chunk(chunk)
                    raise CorruptObjectError(f"chunk {chunk.hex()} in the local store is corrupt and was quarantined")
                yield raw
        finally:
            for fd in handles.values():
                os.close(fd)

    @contextlib.contextmanager
    def receiving(self) -> Iterator[ChunkIntake]:
        """Chunks that arrive by name (a pull), stored raw in new packs; the recipes given to
        the intake are written once those packs are durable, and only those whose every chunk
        is here: a recipe never names an absent chunk, whenever the process is killed."""
        writer = PackWriter(self.packs, self._temp_file, self.policy.pack_limit)
        with collector_paused(), self._guard(exclusive=False):
            self.refresh()
            intake = ChunkIntake(writer)
            with self._sealing(writer):
                yield intake
            lacking = self.map.lacking(c for _d, r in intake.recipes for c, _n in r.chunks)
            whole = [(d, r) for d, r in intake.recipes if not any(c in lacking for c, _n in r.chunks)]
            for digest, recipe in whole:
                self._write_recipe(digest, recipe.size, recipe.chunks)
            if len(whole) < len(intake.recipes):  # a caller's bug: never a recipe without its chunks
                short = sorted({d for d, _r in intake.recipes} - {d for d, _r in whole})
                raise StoreError(f"{', '.join(short)} arrived without all their chunks", hint="fetch again")

    @contextlib.contextmanager
    def _sealing(self, writer: PackWriter) -> Iterator[None]:
        """Seal the packs `writer` was given in the block (durable; abandoned if it fails), then
        know their chunks: only then may a recipe name them."""
        try:
            yield
            writer.seal()
        except BaseException:
            writer.abandon()
            raise
        self._drop_markers(set(writer.sealed))  # a pack written anew whole: its old damage is gone
        self.map.add(writer.sealed)

    # -- reading ---------------------------------------------------------------------------

    def write_to(self, digest: str, out: IO[bytes] | Any) -> int:
        """Reassemble the file into `out`, checked against its digest; its size. A corrupt
        chunk is quarantined (and so is the recipe: the object is no longer served)."""
        recipe = self.recipe(digest)
        if recipe is None:
            raise StoreError(f"object {digest} is missing from the store", hint="build again to recreate it")
        self.refresh()
        hasher = blake3.blake3()
        with self._reading(recipe) as (read_into, fill):
            if forked.wanted(recipe.size):
                batches: Generator[Any, None, None] = forked.decoded(*self._places(recipe), self.packs, fill)
            else:
                batches = decoded(recipe.chunks, read_into)
            with contextlib.closing(batches):  # the workers done before the packs are closed
                for batch in batches:  # decoded a batch at a time on the workers, hashed and written here in order
                    hasher.update(batch)
                    out.write(batch)
        if PREFIX + hasher.hexdigest() != digest:
            self._corrupt(digest, recipe)
        return recipe.size

    def write_file(self, digest: str, fd: int) -> int:
        """Reassemble the file into the empty file `fd` (opened for reading too: chunks are
        written at their offsets, on worker processes for a large file, else threads, and
        hashed back in order), checked against its digest; its size."""
        with collector_paused():  # the recipe and chunk map too: ~50,000 small objects a GiB
            recipe = self.recipe(digest)
            self.refresh()
        if recipe is None:
            raise StoreError(f"object {digest} is missing from the store", hint="build again to recreate it")
        with self._reading(recipe) as (read_into, fill):
            if forked.wanted(recipe.size):
                written = forked.reassemble(fd, *self._places(recipe), self.packs, fill)
            else:
                written = reassemble(fd, recipe.chunks, recipe.size, read_into)
        if PREFIX + written.hex() != digest:
            self._corrupt(digest, recipe)
        return recipe.size

    @contextlib.contextmanager
    def _reading(self, recipe: Recipe) -> Iterator[tuple[Any, Callable[[range, memoryview], None]]]:
        """How a file's chunks are decoded here, with pack descriptors closed at the end: for
        threads, `read_into(chunks, buffer, decompressor)`; for worker processes, `fill(indexes,
        buffer)` decodes the chunks of a region they could not."""
        import zstandard

        handles: dict[str, int] = {}
        decompressor = zstandard.ZstdDecompressor()

        def read_into(items: list[tuple[bytes, int]], view: memoryview, zstd: Any) -> None:
            self._read_into(items, view, zstd, handles)

        def fill(indexes: range, view: memoryview) -> None:
            self._read_into(recipe.chunks[indexes.start : indexes.stop], view, decompressor, handles)

        try:
            yield read_into, fill
        finally:
            for handle in handles.values():
                os.close(handle)

    def _places(self, recipe: Recipe) -> tuple[list[Located], list[int]]:
        return [self._locate(chunk) for chunk, _n in recipe.chunks], [n for _c, n in recipe.chunks]

    def _corrupt(self, digest: str, recipe: Recipe) -> NoReturn:
        import zstandard

        self._find_bad_chunks(recipe, zstandard.ZstdDecompressor())
        self.quarantine_recipe(digest)
        raise CorruptObjectError(
            f"object {digest} is corrupt (a chunk of it) and was quarantined", hint="build again to recreate it"
        )

    def _read_into(
        self, items: list[tuple[bytes, int]], out: memoryview, decompressor: Any, handles: dict[str, int]
    ) -> None:
        """Decode consecutive chunks of a file into `out` (their raw lengths end to end). The
        stored bytes of chunks that lie one after another in a pack (as a new file's do) are
        read in one call. A chunk that does not decode is left as `out` had it: the caller's
        check of the whole file finds it."""
        for attempt in (0, 1):
            try:
                places = [self._locate(chunk) for chunk, _n in items]
                lengths = [n for _c, n in items]
                decode_runs(places, lengths, out, decompressor, lambda pack: self._pack_fd(pack, handles))
                return
            except FileNotFoundError:  # repacked meanwhile: look again
                if attempt:
                    raise self._missing(items[0][0]) from None
                self.refresh()

    def _locate(self, chunk: bytes) -> Located:
        where = self.map.located.get(chunk)
        if where is None:
            self.refresh()
            where = self.map.located.get(chunk)
        if where is None:
            raise self._missing(chunk)
        return where

    def _pack_fd(self, pack: str, handles: dict[str, int]) -> int:
        fd = handles.get(pack)
        if fd is None:
            with self._lock:
                fd = handles.get(pack)
                if fd is None:
                    fd = handles[pack] = os.open(self.packs / f"{pack}.pack", os.O_RDONLY)
        return fd

    @staticmethod
    def _missing(chunk: bytes) -> StoreError:
        return StoreError(
            f"chunk {chunk.hex()} is missing from the store's packs",
            hint="build again to recreate the files that need it, or run `modelspec verify`",
        )

    def _read(self, chunk: bytes, length: int, decompressor: Any, handles: dict[str, int]) -> bytes | bytearray:
        for attempt in (0, 1):
            where = self.map.located.get(chunk)
            if where is None:
                self.refresh()
                where = self.map.located.get(chunk)
            if where is None:
                break
            try:
                stored = os.pread(self._pack_fd(where.pack, handles), where.stored, where.offset)
                return decode(stored, where.codec, length, decompressor)
            except FileNotFoundError:  # repacked meanwhile: look again
                if attempt:
                    break
                self.refresh()
            except Exception:  # undecodable bytes: corrupt, like bytes that do not hash
                return b""
        raise self._missing(chunk)

    def _find_bad_chunks(self, recipe: Recipe, decompressor: Any) -> None:
        handles: dict[str, int] = {}
        try:
            for chunk, length in recipe.chunks:
                with contextlib.suppress(StoreError):
                    if blake3.blake3(self._read(chunk, length, decompressor, handles)).digest() != chunk:
                        self.quarantine_chunk(chunk)
        finally:
            for fd in handles.values():
                os.close(fd)

    def quarantine_chunk(self, chunk: bytes) -> None:
        """Never serve this chunk from its pack again (a new copy may be written by a file
        that holds it, and pruning drops the bad one)."""
        self.map.quarantine_chunk(chunk)

    def verify(self, digest: str) -> bool | None:
        """Reassemble and check: True, False (corrupt: quarantined), None (no recipe)."""
        try:
            with open(os.devnull, "wb") as sink:
                return self.write_to(digest, sink) >= 0
        except CorruptObjectError:
            return False
        except StoreError:
            if not self.has(digest):
                return None
            self.quarantine_recipe(digest)  # it names a chunk no pack holds
            return False

    # -- pruning ---------------------------------------------------------------------------

    def prune(
        self, min_live: float | None = None, *, dry_run: bool = False, gone: Set[str] = frozenset()
    ) -> PruneReport:
        """Remove packs no recipe needs a chunk of; rewrite those whose live fraction (of
        stored bytes) is below `min_live`, keeping only the live chunks. A `dry_run` says what
        it would free, as if the recipes of `gone` (objects gc would sweep) were gone."""
        threshold = self.policy.min_live if min_live is None else min_live
        with self._guard(exclusive=not dry_run):
            self.refresh()
            live = live_chunks((d for d in self.iter() if d not in gone), self.recipe)
            plan = plan_prune(read_packs(self.packs, sorted(self.map.loaded)), live, self.map.quarantined(), threshold)
            if dry_run:
                return PruneReport(len(plan.old), 0, plan.freed)
            written = apply_prune(plan, self.packs, PackWriter(self.packs, self._temp_file, self.policy.pack_limit))
            self._drop_markers()
            self.map.clear()
        return PruneReport(len(plan.old), written, plan.freed)

    def _drop_markers(self, packs: set[str] | None = None) -> None:
        """Forget the damage of `packs` (written anew), or of packs that are gone."""
        drop_markers(self.quarantine_dir, self.packs, packs)


class ChunkIntake:
    """What `ChunkStore.receiving` is given: raw chunks (from any thread) and recipes."""

    def __init__(self, writer: PackWriter) -> None:
        self._writer = writer
        self._lock = threading.Lock()
        self._added: set[bytes] = set()
        self.recipes: list[tuple[str, Recipe]] = []

    def add(self, chunk: bytes, raw: bytes) -> None:
        """A chunk, already checked against its name. Stored raw: weights barely compress,
        and the pull that brought it is waiting."""
        with self._lock:
            if chunk not in self._added:
                self._added.add(chunk)
                self._writer.add(chunk, raw, len(raw), RAW)

    def recipe(self, digest: str, recipe: Recipe) -> None:
        with self._lock:
            self.recipes.append((digest, recipe))
