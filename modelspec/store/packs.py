"""Packs: immutable files of chunks, each pack named by the blake3 of its bytes.

    <chunk bytes, stored>…  <index: one 49-byte row per chunk>  <u64 index length> MSPACK01

An index row is the chunk's blake3 (32 bytes, of its raw bytes), its offset and stored
length in the pack, its raw length and its codec: stored raw, zstd, or (codec 2, 4, 8) the
bytes of floats of that size grouped (byte 0 of every number, then byte 1, …) with only the
top bytes compressed (sign and exponent: the mantissas of weights do not compress). A chunk
is compressed only when that saves at least `min_saving` of it: weights compress little.

A pack is written in the store's `tmp/`, fsynced and renamed into `packs/` when complete,
so a pack in `packs/` is always whole; a pack is never changed after.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from .cutting import Piece
from .files import fsync_dir

MAGIC = b"MSPACK01"
_ROW = struct.Struct("<32sQIIB")
_FOOTER = struct.Struct("<Q8s")
_TOP = struct.Struct("<IB")
_Item = tuple[bytes | memoryview, int, int]  # a chunk's raw bytes, element size and alignment
RAW, ZSTD = 0, 1  # codecs; 2, 4 and 8 are zstd of bytes grouped by that element size


@dataclass(frozen=True, slots=True)
class Located:
    """Where a chunk lies: its pack, offset and stored length, raw length and codec."""

    pack: str
    offset: int
    stored: int
    raw: int
    codec: int


def encode(
    raw: bytes | memoryview, element: int, min_saving: float, compressor: Any, align: int = 0
) -> tuple[bytes, int]:
    """The bytes to store for a chunk and their codec: compressed only when it pays. `align`:
    how many leading bytes end a number begun in the chunk before (floats only)."""
    if element > 1 and len(raw) >= align + 2 * element:
        # Floats: only the top byte of each number (sign and exponent) compresses; zstd over a
        # whole small chunk cannot tell the planes apart, so the top plane is compressed alone.
        data = bytes(raw)
        whole = align + (len(data) - align) // element * element
        planes = [data[i:whole:element] for i in range(align, align + element)]
        top = compressor.compress(planes[-1])
        packed = b"".join([_TOP.pack(len(top), align), top, data[:align], *planes[:-1], data[whole:]])
        codec = element
    else:
        packed, codec = compressor.compress(raw), ZSTD
    if len(packed) <= len(raw) * (1 - min_saving):
        return packed, codec
    return bytes(raw), RAW


@contextlib.contextmanager
def encoders(
    level: int, min_saving: float
) -> Iterator[Callable[[list[tuple[bytes | memoryview, int, int]]], list[Any]]]:
    """A function `encode`-ing a batch of (raw, element, align) on up to four threads, each
    with its own compressor (zstd releases the GIL; a compressor is not shared by threads)."""
    from concurrent.futures import ThreadPoolExecutor

    import zstandard  # only where files are chunked: not on the CLI's start-up

    local = threading.local()

    def one(item: _Item) -> tuple[bytes, int]:
        compressor = getattr(local, "compressor", None)
        if compressor is None:
            compressor = local.compressor = zstandard.ZstdCompressor(level=level)
        raw, element, align = item
        return encode(raw, element, min_saving, compressor, align)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="chunks") as pool:
        yield lambda items: list(pool.map(one, items))


def decode(stored: bytes, codec: int, raw_length: int, decompressor: Any) -> bytes:
    if codec == RAW:
        return stored
    if codec == ZSTD:
        return bytes(decompressor.decompress(stored, max_output_size=raw_length))
    length, align = _TOP.unpack_from(stored)
    count = (raw_length - align) // codec
    top = decompressor.decompress(stored[_TOP.size : _TOP.size + length], max_output_size=count)
    rest = stored[_TOP.size + length :]
    head, rest = rest[:align], rest[align:]
    lower = (codec - 1) * count
    return head + ungroup(rest[:lower] + top + rest[lower:], codec)


def group(raw: bytes | memoryview, element: int) -> bytes:
    """Byte i of every element together, for i = 0…element-1; a partial element's tail last."""
    data = bytes(raw)
    whole = len(data) - len(data) % element
    return b"".join(data[i:whole:element] for i in range(element)) + data[whole:]


def ungroup(data: bytes, element: int) -> bytes:
    whole = len(data) - len(data) % element
    count = whole // element
    out = bytearray(data)
    for i in range(element):
        out[i:whole:element] = data[i * count : (i + 1) * count]
    return bytes(out)


class PackWriter:
    """Appends chunks to a pack in `tmp`; `seal` makes it a whole pack in `folder` (and the
    next chunk starts another). Packs are sealed at `limit` bytes."""

    def __init__(self, folder: Path, temp_file: Any, limit: int) -> None:
        self.folder = folder
        self._temp_file = temp_file  # () -> (fd, path) in the store's tmp/ (owned by this process)
        self.limit = limit
        self._file: Any = None
        self._path: Path | None = None
        self._rows: list[tuple[bytes, int, int, int, int]] = []
        self._hasher = blake3.blake3()
        self._size = 0
        self.sealed: dict[str, list[tuple[bytes, Located]]] = {}  # pack → its chunks (for the map)

    def add(self, digest: bytes, stored: bytes, raw_length: int, codec: int) -> None:
        if self._file is None:
            fd, self._path = self._temp_file()
            self._file = os.fdopen(fd, "wb")
        self._file.write(stored)
        self._hasher.update(stored)
        self._rows.append((digest, self._size, len(stored), raw_length, codec))
        self._size += len(stored)
        if self._size >= self.limit:
            self.seal()

    def seal(self) -> None:
        """Write the index, fsync, rename into place; nothing to do for an empty pack."""
        if self._file is None or self._path is None:
            return
        index = b"".join(_ROW.pack(*row) for row in self._rows) + _FOOTER.pack(len(self._rows) * _ROW.size, MAGIC)
        self._file.write(index)
        self._hasher.update(index)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        name = self._hasher.hexdigest()
        os.chmod(self._path, 0o444)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.rename(self._path, self.folder / f"{name}.pack")
        fsync_dir(self.folder)
        self.sealed[name] = [(d, Located(name, o, s, r, c)) for d, o, s, r, c in self._rows]
        self._file, self._path, self._rows, self._size = None, None, [], 0
        self._hasher = blake3.blake3()

    def abandon(self) -> None:
        """Drop the unsealed pack (after a failure): its chunks were never named."""
        if self._file is not None and self._path is not None:
            self._file.close()
            self._path.unlink(missing_ok=True)
        self._file, self._path, self._rows, self._size = None, None, [], 0


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


def flush_batch(batch: list[tuple[bytes, memoryview, Piece]], encode_all: Any, writer: PackWriter) -> None:
    """Encode a batch of new chunks together (on the encoder's threads), then append them in
    order; each chunk's view of the file is released once written."""
    encoded = encode_all([(raw, piece.element, piece.align) for _c, raw, piece in batch])
    for (chunk, raw, piece), (stored, codec) in zip(batch, encoded, strict=True):
        writer.add(chunk, stored, piece.length, codec)
        raw.release()
    batch.clear()
