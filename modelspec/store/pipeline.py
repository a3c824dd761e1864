"""Chunking and reassembly of one large file on worker threads.

Ingest: the main thread cuts the file (FastCDC) into batches of pieces; workers hash each
piece and encode those no pack holds, while the main thread cuts the next batch and appends
finished batches to packs in file order. Reassembly: workers read and decode a batch of chunks
into one buffer and write it at its offset in the file (the recipe gives every offset), and
the main thread hashes the batches in order. blake3, zstd, FastCDC and file I/O release the
GIL, so all of this overlaps.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections import deque
from collections.abc import Callable, Container, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Any, TypeVar

import blake3

from .cutting import Piece, Segment, cut
from .packs import RAW, PackWriter, encode_or_raw, plane_compressor

_T = TypeVar("_T")
_BATCH = 512  # pieces per task (~10 MiB): a task's overhead is small beside its work
_WRITE = 8  # chunks decoded and written together (~160 KiB): still in the core's cache when written
_AHEAD = 4  # batches in flight: bounds the memory of encoded chunks waiting to be written
_KNOWN = -1  # the codec of a chunk some pack already holds: nothing to write
_PROBES = 4  # chunks in a row that do not compress, after which only every _PROBE_EVERY-th is tried
_PROBE_EVERY = 16

Encoded = tuple[bytes, list[bytes] | None, int]  # a piece's blake3, its stored parts (None: raw), codec


@dataclass(frozen=True, slots=True)
class Coding:
    """How new chunks are compressed: zstd `level`, kept only when it saves `min_saving`."""

    level: int
    min_saving: float


class Encoder:
    """Encodes new chunks with compressors of its own (one per thread or process). Data that
    does not compress is sampled, not all tried: after _PROBES chunks in a row stored raw, only
    every _PROBE_EVERY-th is."""

    def __init__(self, coding: Coding) -> None:
        import zstandard  # only where files are chunked: not on the CLI's start-up

        self._coding = coding
        self._zstd, self._plane = zstandard.ZstdCompressor(level=coding.level), plane_compressor(coding.level)
        self._misses = self._count = 0

    def __call__(self, raw: memoryview, piece: Piece) -> tuple[list[bytes] | None, int]:
        """The stored parts of a chunk (None: stored raw) and its codec."""
        self._count += 1
        if self._misses >= _PROBES and self._count % _PROBE_EVERY:
            return None, RAW
        stored, codec = encode_or_raw(raw, piece.element, self._coding.min_saving, self._zstd, piece.align, self._plane)
        self._misses = self._misses + 1 if codec == RAW else 0
        return stored, codec


def workers() -> ThreadPoolExecutor:
    """One worker fewer than the cores (at least one, at most three): the calling thread cuts or
    hashes meanwhile, and every chunk's Python work takes the GIL, whose handovers between more
    threads than cores cost more than they overlap. On 2 cores, one worker instead of two:
    new-file ingest 265-304 -> 314-346 MiB/s (5.2-5.9 -> 4.1-4.5 CPU s/GiB), 5%-changed
    742-821 -> 919-975 MiB/s, cold checkout 384-440 -> 475-496 MiB/s (3.6-4.1 -> 2.4-2.7 CPU
    s/GiB), 1 GiB, interleaved runs."""
    return ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1) - 1), thread_name_prefix="chunks")


def pack_file(
    data: memoryview,
    parts: list[Segment],
    average: int,
    known: Container[bytes],
    coding: Coding,
    writer: PackWriter,
    *,
    hash_whole: bool,
) -> tuple[list[tuple[bytes, int]], bytes]:
    """Cut `data`; append the chunks not in `known` (nor earlier in the file) to `writer`, in
    file order. Its chunk list, and with `hash_whole` the blake3 of the whole (else b"")."""
    local = threading.local()

    def encode_batch(pieces: list[Piece]) -> list[Encoded]:  # on a worker
        if not hasattr(local, "encoder"):
            local.encoder = Encoder(coding)
        found: list[Encoded] = []
        for piece in pieces:
            with data[piece.offset : piece.offset + piece.length] as raw:
                chunk = blake3.blake3(raw).digest()
                if chunk in known:
                    found.append((chunk, None, _KNOWN))
                    continue
                found.append((chunk, *local.encoder(raw, piece)))
        return found

    chunks: list[tuple[bytes, int]] = []
    new: set[bytes] = set()

    def append(pieces: list[Piece], encoded: list[Encoded]) -> None:  # on this thread, in file order
        for piece, (chunk, stored, codec) in zip(pieces, encoded, strict=True):
            chunks.append((chunk, piece.length))
            if codec == _KNOWN or chunk in new:
                continue
            new.add(chunk)
            if stored is None:
                with data[piece.offset : piece.offset + piece.length] as raw:
                    writer.add(chunk, raw, piece.length, RAW)
            else:
                writer.add(chunk, stored, piece.length, codec)

    with collector_paused(), workers() as pool, ThreadPoolExecutor(1, thread_name_prefix="hash") as hashing:
        # The whole file's blake3 on a thread of its own: one call that holds no GIL, which would
        # keep the only worker from the batches (2 cores) for its ~0.3 s a GiB.
        whole = hashing.submit(lambda: blake3.blake3(data).digest()) if hash_whole else None
        pending: deque[tuple[list[Piece], Future[list[Encoded]]]] = deque()
        pieces = cut(data, parts, average)
        try:
            for batch in _batches(pieces):
                pending.append((batch, pool.submit(encode_batch, batch)))
                if len(pending) > _AHEAD:
                    batch, future = pending.popleft()
                    append(batch, future.result())
            while pending:
                batch, future = pending.popleft()
                append(batch, future.result())
            return chunks, whole.result() if whole is not None else b""
        finally:
            for _batch, future in pending:
                future.cancel()
            pieces.close()  # its slices of the map go with it


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector paused: a GiB is ~100,000 small objects, none in a cycle, and
    each collection they trigger walks every object alive (the store's chunk map among them):
    8% of a new file's ingest, measured."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _batches(pieces: Iterator[Piece]) -> Iterator[list[Piece]]:
    while batch := list(islice(pieces, _BATCH)):
        yield batch


def reassemble(
    fd: int,
    chunks: list[tuple[bytes, int]],
    size: int,
    read_into: Callable[[list[tuple[bytes, int]], memoryview, Any], None],
) -> bytes:
    """Write a file's chunks into `fd`, a batch at a time: workers decode a batch's chunks into
    one buffer with `read_into(chunks, buffer, decompressor)` and write it at its offset in one
    call; the blake3 of the batches, in file order (a chunk that decodes short or wrong leaves
    its bytes wrong: the caller checks the digest against the file's)."""
    import zstandard

    local = threading.local()
    offsets = [0, *accumulate(length for _c, length in chunks)]
    os.ftruncate(fd, size)  # the file's extent at once: writes at any offset, in any order

    def write_batch(start: int) -> bytearray:  # on a worker, with its own decompressor
        if not hasattr(local, "zstd"):
            local.zstd = zstandard.ZstdDecompressor()
        end = min(start + _BATCH, len(chunks))
        out = bytearray(offsets[end] - offsets[start])
        with memoryview(out) as view:
            # Written a part at a time, while its bytes are still in the core's cache: a whole
            # batch at once is copied to the page cache from memory, 2-3x the kernel's time (measured).
            for first in range(start, end, _WRITE):
                last = min(first + _WRITE, end)
                part = view[offsets[first] - offsets[start] : offsets[last] - offsets[start]]
                read_into(chunks[first:last], part, local.zstd)
                done = 0
                while done < len(part):
                    done += os.pwrite(fd, part[done:], offsets[first] + done)
        return out

    hasher = blake3.blake3()
    # Each batch hashed here, in order, as soon as it is written, while the workers decode the next.
    with collector_paused(), workers() as pool:
        for written in _in_order(pool, write_batch, range(0, len(chunks), _BATCH)):
            hasher.update(written)
    return hasher.digest()


def decoded(
    chunks: list[tuple[bytes, int]], read_into: Callable[[list[tuple[bytes, int]], memoryview, Any], None]
) -> Generator[bytearray, None, None]:
    """A file's bytes in order, a batch of chunks at a time, decoded on workers (`read_into`, as
    for `reassemble`) while the caller uses the batches before."""
    import zstandard

    local = threading.local()

    def decode_batch(start: int) -> bytearray:  # on a worker, with its own decompressor
        if not hasattr(local, "zstd"):
            local.zstd = zstandard.ZstdDecompressor()
        batch = chunks[start : start + _BATCH]
        out = bytearray(sum(length for _c, length in batch))
        with memoryview(out) as view:
            read_into(batch, view, local.zstd)
        return out

    with collector_paused(), workers() as pool:
        yield from _in_order(pool, decode_batch, range(0, len(chunks), _BATCH))


def _in_order(pool: ThreadPoolExecutor, task: Callable[[int], _T], starts: Iterable[int]) -> Iterator[_T]:
    """`task(start)` of each start on the pool's workers, their results in order, at most
    _AHEAD batches ahead of the caller (their memory); what is still pending when the caller
    stops is cancelled."""
    pending: deque[Future[_T]] = deque()
    try:
        for start in starts:
            pending.append(pool.submit(task, start))
            if len(pending) > _AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
