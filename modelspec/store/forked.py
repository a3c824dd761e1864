"""Chunking and reassembly of one large file on forked worker processes.

Threads (pipeline.py) share one GIL, which every chunk's Python work takes (~50,000 chunks a
GiB): on 2 cores they stop near 350 MiB/s for a new file. Here worker processes (workers.py),
forked for the one file, work a region of ~32 MiB at a time: they cut and hash a region, and
encode the new chunks they meet, a new region's into a pack of their own. This process
stitches the regions' cuts into the cut one pass over the file gives (stitching.py), stores
the new chunks no worker packed, and seals the workers' packs (fsync, rename) on a thread, so
the disk writes while the workers encode.

Reassembly: workers decode regions of the recipe into slots of a memory map shared with this
process, which hashes and writes (or hands on) each region in order.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
from array import array
from collections import deque
from collections.abc import Callable, Container, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import accumulate, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from .cutting import Segment
from .packs import Located, PackWriter
from .pipeline import Coding, Encoder, collector_paused
from .stitching import Range, piece, regions, stitched, tasks
from .workers import Cut, cut_and_encode, decode, start_pool, worker_count

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

_PIECE = 256 << 10  # bytes hashed and then written while still in the core's cache
_AHEAD = 4  # tasks in flight: bounds the memory of the answers waiting to be stitched
_SHARED = 256 << 20  # at most this much memory shared with the workers for decoded regions
_DECODED = 8 << 20  # bytes a worker decodes per task
# Files this large are worked on by processes, smaller ones by threads: forking two workers
# costs ~10 ms, and a small file's chunks are done before the workers would be.
FORKED_FROM = 128 << 20


def wanted(size: int) -> bool:
    """Whether a file of `size` bytes goes to worker processes: a large one, with two cores or
    more, on Linux only (forked, sharing the open file; there a worker is sure to die with its
    parent, workers.py)."""
    return size >= FORKED_FROM and (os.cpu_count() or 1) > 1 and sys.platform.startswith("linux")


def pack_file(
    fd: int,
    data: memoryview,
    parts: list[Segment],
    average: int,
    known: Container[bytes],
    coding: Coding,
    writer: PackWriter,
    *,
    hash_whole: bool,
) -> tuple[list[tuple[bytes, int]], bytes]:
    """pipeline.pack_file on worker processes: `fd` is the file `data` maps. Cut it; the
    chunks not in `known` (nor earlier in the file) go into packs that `writer` seals; its
    chunk list, and with `hash_whole` the blake3 of the whole (else b"").

    Each worker encodes the new chunks of its ranges as it cuts them (`known` is its parent's,
    shared by the fork); a chunk of the single pass that no worker encoded (cut here at a
    seam) is encoded here. A worker's chunk that the pass does not have (before a seam's
    stitch) is left in its pack, for pruning: a few per region."""
    from pyfastcdc import FastCDC

    cdc = FastCDC(average)
    chunks: list[tuple[bytes, int]] = []
    seen: set[bytes] = set()
    packed: set[bytes] = set()  # new chunks in workers' packs
    inline: dict[bytes, tuple[bytes, int, int]] = {}  # new chunks workers encoded and sent back
    temps: dict[Future[Cut], Path] = {}
    encoder = Encoder(coding)

    def submit(pool: ProcessPoolExecutor, task: list[Range]) -> Future[Cut]:
        temp_fd, temp = writer.temp_file()  # ours: a worker only writes into it
        os.close(temp_fd)
        future = pool.submit(cut_and_encode, fd, len(data), task, os.fspath(temp))
        temps[future] = temp
        return future

    def receive(future: Future[Cut]) -> list[tuple[bytes, bytes]]:
        cut = future.result()
        temp = temps.pop(future)
        if cut.pack:
            writer.adopt(temp, cut.pack, cut.rows)
            packed.update(row[0] for row in cut.rows)
        else:
            temp.unlink()
            inline.update((chunk, (stored, raw, codec)) for chunk, stored, raw, codec in cut.inline)
        return cut.ranges

    def store(part: Segment, offset: int, length: int, chunk: bytes) -> None:
        if chunk in packed:
            return
        held = inline.pop(chunk, None)
        if held is not None:
            writer.add(chunk, *held)
            return
        with data[offset : offset + length] as raw:
            stored, codec = encoder(raw, piece(part, offset, length))
            writer.add(chunk, raw if stored is None else stored, length, codec)

    ranges = [r for part in parts if part.end - part.start > cdc.min_size for r in regions(part)]
    with (
        collector_paused(),
        start_pool(known=known, coding=coding, average=average) as pool,
        ThreadPoolExecutor(1, thread_name_prefix="hash") as hashing,
    ):
        whole = hashing.submit(lambda: blake3.blake3(data).digest()) if hash_whole else None
        try:
            cut = _in_order(pool, tasks(ranges), submit, receive)
            for part, offsets, lengths, digests in stitched(data, parts, cdc, cut):
                chunks += zip(digests, lengths, strict=True)
                for k in [k for k, chunk in enumerate(digests) if chunk not in known]:
                    if digests[k] not in seen:
                        seen.add(digests[k])
                        store(part, offsets[k], lengths[k], digests[k])
            return chunks, whole.result() if whole is not None else b""
        finally:
            for temp in temps.values():  # a failure: the workers' unsealed packs go
                temp.unlink(missing_ok=True)


def _in_order(
    pool: ProcessPoolExecutor,
    tasks: Iterator[list[Range]],
    submit: Any,
    receive: Any,
) -> Iterator[tuple[array[int], bytes]]:
    """Each range's chunk ends and blake3s, in order, from tasks run on the workers at most
    _AHEAD tasks ahead of the caller (their answers' memory)."""
    pending: deque[Future[Cut]] = deque(submit(pool, task) for task in islice(tasks, _AHEAD))
    while pending:
        found = receive(pending.popleft())
        pending.extend(submit(pool, task) for task in islice(tasks, 1))
        for ends, digests in found:
            yield array("Q", ends), digests


def reassemble(
    fd: int, places: list[Located], lengths: list[int], packs: Path, fill: Callable[[range, memoryview], None]
) -> bytes:
    """pipeline.reassemble on worker processes: the chunks (where they lie, their raw lengths)
    written at their offsets in the file `fd`, ftruncated to their sum; the blake3 of what was
    written, hashed in order. `fill` as for `decoded`."""
    os.ftruncate(fd, sum(lengths))
    hasher = blake3.blake3()
    offset = 0
    with contextlib.closing(decoded(places, lengths, packs, fill)) as regions:
        for region in regions:
            _hash_and_write(hasher, fd, region, offset)
            offset += len(region)
    return hasher.digest()


def decoded(
    places: list[Located], lengths: list[int], packs: Path, fill: Callable[[range, memoryview], None]
) -> Generator[memoryview, None, None]:
    """The file's bytes in order, a region at a time (each valid until the next is asked for),
    decoded by worker processes into slots of a memory map they share with this process.
    A region a worker could not read (a pack repacked meanwhile) is decoded here by
    `fill(chunks, region)`, the indexes of its chunks, which looks again.

    (Writing a file, this process writes the regions: two processes writing one file contend
    for its inode's lock, measured as a third more CPU.)"""
    offsets = [0, *accumulate(lengths)]
    batches: list[range] = []
    first = 0
    for last in range(1, len(lengths) + 1):
        if offsets[last] - offsets[first] >= _DECODED or last == len(lengths):
            batches.append(range(first, last))
            first = last
    if not batches:
        return
    slot = max(offsets[b.stop] - offsets[b.start] for b in batches)
    # Two regions a worker (one decoding, one waiting its turn), within _SHARED bytes.
    slots = min(len(batches), 2 * worker_count(), max(2, _SHARED // slot))
    with (
        mmap.mmap(-1, slots * slot) as shared,
        memoryview(shared) as view,
        collector_paused(),
        start_pool(shared) as pool,
    ):
        pending: deque[Future[bool]] = deque()

        def submit(k: int) -> None:  # batch k into slot k % slots
            b = batches[k]
            work = (os.fspath(packs), places[b.start : b.stop], lengths[b.start : b.stop], k % slots * slot)
            pending.append(pool.submit(decode, *work))

        for k in range(slots):
            submit(k)
        for k, batch in enumerate(batches):
            read = pending.popleft().result()
            start, size = k % slots * slot, offsets[batch.stop] - offsets[batch.start]
            with view[start : start + size] as region:
                if not read:
                    fill(batch, region)
                yield region
            if k + slots < len(batches):
                submit(k + slots)


def _hash_and_write(hasher: Any, fd: int, region: memoryview, offset: int) -> None:
    """Hash and write a region a piece at a time: each piece is written while the hash has
    left it in the core's cache (a whole region is copied from memory, 2-3x the kernel's time)."""
    for at in range(0, len(region), _PIECE):
        with region[at : at + _PIECE] as piece:
            hasher.update(piece)
            done = 0
            while done < len(piece):
                done += os.pwrite(fd, piece[done:], offset + at + done)
