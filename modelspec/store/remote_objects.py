"""The objects on a remote: the `ObjectStore` protocol over `Blobs` (an S3 bucket or a shared
directory). RemoteStore (store/remote.py) adds the batched transfers with a workspace's store.

    <remote>/objects/ab/<hex>       content-addressed objects, created only if absent
    <remote>/packs/<hex>.pack|.idx  small objects pushed together (store/remote_packs.py)
    <remote>/recipes/<hex>          large objects as chunk lists (store/remote_recipes.py)
    <remote>/quarantine/<hex>       objects whose bytes no longer matched their digest

Every object is written with a conditional create, so it is complete before it is visible
and never overwritten. Every read is verified against the digest before anything is handed
out or enters the local store; a corrupt remote object is moved to quarantine (a corrupt
packed member is marked bad beside its pack: it no longer counts as there). `missing` lists
the remote (a small one whole, a large one by the fan-out folders the digests fall into; a
thousand names per request) instead of asking about each.

An object is on the remote when its loose copy, a packed copy or its recipe is; a large one
pushed as chunks (store/remote_chunks.py) is read back by reassembling its chunks, each
checked, then the whole.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import blake3

from ..digest import PREFIX, digest_bytes, digest_file, hex_of, parse_tree_document
from ..errors import CorruptObjectError, StoreError
from . import remote_recipes
from .blobs import HEAD_AT_MOST, Blobs, set_aside
from .objects import LocalStore, walk_path
from .protocol import Entry, ObjectInfo, ObjectStore
from .recipes import Recipe
from .remote_packs import Member, PackCatalog, bad_name, read_run, runs
from .remote_recipes import chunk_digest, chunk_of

OBJECTS = "objects/"
QUARANTINE = "quarantine/"
SMALL = 8 << 20  # read into memory and checked there; larger files are streamed


def object_name(digest: str) -> str:
    hexpart = hex_of(digest)
    return f"{OBJECTS}{hexpart[:2]}/{hexpart}"


class RemoteObjects:
    """The objects on a remote: an `ObjectStore` (RemoteStore adds the batched transfers)."""

    def __init__(self, blobs: Blobs, pack_cache: Path | None = None) -> None:
        self.blobs = blobs
        self.url = blobs.url
        self.packs = PackCatalog(blobs, pack_cache)  # the pack indices (cached on disk when given)
        self.recipes = remote_recipes.RecipeCatalog(blobs, pack_cache)  # large objects' chunk lists

    # -- queries -----------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        return self.stat(digest) is not None

    def stat(self, digest: str) -> ObjectInfo | None:
        info = self.blobs.head(object_name(digest))
        if info is not None:
            return ObjectInfo(info.size, info.modified)
        member = self._member(digest, refresh=True)
        if member is not None:
            return ObjectInfo(member.length, self.packs.modified(member.pack))
        info = self.recipes.head(digest)
        recipe = self.recipes.get(digest) if info is not None else None
        return None if info is None or recipe is None else ObjectInfo(recipe.size, info.modified)

    def _member(self, digest: str, *, refresh: bool) -> Member | None:
        """Where the object is packed; `refresh`: list the packs again if not known yet."""
        member = self.packs.find(digest)
        if member is None and refresh:
            self.packs.refresh()
            member = self.packs.find(digest)
        return member

    def iter(self) -> Iterator[str]:
        loose = set()
        for digest in self.loose():
            loose.add(digest)
            yield digest
        self.packs.refresh()
        packed = set(self.packs.members())
        yield from sorted(packed - loose)
        yield from sorted(set(self.recipes.listed()) - loose - packed)

    def loose(self) -> Iterator[str]:
        """The objects stored one by one (not in packs)."""
        for info in self.blobs.scan(OBJECTS):
            yield PREFIX + info.name.rsplit("/", 1)[-1]

    def missing(self, digests: Iterable[str], jobs: int = 8) -> set[str]:
        """Which of the digests the remote lacks, in few requests: loose ones first, then
        the packs (one listing, and the indices not seen yet) for those not found loose,
        then the recipes for those found nowhere yet."""
        absent = self.missing_blobs(digests, jobs)
        return absent - self.recipes.present(absent, jobs)

    def missing_blobs(self, digests: Iterable[str], jobs: int = 8) -> set[str]:
        """`missing`, with no look at recipes: for chunks, which never have one."""
        absent = self._missing_loose(set(digests), jobs)
        if absent:
            self.packs.refresh(jobs)
            absent = {d for d in absent if self.packs.find(d) is None}
        return absent

    def _missing_loose(self, wanted: set[str], jobs: int) -> set[str]:
        if not wanted:
            return set()
        if len(wanted) <= HEAD_AT_MOST:
            with ThreadPoolExecutor(max(1, jobs)) as pool:
                present = list(pool.map(lambda d: self.blobs.head(object_name(d)) is not None, sorted(wanted)))
            return {d for d, there in zip(sorted(wanted), present, strict=True) if not there}
        fans = sorted({hex_of(d)[:2] for d in wanted})
        # A small remote is listed whole: a page of a thousand names per request, in order.
        # A large one stops that after as many pages as the fan listings cost in rounds.
        listed = self._small_listing(max(2, len(fans) // max(1, jobs)))
        if listed is not None:
            return wanted - listed

        def fan_listing(fan: str) -> set[str]:
            return {PREFIX + info.name.rsplit("/", 1)[-1] for info in self.blobs.scan(f"{OBJECTS}{fan}/")}

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            there = set().union(*pool.map(fan_listing, fans))
        return wanted - there

    def _small_listing(self, pages: int) -> set[str] | None:
        """Every digest on the remote, or None once there are more than `pages` thousand."""
        found = set()
        for info in self.blobs.scan(OBJECTS):
            found.add(PREFIX + info.name.rsplit("/", 1)[-1])
            if len(found) > pages * 1000:
                return None
        return found

    # -- writing -----------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        self.blobs.create(object_name(digest), data)
        return digest

    def put_file(self, path: Path, *, move: bool = False, digest: str | None = None) -> str:
        size = path.stat().st_size
        if size <= SMALL:
            data = path.read_bytes()
            actual = digest_bytes(data)
            self._check_claim(path, digest, actual)
            self.blobs.create(object_name(actual), data)
        else:
            actual = digest_file(path)
            self._check_claim(path, digest, actual)
            self.blobs.create(object_name(actual), path)
        if move:
            os.unlink(path)
        return actual

    @staticmethod
    def _check_claim(path: Path, claimed: str | None, actual: str) -> None:
        if claimed is not None and claimed != actual:
            raise StoreError(f"{path} changed while it was being copied into the store; build again")

    def put_path(self, path: Path, *, move: bool = False, known: Callable[[Path], str] | None = None) -> Entry:
        def visit(file: Path) -> str:
            return self.put_file(file, move=move, digest=known(file) if known else None)

        return walk_path(path, visit, self.put_bytes)

    # -- reading -----------------------------------------------------------------------

    def missing_error(self, digest: str) -> StoreError:
        return self._missing(digest)

    def _missing(self, digest: str) -> StoreError:
        return StoreError(
            f"object {digest} is missing from the remote {self.url}",
            hint="push it again from a workspace that has it (`modelspec push`), or build again",
        )

    def read_bytes(self, digest: str) -> bytes:
        packed, bad = self._packed_first(digest)
        if packed is not None:
            return packed
        for _attempt in range(2):  # bytes damaged on the way are fetched once more
            data = self.blobs.get(object_name(digest))
            if data is None:
                packed = self.packed_bytes(digest, refresh=True)
                if packed is None:
                    return self._reassembled(digest, bad)
                return packed
            if digest_bytes(data) == digest:
                return data
        self.quarantine(digest)
        raise self._corrupt(digest)

    def _reassembled(self, digest: str, bad: CorruptObjectError | None) -> bytes:
        """A chunked object's bytes (checked), or the error for an object found nowhere."""
        import io

        recipe = self._recipe_there(digest)
        if recipe is None:
            raise bad or self._missing(digest)
        buffer = io.BytesIO()
        self._stream(digest, recipe, buffer)
        return buffer.getvalue()

    def _recipe_there(self, digest: str) -> Recipe | None:
        """The object's recipe if the remote has it now (a recipe read before, and kept, may
        have been deleted since by a remote gc)."""
        if self.recipes.head(digest) is None:
            return None
        return self.recipes.get(digest)

    def _corrupt(self, digest: str, member: Member | None = None) -> CorruptObjectError:
        where = "its quarantine/" if member is None else bad_name(member.pack, digest)
        kept = "moved to" if member is None else "kept (it no longer counts as there) in"
        return CorruptObjectError(
            f"object {digest} on the remote {self.url} is corrupt; it was {kept} {where}",
            hint="push it again from a workspace that has it, or build again",
        )

    def _packed_first(self, digest: str) -> tuple[bytes | None, CorruptObjectError | None]:
        """The object from the pack the last listing put it in, if any; a corrupt packed copy
        is marked bad and returned as the error to raise if no other copy is found."""
        try:
            return self.packed_bytes(digest, refresh=False), None
        except CorruptObjectError as exc:
            return None, exc

    def packed_bytes(self, digest: str, *, refresh: bool) -> bytes | None:
        """A packed object's bytes, verified; None if it is not packed (or its pack is gone)."""
        member = self._member(digest, refresh=refresh)
        if member is None:
            return None
        data = None
        for _attempt in range(2):
            found = read_run(self.blobs, runs([member])[0])
            if found is None:  # deleted by a remote gc since the last listing: look again
                self.packs.refresh()
                member = self.packs.find(digest)
                if member is None:
                    return None
                continue
            data = found[member]
            if digest_bytes(data) == digest:
                return data
        if data is None:
            return None
        self.mark_bad(member, data)
        raise self._corrupt(digest, member)

    def mark_bad(self, member: Member, data: bytes) -> None:
        """A corrupt packed member: a pack cannot lose part of itself, so a marker beside it
        (holding the bad bytes) makes the member absent for every reader from now on."""
        self.blobs.replace(bad_name(member.pack, member.digest), data)
        self.packs.forget(member)

    def quarantine(self, digest: str) -> None:
        """Take a corrupt object out of service, keeping its bytes under quarantine/."""
        set_aside(self.blobs, object_name(digest), QUARANTINE + hex_of(digest))

    def verify(self, digest: str) -> bool:
        """Whether the object's bytes match its digest, hashed as they stream by (a large one
        is never held whole)."""
        try:
            with open(os.devnull, "wb") as sink:
                self.download_to(digest, sink)
        except CorruptObjectError:
            return False
        except StoreError:
            if self.has(digest):
                raise  # the remote failed, not the object
            return False
        return True

    def open(self, digest: str) -> BinaryIO:
        handle = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
        try:
            self.download_to(digest, handle)
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        return handle

    def download_to(self, digest: str, handle: BinaryIO) -> int:
        """Write the object into an open file, verified (size returned). Bytes that do not
        match are fetched once more (a network can damage them too); a second mismatch is
        a corrupt object: quarantined, and an error before the caller uses a byte."""
        packed, bad = self._packed_first(digest)
        if packed is None:
            with tempfile.TemporaryDirectory(prefix="modelspec-remote-") as scratch:
                temp = Path(scratch) / "object"
                if self.download_loose(digest, temp):
                    return _copy_into(temp, handle)
            packed = self.packed_bytes(digest, refresh=True)
            if packed is None:
                recipe = self._recipe_there(digest)
                if recipe is None:
                    raise bad or self._missing(digest)
                return self._stream(digest, recipe, handle)
        handle.write(packed)
        handle.flush()
        return len(packed)

    def download_loose(self, digest: str, temp: Path) -> bool:
        """The loose object into `temp`, verified; False if there is no loose object."""
        for _attempt in range(2):
            if not self.blobs.download(object_name(digest), temp):
                return False
            if digest_file(temp) == digest:
                return True
        self.quarantine(digest)
        raise self._corrupt(digest)

    def read_chunk(self, digest: str, chunk: bytes) -> bytes:
        """One chunk of the object `digest`, alone and verified. Corrupt (then marked bad) or gone,
        the object's recipe is quarantined: it names a chunk the remote no longer has, and the
        next push sends both again. A remote that cannot be reached quarantines nothing."""
        try:
            return self.read_bytes(chunk_digest(chunk))
        except CorruptObjectError:
            self.recipes.quarantine(digest)
            raise
        except StoreError:
            if self.missing_blobs([chunk_digest(chunk)]):
                self.recipes.quarantine(digest)
            raise

    def _stream(self, digest: str, recipe: Recipe, handle: BinaryIO) -> int:
        """Reassemble an object from the remote's chunks into `handle`, in order, each chunk
        checked, then the whole against its digest; its size. A chunk's range read brings its
        neighbours, kept until their turn (a push packs a file's new chunks in file order)."""
        from collections import Counter

        self.packs.refresh()
        uses = Counter(chunk for chunk, _n in recipe.chunks)
        members = {m.digest: m for c in uses if (m := self.packs.find(chunk_digest(c))) is not None}
        run_of = {m.digest: run for run in runs(list(members.values())) for m in run.members}
        found: dict[bytes, bytes] = {}
        hasher = blake3.blake3()
        for chunk, _length in recipe.chunks:
            if chunk not in found and (run := run_of.get(chunk_digest(chunk))) is not None:
                for member, data in (read_run(self.blobs, run) or {}).items():
                    if uses[chunk_of(member.digest)] > 0:
                        found[chunk_of(member.digest)] = data
            kept = found.get(chunk)
            data = (
                kept if kept is not None and blake3.blake3(kept).digest() == chunk else self.read_chunk(digest, chunk)
            )
            uses[chunk] -= 1
            if uses[chunk]:
                found[chunk] = data
            else:
                found.pop(chunk, None)
            hasher.update(data)
            handle.write(data)
        handle.flush()
        if PREFIX + hasher.hexdigest() != digest:
            self.recipes.quarantine(digest)
            raise CorruptObjectError(
                f"object {digest} on the remote {self.url} reassembles to other bytes; its recipe was quarantined",
                hint="push it again from a workspace that has it",
            )
        return recipe.size

    def read_tree(self, digest: str) -> dict[str, dict[str, object]]:
        try:
            return parse_tree_document(self.read_bytes(digest))
        except ValueError:
            raise CorruptObjectError(f"object {digest} on the remote {self.url} is not a tree") from None

    def tree_objects(self, entry: Entry) -> Iterator[str]:
        yield entry.digest
        if entry.type == "tree":
            for child in self.read_tree(entry.digest).values():
                yield from self.tree_objects(Entry(str(child["type"]), str(child["digest"]), 0))

    def restore(self, entry: Entry, dest: Path, *, link: bool = True) -> None:
        if entry.type == "file":
            self._restore_file(entry.digest, dest, executable=False)
            return
        dest.mkdir(parents=True, exist_ok=True)
        for name, child in sorted(self.read_tree(entry.digest).items()):
            if child["type"] == "tree":
                self.restore(Entry("tree", str(child["digest"]), 0), dest / name, link=link)
            else:
                self._restore_file(str(child["digest"]), dest / name, executable=bool(child.get("exec")))

    def _restore_file(self, digest: str, dest: Path, *, executable: bool) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            with open(temp, "wb") as f:
                self.download_to(digest, f)
            os.chmod(temp, 0o555 if executable else 0o444)
            os.replace(temp, dest)
        finally:
            temp.unlink(missing_ok=True)

    def delete(self, digest: str) -> None:
        """The loose copy and the recipe; a packed one (and a chunk) goes only with its whole
        pack (remote gc)."""
        self.blobs.delete([remote_recipes.recipe_name(digest), object_name(digest)])

    def put_loose(self, digest: str, data: bytes | Path) -> None:
        self.blobs.create(object_name(digest), data)

    def fetch_into(self, local: LocalStore, digest: str) -> int:
        """One object into the local store, verified on the way; its size."""
        local.tmp.mkdir(parents=True, exist_ok=True)
        fd, temp = local.temp_file()
        try:
            with os.fdopen(fd, "wb") as handle:
                size = self.download_to(digest, handle)
            local.put_file(temp, move=True)
        finally:
            temp.unlink(missing_ok=True)
        return size


def _copy_into(path: Path, handle: BinaryIO) -> int:
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            handle.write(chunk)
            size += len(chunk)
    handle.flush()
    return size


if TYPE_CHECKING:
    from .blobs import FileBlobs

    _conforms: ObjectStore = RemoteObjects(FileBlobs(Path(), ""))
