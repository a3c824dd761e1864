"""Packs on a remote: many small objects in one blob, so that pushing thousands of them costs
a few requests instead of one each.

    <remote>/packs/<hex>.pack         a header (magic, 16 random bytes), then the members' bytes
    <remote>/packs/<hex>.idx          each member's digest, offset and length; created after its pack
    <remote>/packs/<hex>.bad/<digest> a member whose bytes did not match its digest (those bytes)

<hex> is the blake3 of the pack's bytes; a pack of a large object's chunks (store/
remote_chunks.py) is named `<hex>.chunks` (`packs/<hex>.chunks.pack`, `.idx`), so that what
the remote holds is counted as objects and chunks, and chunks no recipe names are found (an
older modelspec reads it as any pack). The random header makes every pack a new name, so a
push killed between pack and index never leaves a pack that a later push would find taken
while a remote gc deletes it. An object is on the remote once an index naming it exists and
its pack is listed (and it is not marked bad): the index is created only after its pack is
whole, and remote gc deletes an index before its pack. A pack without an index is garbage
that nothing reads; remote gc sweeps it after the grace period.

Indices never change: a process keeps those it has read, and a workspace keeps them on disk
(`<home>/remote-packs/<remote>/<hex>.idx`), so a second push or build lists `packs/` (one
request a thousand blobs) and downloads only the indices it has not seen.
"""

from __future__ import annotations

import contextlib
import secrets
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3

from ..digest import PREFIX, digest_json, hex_of
from .blobs import BlobInfo, Blobs, RemoteConfig
from .files import write_atomic

PACKS = "packs/"
# Below 1 MiB a request costs more than its bytes (S3: ~20-50 ms to first byte, 1 MiB at
# 100 MB/s is 10 ms); above it packing saves little and makes gc coarser.
PACK_BELOW = 1 << 20
# 16 MiB packs: a PUT of that is mostly bytes, a push of 1,000 small objects still makes
# several packs to send in parallel, and a read of one member stays cheap on servers that
# copy the whole blob for a range (moto: ~1 ms per MiB of the blob).
PACK_TARGET = 16 << 20
PACK_AT_LEAST = 8  # fewer small objects go loose: a pack and its index are two requests too
READ_GAP = 1 << 20  # members this close are read in one range (the gap costs less than a request)
# A range read covers at most this much: a pull's runs are stored `jobs` at a time, and
# storing a member (two fsyncs) costs more than reading it.
RUN_AT_MOST = 4 << 20

_PACK_MAGIC = b"MSRPACK1"
_PACK_HEADER = len(_PACK_MAGIC) + 16
_INDEX_MAGIC = b"MSRIDX01"
_HEAD = struct.Struct("<8sI")
_ROW = struct.Struct("<32sQQ")


CHUNKS = ".chunks"  # the end of a pack's name that holds chunks


def holds_chunks(pack: str) -> bool:
    """Whether the pack was pushed as a large object's chunks (packs made before pushes named
    them so are known by a chunk a recipe names: remote_chunks.chunk_packs)."""
    return pack.endswith(CHUNKS)


def pack_name(pack: str) -> str:
    return f"{PACKS}{pack}.pack"


def index_name(pack: str) -> str:
    return f"{PACKS}{pack}.idx"


def bad_name(pack: str, digest: str) -> str:
    return f"{PACKS}{pack}.bad/{hex_of(digest)}"


@dataclass(frozen=True, slots=True)
class Member:
    """Where a packed object's bytes are: a range of a pack."""

    digest: str
    pack: str  # the pack's hex name
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Built:
    """A pack made from objects' bytes, and its index, ready to be created in that order."""

    pack: str
    data: bytes
    index: bytes
    members: tuple[Member, ...]


def build_pack(parts: list[tuple[str, bytes]], *, chunks: bool = False) -> Built:
    pieces = [_PACK_MAGIC, secrets.token_bytes(16)]
    rows = []
    offset = _PACK_HEADER
    for digest, data in parts:
        rows.append((digest, offset, len(data)))
        pieces.append(data)
        offset += len(data)
    data = b"".join(pieces)
    pack = blake3.blake3(data).hexdigest() + (CHUNKS if chunks else "")
    members = tuple(Member(digest, pack, start, length) for digest, start, length in rows)
    return Built(pack, data, encode_index(members), members)


def encode_index(members: tuple[Member, ...]) -> bytes:
    body = _HEAD.pack(_INDEX_MAGIC, len(members)) + b"".join(
        _ROW.pack(bytes.fromhex(hex_of(m.digest)), m.offset, m.length) for m in members
    )
    return body + blake3.blake3(body).digest()  # a damaged index is refused, never believed


def decode_index(pack: str, data: bytes, pack_size: int) -> tuple[Member, ...] | None:
    """The members an index names, or None if it is damaged or names bytes its pack lacks."""
    if len(data) < _HEAD.size + 32 or blake3.blake3(data[:-32]).digest() != data[-32:]:
        return None
    magic, count = _HEAD.unpack_from(data)
    if magic != _INDEX_MAGIC or len(data) != _HEAD.size + count * _ROW.size + 32:
        return None
    members = []
    for i in range(count):
        raw, offset, length = _ROW.unpack_from(data, _HEAD.size + i * _ROW.size)
        if offset < _PACK_HEADER or offset + length > pack_size:
            return None
        members.append(Member(PREFIX + raw.hex(), pack, offset, length))
    return tuple(members)


def groups(items: list[tuple[str, int]], target: int = PACK_TARGET) -> list[list[tuple[str, int]]]:
    """Objects (digest, size) in packs of about `target` bytes each, in their order."""
    total = sum(size for _d, size in items)
    count = max(1, -(-total // target))
    share = total / count
    found: list[list[tuple[str, int]]] = [[]]
    filled = 0
    for item in items:
        if found[-1] and filled + item[1] > share * 1.05 and len(found) < count:
            found.append([])
            filled = 0
        found[-1].append(item)
        filled += item[1]
    return found


@dataclass(frozen=True, slots=True)
class Run:
    """One range read of a pack covering members that lie close together."""

    pack: str
    start: int
    end: int
    members: tuple[Member, ...]


def runs(members: list[Member], gap: int = READ_GAP, most: int = RUN_AT_MOST) -> list[Run]:
    """The members in range reads: neighbours close together share one."""
    found: list[Run] = []
    for member in sorted(members, key=lambda m: (m.pack, m.offset)):
        last = found[-1] if found else None
        joins = last is not None and member.offset + member.length - last.start <= most
        if last is not None and joins and last.pack == member.pack and member.offset - last.end <= gap:
            end = max(last.end, member.offset + member.length)
            found[-1] = Run(last.pack, last.start, end, (*last.members, member))
        else:
            found.append(Run(member.pack, member.offset, member.offset + member.length, (member,)))
    return found


@dataclass(frozen=True)
class Listing:
    """What one listing of `packs/` showed."""

    packs: dict[str, BlobInfo]  # pack hex → the pack blob
    indices: dict[str, BlobInfo]  # pack hex → its index blob
    bad: dict[tuple[str, str], str]  # (pack hex, digest) → the marker's name


def list_packs(blobs: Blobs) -> Listing:
    packs, indices, bad = {}, {}, {}
    for info in blobs.scan(PACKS):
        rest = info.name.rsplit(PACKS, 1)[-1]
        if "/" in rest:
            folder, member = rest.split("/", 1)
            if folder.endswith(".bad"):
                bad[(folder.removesuffix(".bad"), PREFIX + member)] = info.name
        elif rest.endswith(".pack"):
            packs[rest.removesuffix(".pack")] = info
        elif rest.endswith(".idx"):
            indices[rest.removesuffix(".idx")] = info
    return Listing(packs, indices, bad)


def cache_dir(home: Path, config: RemoteConfig) -> Path:
    remote = hex_of(digest_json({"url": config.url, "endpoint": config.endpoint}))[:32]
    return home / "remote-packs" / remote


class PackCatalog:
    """The remote's pack indices as of the last `refresh`: which objects are packed where."""

    def __init__(self, blobs: Blobs, cache: Path | None = None) -> None:
        self.blobs = blobs
        self.cache = cache
        self._lock = threading.Lock()
        self._read: dict[str, tuple[Member, ...]] = {}  # pack hex → members (immutable: kept)
        self._members: dict[str, Member] = {}
        self._modified: dict[str, float] = {}  # pack hex → when its index was created
        self.unreadable: set[str] = set()  # indices that failed their checksum (left alone)

    def find(self, digest: str) -> Member | None:
        return self._members.get(digest)

    def modified(self, pack: str) -> float:
        return self._modified.get(pack, 0.0)

    def members(self) -> dict[str, Member]:
        return dict(self._members)

    def packed(self, pack: str) -> tuple[Member, ...]:
        return self._read.get(pack, ())

    def refresh(self, jobs: int = 8) -> Listing:
        """List `packs/` and read the indices not seen yet: what is packed now."""
        listing = list_packs(self.blobs)
        whole = {p: info for p, info in listing.indices.items() if p in listing.packs}
        new = [p for p in sorted(whole) if p not in self._read]
        with ThreadPoolExecutor(max(1, min(jobs, len(new) or 1))) as pool:
            loaded = list(pool.map(lambda p: self._load(p, listing.packs[p].size), new))
        with self._lock:
            for pack, members in zip(new, loaded, strict=True):
                if members is None:
                    self.unreadable.add(pack)
                else:
                    self.unreadable.discard(pack)
                    self._read[pack] = members
            members_now: dict[str, Member] = {}
            for pack in sorted(whole):
                for member in self._read.get(pack, ()):
                    if (pack, member.digest) not in listing.bad:
                        members_now.setdefault(member.digest, member)
            self._members = members_now
            self._modified = {p: info.modified for p, info in whole.items()}
        self._prune(set(whole))
        return listing

    def add(self, built: Built, modified: float) -> None:
        """A pack this process has just created (its index too): known without a listing."""
        self._save(built.pack, built.index)
        with self._lock:
            self._read[built.pack] = built.members
            self._modified[built.pack] = modified
            for member in built.members:
                self._members.setdefault(member.digest, member)

    def forget(self, member: Member) -> None:
        """A member found bad: no longer on the remote (another pack's copy may be)."""
        with self._lock:
            if self._members.get(member.digest) == member:
                del self._members[member.digest]

    def _load(self, pack: str, size: int) -> tuple[Member, ...] | None:
        cached = self.cache / f"{pack}.idx" if self.cache else None
        if cached is not None:
            with contextlib.suppress(OSError):
                members = decode_index(pack, cached.read_bytes(), size)
                if members is not None:
                    return members
        for _attempt in range(2):  # bytes damaged on the way are fetched once more
            data = self.blobs.get(index_name(pack))
            members = None if data is None else decode_index(pack, data, size)
            if members is not None:
                assert data is not None
                self._save(pack, data)
                return members
        return None

    def _save(self, pack: str, data: bytes) -> None:
        if self.cache is None:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs a download
            self.cache.mkdir(parents=True, exist_ok=True)
            write_atomic(self.cache / f"{pack}.idx", data, durable=False)  # it checks itself

    def _prune(self, listed: set[str]) -> None:
        """Cached indices of packs that remote gc deleted, and temp files of killed writers."""
        if self.cache is None:
            return
        with contextlib.suppress(OSError):
            for path in self.cache.glob("*.idx"):
                if path.stem not in listed:
                    path.unlink(missing_ok=True)
            for path in self.cache.glob(".*.tmp"):  # a live writer's is seconds old
                if path.stat().st_mtime < time.time() - 3600:
                    path.unlink(missing_ok=True)


def send_pack(blobs: Blobs, catalog: PackCatalog, parts: list[tuple[str, bytes]], *, chunks: bool = False) -> Built:
    """Create a pack (of chunks: `chunks`), then its index: its members are on the remote
    once this returns."""
    built = build_pack(parts, chunks=chunks)
    blobs.create(pack_name(built.pack), built.data)
    blobs.create(index_name(built.pack), built.index)
    catalog.add(built, time.time())
    return built


def read_run(blobs: Blobs, run: Run) -> dict[Member, bytes] | None:
    """Each member's bytes (unchecked) from one range read; None if the pack is gone."""
    data = blobs.get_range(pack_name(run.pack), run.start, run.end)
    if data is None:
        return None
    return {m: data[m.offset - run.start : m.offset - run.start + m.length] for m in run.members}
