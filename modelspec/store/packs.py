"""Packs: immutable files of chunks, each pack named by the blake3 of its index.

    <chunk bytes, stored>…  <index: one 49-byte row per chunk>  <u64 index length> MSPACK01

An index row is the chunk's blake3 (32 bytes, of its raw bytes), its offset and stored
length in the pack, its raw length and its codec: stored raw, zstd, or (codec 2, 4, 8) the
bytes of floats of that size grouped (byte 0 of every number, then byte 1, …) with only the
top bytes compressed (sign and exponent: the mantissas of weights do not compress). A chunk
is compressed only when that saves at least `min_saving` of it: weights compress little.

A pack is written in the store's `tmp/`, fsynced and renamed into `packs/` when complete,
so a pack in `packs/` is always whole; a pack is never changed after. Its index names every
chunk by the blake3 of its raw bytes, with where it lies and how it is coded, so two packs with
one index hold the same chunks the same way: the index's blake3 names the pack as well as the
blake3 of all its bytes did (packs named so by older versions are read the same: nothing
checks a pack's name against its bytes), for ~0.3 CPU s less per GiB written.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import blake3

from .files import fsync_dir

MAGIC = b"MSPACK01"
_ROW = struct.Struct("<32sQIIB")
_FOOTER = struct.Struct("<Q8s")
_TOP = struct.Struct("<IB")
Buffer = bytes | bytearray | memoryview
RAW, ZSTD = 0, 1  # codecs; 2, 4 and 8 are zstd of bytes grouped by that element size
Row = tuple[bytes, int, int, int, int]  # an index row: chunk blake3, offset, stored length, raw length, codec


class Located(NamedTuple):
    """Where a chunk lies: its pack, offset and stored length, raw length and codec. A named
    tuple, immutable like a frozen dataclass but made 7x faster: a store's chunk map holds one
    per chunk (~50,000 per GiB), built from the pack indexes by every process that reads it."""

    pack: str
    offset: int
    stored: int
    raw: int
    codec: int


def encode(
    raw: bytes | memoryview, element: int, min_saving: float, compressor: Any, align: int = 0, plane: Any = None
) -> tuple[bytes, int]:
    """The bytes to store for a chunk and their codec: compressed only when it pays. `align`:
    how many leading bytes end a number begun in the chunk before (floats only); `plane`: the
    compressor of a float chunk's top plane (default `compressor`)."""
    parts, codec = encode_or_raw(raw, element, min_saving, compressor, align, plane)
    return (bytes(raw) if parts is None else b"".join(parts)), codec


def encode_or_raw(
    raw: bytes | memoryview, element: int, min_saving: float, compressor: Any, align: int = 0, plane: Any = None
) -> tuple[list[bytes] | None, int]:
    """`encode`, but as parts to write in order (not joined: one copy less), and None for a
    chunk stored raw (the caller writes the bytes it has)."""
    limit = len(raw) * (1 - min_saving)
    if element > 1 and len(raw) >= align + 2 * element:
        # Floats: only the top byte of each number (sign and exponent) compresses; zstd over a
        # whole small chunk cannot tell the planes apart, so the top plane is compressed alone.
        count = (len(raw) - align) // element
        whole = align + count * element
        grid = planes(raw, element, align, count)
        top = (plane or compressor).compress(grid[element - 1])
        if len(raw) - count + len(top) + _TOP.size > limit:  # decided before the other planes are kept
            return None, RAW
        edges = bytes(raw[:align]), bytes(raw[whole:])
        return [_TOP.pack(len(top), align), top, edges[0], grid[: element - 1], edges[1]], element
    packed = compressor.compress(raw)
    return ([packed], ZSTD) if len(packed) <= limit else (None, RAW)


def planes(raw: Buffer, element: int, align: int, count: int) -> Any:
    """The `count` numbers of `element` bytes from byte `align` of `raw` as planes: row k holds
    byte k of every number (one copy: numpy's strided copies are ~2x CPython's slices)."""
    import numpy as np  # only where large files are chunked: not on the CLI's start-up

    return np.frombuffer(raw, np.uint8, count * element, align).reshape(count, element).T.copy()


def plane_compressor(level: int) -> Any:
    """The compressor of float top planes. A plane holds a few distinct bytes (sign and
    exponent: 2.7 bits of entropy in float32 weights) whose short repeats zstd's level-1
    matcher chases; with long minimum matches and a tiny hash table it mostly entropy-codes
    them. On float32 weights: 2.4x faster than level 1 and 13% smaller (0.35 of the plane).
    `target_length` stays 0: above it, the fast strategy stops compressing literals."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(
        max(level, 1),
        window_log=17,
        hash_log=6,
        search_log=1,
        min_match=7,
        target_length=0,
        strategy=zstandard.STRATEGY_FAST,
    )
    return zstandard.ZstdCompressor(compression_params=params)


def decode(stored: bytes, codec: int, raw_length: int, decompressor: Any) -> bytes | bytearray:
    if codec == RAW:
        return stored
    if codec == ZSTD:
        return decompressor.decompress(stored, max_output_size=raw_length)
    out = bytearray(raw_length)
    decode_into(stored, codec, memoryview(out), decompressor)
    return out


def decode_into(stored: Buffer, codec: int, out: memoryview, decompressor: Any) -> None:
    """Decode a chunk into `out`, a writable buffer of its raw length; an exception (ValueError,
    zstd's or struct's error) if the stored bytes do not decode to exactly that many."""
    raw_length = len(out)
    if codec == RAW:
        out[:] = stored  # ValueError on another length
        return
    if codec == ZSTD:
        out[:] = decompressor.decompress(stored, max_output_size=raw_length)
        return
    if codec not in (2, 4, 8):
        raise ValueError(f"unknown codec {codec}")
    length, align = _TOP.unpack_from(stored)
    count = (raw_length - align) // codec
    if not 0 <= align < codec or count < 0:
        raise ValueError("a float chunk's alignment is out of range")
    whole = align + count * codec
    top = decompressor.decompress(memoryview(stored)[_TOP.size : _TOP.size + length], max_output_size=count)
    body = memoryview(stored)[_TOP.size + length :]
    if len(top) != count or len(body) != raw_length - count:
        raise ValueError("a float chunk's planes do not add up to its length")
    import numpy as np

    out[:align] = body[:align]
    out[whole:] = body[align + (codec - 1) * count :]
    # Each plane straight into its column (numpy's strided copies: ~1.6x CPython's slices).
    grid = np.frombuffer(out, np.uint8, count * codec, align).reshape(count, codec)
    planes = np.frombuffer(body, np.uint8, (codec - 1) * count, align).reshape(codec - 1, count)
    for i in range(codec - 1):
        grid[:, i] = planes[i]
    grid[:, codec - 1] = np.frombuffer(top, np.uint8)


def decode_runs(
    places: list[Located], lengths: list[int], out: memoryview, decompressor: Any, fd_of: Callable[[str], int]
) -> None:
    """Decode consecutive chunks of a file (where they lie, their raw lengths) into `out`, their
    raw lengths end to end. The stored bytes of chunks that lie one after another in a pack (as
    a new file's do) are read in one call; `fd_of(pack)` opens a pack. A chunk that does not
    decode is left as `out` had it: the caller's check of the whole file finds it."""
    position = i = 0
    while i < len(places):
        first = places[i]
        j, end = i + 1, first.offset + first.stored
        while j < len(places) and places[j].offset == end and places[j].pack == first.pack:
            end += places[j].stored
            j += 1
        with memoryview(os.pread(fd_of(first.pack), end - first.offset, first.offset)) as run:
            for length, where in zip(lengths[i:j], places[i:j], strict=True):
                start = where.offset - first.offset
                stored = run[start : start + where.stored]
                with contextlib.suppress(Exception):  # undecodable bytes: corrupt, like bytes that do not hash
                    decode_into(stored, where.codec, out[position : position + length], decompressor)
                position += length
        i = j


class PackFile:
    """A pack being written at a temp path: chunks appended, then `close` writes its index."""

    def __init__(self, fd: int, path: Path) -> None:
        self.path = path
        self.file = os.fdopen(fd, "wb", buffering=1 << 20)  # chunk-sized writes cost the kernel 2.4x
        self.rows: list[Row] = []
        self.size = 0

    def add(self, digest: bytes, stored: Buffer | list[bytes], raw_length: int, codec: int) -> None:
        """Append a chunk's stored bytes (or their parts, in order: not joined first)."""
        length = 0
        for part in stored if isinstance(stored, list) else [stored]:
            length += self.file.write(part)
        self.rows.append((digest, self.size, length, raw_length, codec))
        self.size += length

    def close(self, *, sync: bool) -> str:
        """Write the index (and with `sync`, fsync) and close; the pack's name: its index's
        blake3. The file is removed if that fails."""
        try:
            index = b"".join(_ROW.pack(*row) for row in self.rows) + _FOOTER.pack(len(self.rows) * _ROW.size, MAGIC)
            self.file.write(index)
            self.file.flush()
            if sync:
                os.fsync(self.file.fileno())
            self.file.close()
        except BaseException:
            self.discard()
            raise
        return blake3.blake3(index).hexdigest()

    def discard(self) -> None:
        with contextlib.suppress(OSError):  # its buffer cannot be flushed (a full disk): dropped anyway
            self.file.close()
        self.path.unlink(missing_ok=True)


class PackWriter:
    """Appends chunks to a pack in `tmp`; `seal` makes it a whole pack in `folder` (and the
    next chunk starts another). A pack that reaches `limit` bytes is sealed on a background
    thread (its fsync overlaps the next pack's writing); `seal` waits for them all. `adopt`
    seals a pack another process wrote whole (index included) the same way."""

    def __init__(self, folder: Path, temp_file: Any, limit: int) -> None:
        self.folder = folder
        self.temp_file = temp_file  # () -> (fd, path) in the store's tmp/ (owned by this process)
        self.limit = limit
        self._pack: PackFile | None = None
        self._sealer: ThreadPoolExecutor | None = None
        self._sealing: list[Future[None]] = []
        self.sealed: dict[str, list[tuple[bytes, Located]]] = {}  # pack → its chunks (for the map)

    def add(self, digest: bytes, stored: Buffer | list[bytes], raw_length: int, codec: int) -> None:
        """Append a chunk's stored bytes (or their parts, in order: not joined first)."""
        if self._pack is None:
            self._pack = PackFile(*self.temp_file())
        self._pack.add(digest, stored, raw_length, codec)
        if self._pack.size >= self.limit:
            pack, self._pack = self._pack, None
            self._in_background(lambda: self._install(pack.path, pack.close(sync=True), pack.rows))

    def adopt(self, path: Path, name: str, rows: list[Row]) -> None:
        """Seal the whole pack at `path` (in `tmp`, written and closed by a worker process,
        `name` the blake3 of its index) in the background: fsynced, then renamed into place."""

        def sync_and_install() -> None:
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            self._install(path, name, rows)

        self._in_background(sync_and_install)

    def seal(self) -> None:
        """Seal the pack being written and wait for those sealing: all durable and in place
        on return; nothing to do for an empty pack."""
        if self._pack is not None:
            pack, self._pack = self._pack, None
            self._install(pack.path, pack.close(sync=True), pack.rows)
        self._join(check=True)

    def abandon(self) -> None:
        """Drop the unsealed pack (after a failure): its chunks were never named. Packs already
        sealing end whole (or not at all): a pack no recipe names is pruned later."""
        self._join(check=False)
        if self._pack is not None:
            self._pack.discard()
            self._pack = None

    def _in_background(self, job: Any) -> None:
        if self._sealer is None:
            self._sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seal")
        self._sealing.append(self._sealer.submit(job))

    def _join(self, *, check: bool) -> None:
        pending, self._sealing = self._sealing, []
        errors = [f.exception() for f in pending]
        if self._sealer is not None:
            self._sealer.shutdown()
            self._sealer = None
        if check and (error := next((e for e in errors if e is not None), None)) is not None:
            raise error

    def _install(self, path: Path, name: str, rows: list[Row]) -> None:
        """Rename a durable pack into place under its name."""
        os.chmod(path, 0o444)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.rename(path, self.folder / f"{name}.pack")
        fsync_dir(self.folder)
        self.sealed[name] = [(d, Located(name, o, s, r, c)) for d, o, s, r, c in rows]


def read_index(path: Path) -> list[tuple[bytes, Located]]:
    """A pack's chunks, from its index; ValueError if the pack's end is not an index."""
    name = path.stem
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < _FOOTER.size:
            raise ValueError(f"{path} is too short to be a pack")
        f.seek(size - _FOOTER.size)
        length, magic = _FOOTER.unpack(f.read(_FOOTER.size))
        if magic != MAGIC or length % _ROW.size or length > size - _FOOTER.size:
            raise ValueError(f"{path} does not end in a pack index")
        f.seek(size - _FOOTER.size - length)
        table = f.read(length)
    found = []
    for digest, offset, stored, raw, codec in _ROW.iter_unpack(table):
        found.append((digest, Located(name, offset, stored, raw, codec)))
    return found
