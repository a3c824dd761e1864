"""The remote object store: the `ObjectStore` protocol over `Blobs` (an S3 bucket or a shared
directory), and the batched transfers between it and a workspace's `LocalStore`.

    <remote>/objects/ab/<hex>       content-addressed objects, created only if absent
    <remote>/quarantine/<hex>       objects whose bytes no longer matched their digest

Every object is written with a conditional create, so it is complete before it is visible
and never overwritten; a push killed half-way leaves only whole objects, and the next push
uploads just what is missing. Every read is verified against the digest before anything
is handed out or enters the local store; a corrupt remote object is moved to quarantine.

Many small objects are not one round trip each for the existence check: `missing` lists
the remote (a small one whole, a large one by the fan-out folders the digests fall into;
a thousand names per request) instead of asking about each, and uploads and downloads run
`jobs` at a time.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..digest import PREFIX, digest_bytes, digest_file, hex_of, parse_tree_document
from ..errors import CorruptObjectError, StoreError
from .blobs import Blobs
from .objects import LocalStore, walk_path
from .protocol import Entry, ObjectInfo, ObjectStore

OBJECTS = "objects/"
QUARANTINE = "quarantine/"
_SMALL = 8 << 20  # read into memory and checked there; larger files are streamed
_HEAD_AT_MOST = 32  # above this many digests, list fan-out folders instead of asking each


def object_name(digest: str) -> str:
    hexpart = hex_of(digest)
    return f"{OBJECTS}{hexpart[:2]}/{hexpart}"


@dataclass
class Progress:
    """What a transfer has done so far; `report` is called after each object (thread-safe)."""

    total: int
    total_bytes: int
    report: Callable[[Progress], None] | None = None
    done: int = 0
    bytes: int = 0
    transferred: int = 0  # objects actually sent or received (the rest were already there)
    moved_bytes: int = 0  # their bytes
    present: set[str] = field(default_factory=set)  # found there already (not sent)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, size: int, *, moved: bool) -> None:
        with self._lock:
            self.done += 1
            self.bytes += size
            self.transferred += int(moved)
            self.moved_bytes += size if moved else 0
            if self.report is not None:
                self.report(self)


class RemoteStore:
    """An object store on a remote (an `ObjectStore`)."""

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs
        self.url = blobs.url

    # -- queries -----------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        return self.blobs.head(object_name(digest)) is not None

    def stat(self, digest: str) -> ObjectInfo | None:
        info = self.blobs.head(object_name(digest))
        return None if info is None else ObjectInfo(info.size, info.modified)

    def iter(self) -> Iterator[str]:
        for info in self.blobs.scan(OBJECTS):
            yield PREFIX + info.name.rsplit("/", 1)[-1]

    def missing(self, digests: Iterable[str], jobs: int = 8) -> set[str]:
        """Which of the digests the remote lacks, in few requests."""
        wanted = set(digests)
        if len(wanted) <= _HEAD_AT_MOST:
            with ThreadPoolExecutor(max(1, jobs)) as pool:
                present = list(pool.map(self.has, sorted(wanted)))
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
        if size <= _SMALL:
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

    def _missing(self, digest: str) -> StoreError:
        return StoreError(
            f"object {digest} is missing from the remote {self.url}",
            hint="push it again from a workspace that has it (`modelspec push`), or build again",
        )

    def read_bytes(self, digest: str) -> bytes:
        for _attempt in range(2):  # bytes damaged on the way are fetched once more
            data = self.blobs.get(object_name(digest))
            if data is None:
                raise self._missing(digest)
            if digest_bytes(data) == digest:
                return data
        self.quarantine(digest)
        raise CorruptObjectError(
            f"object {digest} on the remote {self.url} is corrupt; it was moved to its quarantine/",
            hint="push it again from a workspace that has it, or build again",
        )

    def quarantine(self, digest: str) -> None:
        """Take a corrupt object out of service, keeping its bytes under quarantine/."""
        name = object_name(digest)
        data = self.blobs.get(name)
        if data is not None:
            self.blobs.replace(QUARANTINE + hex_of(digest), data)
        self.blobs.delete([name])

    def verify(self, digest: str) -> bool:
        try:
            self.read_bytes(digest)
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
        name = object_name(digest)
        with tempfile.TemporaryDirectory(prefix="modelspec-remote-") as scratch:
            temp = Path(scratch) / "object"
            for _attempt in range(2):
                if not self.blobs.download(name, temp):
                    raise self._missing(digest)
                if digest_file(temp) == digest:
                    break
            else:
                self.quarantine(digest)
                raise CorruptObjectError(
                    f"object {digest} on the remote {self.url} is corrupt; it was moved to its quarantine/",
                    hint="push it again from a workspace that has it, or build again",
                )
            size = 0
            with open(temp, "rb") as f:
                while chunk := f.read(1 << 20):
                    handle.write(chunk)
                    size += len(chunk)
        handle.flush()
        return size

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
        self.blobs.delete([object_name(digest)])

    # -- transfers with a local store ----------------------------------------------------

    def upload(
        self,
        local: LocalStore,
        digests: Iterable[str],
        *,
        jobs: int = 8,
        report: Callable[[Progress], None] | None = None,
    ) -> Progress:
        """Send the objects the remote lacks, `jobs` at a time, each verified locally first."""
        wanted = sorted(set(digests))
        absent = self.missing(wanted, jobs)
        # What the remote has may be absent here (held there: store/held.py); what it lacks must be here.
        sizes = {d: _local_size(local, d, required=d in absent) for d in wanted}
        progress = Progress(len(wanted), sum(sizes.values()), report)
        progress.present = set(wanted) - absent
        for digest in wanted:
            if digest not in absent:
                progress.add(sizes[digest], moved=False)

        def send(digest: str) -> None:
            path = local.checked_path(digest)  # never upload a corrupt local object
            if sizes[digest] <= _SMALL:
                data = path.read_bytes()
                if digest_bytes(data) != digest:  # changed since it was checked: refuse
                    raise CorruptObjectError(f"local object {digest} changed while it was being uploaded")
                self.blobs.create(object_name(digest), data)
            else:
                self.blobs.create(object_name(digest), path)
            progress.add(sizes[digest], moved=True)

        run_all(send, sorted(absent), jobs)
        return progress

    def download(
        self,
        local: LocalStore,
        digests: Iterable[str],
        *,
        jobs: int = 8,
        report: Callable[[Progress], None] | None = None,
        sizes: dict[str, int] | None = None,
    ) -> Progress:
        """Fetch the objects the local store lacks, each verified before it enters it."""
        wanted = sorted(set(digests))
        absent = [d for d in wanted if not local.has(d)]
        progress = Progress(len(wanted), sum((sizes or {}).get(d, 0) for d in wanted), report)
        for _digest in wanted[: len(wanted) - len(absent)]:
            progress.add(0, moved=False)

        def fetch(digest: str) -> None:
            progress.add(self.fetch_into(local, digest), moved=True)

        run_all(fetch, absent, jobs)
        return progress

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


def _local_size(local: LocalStore, digest: str, *, required: bool) -> int:
    info = local.stat(digest)  # a whole copy, or a cold object's chunks
    if info is None:
        if not required:
            return 0  # the remote has it: left there by a remote hit (store/held.py)
        raise StoreError(
            f"object {digest} is missing from the local store", hint="build again, or run `modelspec verify`"
        )
    return info.size


def run_all(work: Callable[[str], None], items: list[str], jobs: int) -> None:
    """Run `work` on every item, `jobs` at a time; the first failure is raised once the
    running ones finish (nothing half-done: each item is all or nothing)."""
    if not items:
        return
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = [pool.submit(work, item) for item in items]
        for future in futures:
            error = future.exception()
            if error is not None:
                for pending in futures:
                    pending.cancel()
                raise error


if TYPE_CHECKING:
    from .blobs import FileBlobs

    _conforms: ObjectStore = RemoteStore(FileBlobs(Path(), ""))
