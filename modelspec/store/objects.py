"""The content-addressed object store: files and Merkle trees by blake3 digest.

    <root>/objects/ab/<hex>     read-only objects, never overwritten
    <root>/quarantine/<hex>     objects whose bytes no longer match their digest
    <root>/tmp/<token>-…        temp files; renamed into objects/ only when complete (owner.py)
    <root>/packs/, recipes/     large files (≥ 4 MiB) as content-defined chunks (chunks.py)

Objects are written to a temp file, fsynced and renamed, so a reader never sees half an
object. A user's file is always copied in (a hardlink would let an in-place edit corrupt
the store); files a stage produced in our scratch directory are moved in.

A large file is also cut into chunks when it is stored. Its whole copy in objects/ is then
"hot" (hardlinks, instant checkout); gc `cool`s the objects no alias, pin or last build
needs: their whole copy goes, their recipe and chunks stay, and reading such a "cold" object
reassembles it (and makes it whole again until the next gc).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import blake3

from ..digest import PREFIX, digest_bytes, digest_file, hex_of, parse_tree_document
from ..errors import CorruptObjectError, StoreError
from .durability import DeferredSync
from .files import fsync_dir, remove_path, write_atomic
from .owner import remove_orphans, temp_prefix
from .protocol import Entry, ObjectInfo, ObjectStore
from .recipes import DEFAULT_CHUNKING, ChunkPolicy, recipe_file
from .trees import digest_path, walk_path

if TYPE_CHECKING:
    from .chunks import ChunkStore

__all__ = ["ChunkPolicy", "Entry", "LocalStore", "digest_path", "walk_path"]

_CHUNK = 1 << 20
_SMALL_COPY = 4 << 20  # copied out of memory below this (as `digest_file` hashes it), else by the kernel


class LocalStore(DeferredSync):
    """An object store in a local directory (an `ObjectStore`). Beyond the protocol it
    offers local mechanics: `path_of`/`checked_path` (to hardlink objects into a sandbox or
    hand a file to a tool), `tmp`/`temp_file` (scratch on the objects' filesystem, so results
    are moved in, not copied), `write_file`, `clean_temp` and `quarantine`."""

    def __init__(self, root: Path, chunking: ChunkPolicy | None = DEFAULT_CHUNKING) -> None:
        self.root = root
        self.chunking = chunking
        self.objects = root / "objects"
        self._root, self._objects = os.fspath(root), os.fspath(self.objects)
        self.quarantine_dir = root / "quarantine"
        self.tmp = root / "tmp"
        self._verified: set[str] = set()
        DeferredSync.__init__(self)

    @functools.cached_property
    def chunks(self) -> ChunkStore:
        """The chunk layer, loaded when first needed (not by a command that only finds whole objects)."""
        from .chunks import ChunkStore

        return ChunkStore(self.root, self.temp_file, self.chunking or DEFAULT_CHUNKING)

    # -- paths and queries -------------------------------------------------------------

    def path_of(self, digest: str) -> Path:
        return Path(self._file(digest))

    def _file(self, digest: str) -> str:  # as a string: a build asks for every cached output's
        hexpart = hex_of(digest)
        return f"{self._objects}/{hexpart[:2]}/{hexpart}"

    def has(self, digest: str) -> bool:
        return os.path.exists(self._file(digest)) or os.path.exists(recipe_file(self._root, digest))

    def is_whole(self, digest: str) -> bool:
        """Is there a whole copy (hot), rather than only chunks (cold)?"""
        return os.path.exists(self._file(digest))

    def stat(self, digest: str) -> ObjectInfo | None:
        """The object's size and age: of the whole copy, else of its recipe (its chunks are shared)."""
        with contextlib.suppress(FileNotFoundError):
            info = self.path_of(digest).stat()
            return ObjectInfo(info.st_size, info.st_mtime)
        return self.chunks.stat(digest)

    def iter(self) -> Iterator[str]:
        whole = set()
        if self.objects.is_dir():
            for fan in sorted(os.listdir(self.objects)):
                for name in sorted(os.listdir(self.objects / fan)):
                    whole.add(name)
                    yield PREFIX + name
        for digest in self.chunks.iter():
            if hex_of(digest) not in whole:
                yield digest

    # -- writing -----------------------------------------------------------------------

    def temp_file(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix=temp_prefix(self.tmp))
        return fd, Path(name)

    def _intact(self, digest: str) -> bool:
        """Is the object present and sound? Writers trust an existing object only once it
        has been verified in this process: a corrupt one is quarantined and written anew.
        The whole copy is checked when there is one (as `checked_path` would), else the chunks."""
        if digest in self._verified:
            return self.has(digest)
        whole = self._check(digest)  # then, only an object with a recipe loads the chunk layer (~20 ms)
        if whole is not None:
            return whole
        return os.path.exists(recipe_file(self._root, digest)) and self.chunks.verify(digest) is True

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        if not self._intact(digest):
            fd, temp = self.temp_file()
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self._commit(temp, digest)
        return digest

    def put_file(self, path: Path, *, move: bool = False, digest: str | None = None) -> str:
        """Ingest a file: copied (hashed on the way), or moved when it is ours to take."""
        if digest is not None and self._intact(digest):
            if move:
                os.unlink(path)
            return digest
        if move:
            digest = digest_file(path)
            if self._intact(digest):
                os.unlink(path)
            else:
                self._commit(path, digest, path.name)
            return digest
        policy = self.chunking
        if policy is not None and not policy.keep_whole and path.stat().st_size >= policy.threshold:
            return self._put_cold(path, digest)
        fd, temp = self.temp_file()
        hasher = blake3.blake3()
        try:
            with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    hasher.update(chunk)
                    dst.write(chunk)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        copied = PREFIX + hasher.hexdigest()
        if digest is not None and copied != digest:
            temp.unlink(missing_ok=True)
            raise StoreError(f"{path} changed while it was being copied into the store; build again")
        if self._intact(copied):
            temp.unlink()
        else:
            self._commit(temp, copied, path.name)
        return copied

    def warm(self, entry: Entry) -> int:
        """Give every cold file of an entry its whole copy again (reassembled, checked), so its
        paths can be handed out; how many were warmed."""
        cold = [d for d in self.tree_objects(entry) if not self.is_whole(d) and self.chunks.has(d)]
        for digest in cold:
            self.checked_path(digest)
        return len(cold)

    def _put_cold(self, path: Path, digest: str | None) -> str:
        """A large file of a store that keeps no whole copies: chunked straight from where
        it is (no copy of it is written, only its new chunks), hashed as it is read."""
        stored = self.chunks.add(path, None, path.name)
        if digest is not None and stored != digest:
            raise StoreError(f"{path} changed while it was being copied into the store; build again")
        self._verified.discard(stored)
        return stored

    def _commit(self, temp: Path, digest: str, name: str = "") -> None:
        """fsync, make read-only, rename into place; a concurrent writer of the same digest wins equally."""
        target = self.path_of(digest)
        deferred = self._unsynced is not None
        try:
            if not deferred:
                with open(temp, "rb") as f:
                    os.fsync(f.fileno())
            os.chmod(temp, 0o444)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if deferred:
            self._defer(target)
        else:
            fsync_dir(target.parent)
        self._verified.add(digest)  # we hashed these very bytes on the way in
        policy = self.chunking
        if policy is not None and target.stat().st_size >= policy.threshold and not self.chunks.has(digest):
            try:
                self.chunks.add(target, digest, name)
            except OSError:  # no room for its chunks (a full disk): it stays whole, gc cuts it when it cools it
                return
            if not policy.keep_whole:
                self.cool(digest)

    def cool(self, digest: str) -> bool:
        """Keep a large object only as chunks: chunked first if it is not yet (checked against
        its digest: a corrupt whole copy is quarantined instead), then its whole copy removed.
        False (nothing done) for an object under the threshold, not whole, or corrupt."""
        path = self.path_of(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        if self.chunking is None or size < self.chunking.threshold:
            return False
        if not self.chunks.has(digest) and self.chunks.add(path) != digest:
            self.quarantine(digest)  # its bytes are some other object's now: not this one's
            return False
        path.unlink(missing_ok=True)
        self._verified.discard(digest)
        return True

    # -- reading -----------------------------------------------------------------------

    def verify(self, digest: str) -> bool:
        """Re-hash an object, both its whole copy and its chunks: False if it is missing, or if
        either form was corrupt (then quarantined; chunks lost while the whole copy is sound
        are cut again from it)."""
        whole = self._check(digest)
        cold = self.chunks.verify(digest)
        if whole is True and cold is False:
            self.chunks.add(self.path_of(digest), digest)
        return (whole or cold) is True and False not in (whole, cold)

    def _check(self, digest: str) -> bool | None:
        """True if the whole copy is sound, False if corrupt (now quarantined), None if it is
        not there. Hashed without looking first: gc may remove it at any instant."""
        try:
            sound = digest_file(self.path_of(digest)) == digest
        except FileNotFoundError:
            return None
        if sound:
            self._verified.add(digest)
            return True
        self.quarantine(digest)
        return False

    def quarantine(self, digest: str) -> Path:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / hex_of(digest)
        os.replace(self.path_of(digest), target)
        self._verified.discard(digest)
        return target

    def checked_path(self, digest: str) -> Path:
        """The object's path after verifying it (once per process); never a corrupt object."""
        path = self.path_of(digest)
        if digest in self._verified:
            return path
        sound = self._check(digest)
        if sound is None and self.chunks.has(digest):
            self._rehydrate(digest)
            return path
        if sound is None:
            raise self._missing(digest)
        if not sound:
            raise CorruptObjectError(
                f"object {digest} is corrupt and was quarantined in {self.quarantine_dir}",
                hint="build again to recreate it",
            )
        return path

    def read_bytes(self, digest: str) -> bytes:
        """The object's bytes, checked against its digest. Read at once, without asking first
        whether it exists: a concurrent writer may add it, or gc remove it, between the two."""
        try:
            data = self.path_of(digest).read_bytes()
        except FileNotFoundError:
            if not self.chunks.has(digest):
                raise self._missing(digest) from None
            buffer = io.BytesIO()
            self.chunks.write_to(digest, buffer)  # checked against the digest
            return buffer.getvalue()
        if digest_bytes(data) != digest:
            self.quarantine(digest)
            raise CorruptObjectError(f"object {digest} is corrupt and was quarantined")
        return data

    def _rehydrate(self, digest: str) -> None:
        """Make a cold object whole again from its chunks (checked on the way)."""
        fd, temp = self.temp_file()
        try:
            with os.fdopen(fd, "wb") as out:
                self.chunks.write_file(digest, out.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._commit(temp, digest)

    def _reassemble_at(self, digest: str, dest: Path, mode: int) -> None:
        """A cold object's bytes straight into `dest` (a temp file beside it, then renamed)."""
        temp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            with open(temp, "w+b") as out:  # read too: the result is hashed from a map of it
                self.chunks.write_file(digest, out.fileno())  # at known offsets, on every core
            os.chmod(temp, mode)
            os.replace(temp, dest)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _missing(self, digest: str) -> StoreError:
        return StoreError(
            f"object {digest} is missing from the store",
            hint="build again to recreate it, or run `modelspec verify`",
        )

    def open(self, digest: str) -> BinaryIO:
        path = self.checked_path(digest)
        try:
            return open(path, "rb")
        except FileNotFoundError:  # removed by gc since it was checked
            raise self._missing(digest) from None

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_of(digest).unlink()
        self.chunks.delete(digest)
        self._verified.discard(digest)

    def read_tree(self, digest: str) -> dict[str, dict[str, object]]:
        try:
            return parse_tree_document(self.read_bytes(digest))
        except ValueError:
            raise CorruptObjectError(f"object {digest} is not a tree") from None

    # -- trees -------------------------------------------------------------------------

    def put_path(self, path: Path, *, move: bool = False, known: Callable[[Path], str] | None = None) -> Entry:
        """Ingest a file or directory; `known` may supply file digests (the stat cache)."""

        def visit(file: Path) -> str:
            return self.put_file(file, move=move, digest=known(file) if known else None)

        return walk_path(path, visit, self.put_bytes)

    def restore(self, entry: Entry, dest: Path, *, link: bool = True) -> None:
        """Materialize an entry at `dest`: hardlinks of read-only objects, else copies."""
        if entry.type == "file":
            self._restore_file(entry.digest, dest, executable=False, link=link)
            return
        dest.mkdir(parents=True, exist_ok=True)
        for name, child in sorted(self.read_tree(entry.digest).items()):
            target = dest / name
            if child["type"] == "tree":
                self.restore(Entry("tree", str(child["digest"]), 0), target, link=link)
            else:
                self._restore_file(str(child["digest"]), target, executable=bool(child.get("exec")), link=link)

    def _restore_file(self, digest: str, dest: Path, *, executable: bool, link: bool) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o555 if executable else 0o444
        if not link and self._copy_small(digest, os.fspath(dest), mode):
            return
        if not link and not self.is_whole(digest) and self.chunks.has(digest):
            self._reassemble_at(digest, dest, mode)  # a copy: stays cold
            return
        source = self.checked_path(digest)
        if link and not executable:
            try:
                os.link(source, dest)
                return
            except OSError:
                pass  # another filesystem: copy instead
        created = not os.path.lexists(dest)
        try:
            shutil.copyfile(source, dest)
            os.chmod(dest, mode)
        except BaseException:
            if created:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dest)  # no half-written copy is left
            raise

    def _copy_small(self, digest: str, dest: str, mode: int) -> bool:
        """A small whole object copied to a new file at `dest`: read once, hashed, written once
        (what is written is the very bytes checked), about 10 system calls where the checked
        copy made 38 (a checkout of 1,000 artifacts is 1,000 of these). False, with nothing
        written, when it is not that simple: not whole (cold, or removed by gc meanwhile), large,
        corrupt (the caller's path quarantines it and says so) or something already at `dest`."""
        try:
            source = os.open(self._file(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(source).st_size
            data = os.read(source, size) if size < _SMALL_COPY else b""
        finally:
            os.close(source)
        if len(data) != size or digest_bytes(data) != digest:
            return False
        try:
            out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            return False
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(out, view) :]
            os.fchmod(out, mode)  # the mode asked for, whatever the umask
        except BaseException:
            os.close(out)
            os.unlink(dest)  # no half-written copy is left
            raise
        os.close(out)
        self._verified.add(digest)
        return True

    def tree_objects(self, entry: Entry) -> Iterator[str]:
        """Every object an entry needs: the tree documents and the file objects."""
        yield entry.digest
        if entry.type == "tree":
            for child in self.read_tree(entry.digest).values():
                yield from self.tree_objects(Entry(str(child["type"]), str(child["digest"]), 0))

    def write_file(self, path: Path, data: bytes) -> None:
        """`write_atomic` for a file inside the store directory."""
        write_atomic(path, data, self.tmp)

    def clean_temp(self) -> None:
        """Remove temp files left by processes that no longer run (killed builds)."""
        remove_orphans(self.tmp, remove_path)


if TYPE_CHECKING:  # mypy checks LocalStore against the protocol, signatures included
    _conforms: ObjectStore = LocalStore(Path())
