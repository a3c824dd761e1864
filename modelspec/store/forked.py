"""Chunking and reassembly of one large file on forked worker processes.

Threads (pipeline.py) share one GIL, which every chunk's Python work takes (~50,000 chunks a
GiB): on 2 cores they stop near 350 MiB/s for a new file. Here worker processes, forked for
the one file (they share its open descriptor and this process's modules), work a region of
~32 MiB at a time: they cut and hash a region, and encode a region's worth of new chunks into
a pack of their own in the store's tmp/. This process stitches the regions' cuts into the cut
one pass over the file gives, decides which chunks are new, and seals the workers' packs
(fsync, rename) on a thread, so the disk writes while the workers encode. Workers never rename
anything: killed at any instant, they leave temp files that name this process's token, which
the next clean removes once it is gone.

Stitching. FastCDC chooses a chunk's end from the bytes after its start — at most max_size of
them, fewer where the buffer ends sooner. So a region's chunk is the single pass's chunk when
it starts where the single pass has a boundary and has max_size bytes of region ahead (or the
region ends where the segment does): a start "the region trusts". From the first start it
does not trust, this process cuts on through the whole segment until it reaches a start the
next region trusts; from there the two agree. A few chunks a region are cut twice.

Reassembly: workers decode regions of the recipe into the output file at their offsets; this
process reads each region back as it is done, in order, to hash the file.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Container, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import accumulate, islice, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import blake3

from .cutting import Piece, Segment
from .owner import forget_inherited
from .packs import Located, PackFile, PackWriter, Row, decode_runs
from .pipeline import Coding, Encoder, collector_paused

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

_REGION = 32 << 20  # bytes cut, encoded into one pack, or decoded per task
_PIECE = 256 << 10  # bytes hashed and then written while still in the core's cache
_AHEAD = 4  # tasks in flight: bounds the memory of the answers waiting to be stitched
_OWN_PACK = 8 << 20  # a worker's new chunks of one task that come to this many bytes get a pack of their own
# Files this large are worked on by processes, smaller ones by threads: forking two workers
# costs ~10 ms, and a small file's chunks are done before the workers would be.
FORKED_FROM = 128 << 20


def available() -> bool:
    """Processes pay off with two cores or more, and are forked (sharing the open file)."""
    import multiprocessing

    return (os.cpu_count() or 1) > 1 and "fork" in multiprocessing.get_all_start_methods()


class _Range(NamedTuple):
    """Bytes [start, end) of a segment, cut by one worker on their own."""

    segment: Segment
    start: int
    end: int


class _Cut(NamedTuple):
    """A worker's answer for one task: each range's chunk ends (u64s) and blake3s; the new
    chunks it met, encoded — in a pack of its own at the task's temp path (`pack`, its name)
    when they came to _OWN_PACK bytes, else `inline` (blake3, stored bytes, raw length, codec)."""

    ranges: list[tuple[bytes, bytes]]
    pack: str
    rows: list[Row]
    inline: list[tuple[bytes, bytes, int, int]]


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
    temps: dict[Future[_Cut], Path] = {}
    encoder = Encoder(coding)

    def submit(pool: ProcessPoolExecutor, task: list[_Range]) -> Future[_Cut]:
        temp_fd, temp = writer.temp_file()  # ours: a worker only writes into it
        os.close(temp_fd)
        future = pool.submit(_cut_and_encode, fd, len(data), task, os.fspath(temp))
        temps[future] = temp
        return future

    def receive(future: Future[_Cut]) -> list[tuple[bytes, bytes]]:
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
            stored, codec = encoder(raw, _piece(part, offset, length))
            writer.add(chunk, raw if stored is None else stored, length, codec)

    ranges = [r for part in parts if part.end - part.start > cdc.min_size for r in _regions(part)]
    with (
        collector_paused(),
        _pool(known=known, coding=coding, average=average) as pool,
        ThreadPoolExecutor(1, thread_name_prefix="hash") as hashing,
    ):
        whole = hashing.submit(lambda: blake3.blake3(data).digest()) if hash_whole else None
        try:
            cut = _in_order(pool, _tasks(ranges), submit, receive)
            for part, offsets, lengths, digests in _stitched(data, parts, cdc, cut):
                chunks += zip(digests, lengths, strict=True)
                for k in [k for k, chunk in enumerate(digests) if chunk not in known]:
                    if digests[k] not in seen:
                        seen.add(digests[k])
                        store(part, offsets[k], lengths[k], digests[k])
            return chunks, whole.result() if whole is not None else b""
        finally:
            for temp in temps.values():  # a failure: the workers' unsealed packs go
                temp.unlink(missing_ok=True)


def _regions(part: Segment) -> list[_Range]:
    """A segment in about equal ranges of at least _REGION bytes (one if it is smaller)."""
    span = part.end - part.start
    count = max(1, span // _REGION)
    edges = [part.start + span * k // count for k in range(count)] + [part.end]
    return [_Range(part, a, b) for a, b in pairwise(edges)]


def _tasks(ranges: list[_Range]) -> Iterator[list[_Range]]:
    """Ranges grouped into tasks of about _REGION bytes (small tensors share a task)."""
    task: list[_Range] = []
    bytes_ = 0
    for r in ranges:
        task.append(r)
        bytes_ += r.end - r.start
        if bytes_ >= _REGION:
            yield task
            task, bytes_ = [], 0
    if task:
        yield task


def _in_order(
    pool: ProcessPoolExecutor,
    tasks: Iterator[list[_Range]],
    submit: Any,
    receive: Any,
) -> Iterator[tuple[array[int], bytes]]:
    """Each range's chunk ends and blake3s, in order, from tasks run on the workers at most
    _AHEAD tasks ahead of the caller (their answers' memory)."""
    pending: deque[Future[_Cut]] = deque(submit(pool, task) for task in islice(tasks, _AHEAD))
    while pending:
        found = receive(pending.popleft())
        pending.extend(submit(pool, task) for task in islice(tasks, 1))
        for ends, digests in found:
            yield array("Q", ends), digests


class _Run(NamedTuple):
    """Consecutive chunks of the single pass in one segment: their offsets, lengths, blake3s."""

    segment: Segment
    offsets: list[int]
    lengths: list[int]
    digests: list[bytes]


def _stitched(
    data: memoryview, parts: list[Segment], cdc: Any, cut: Iterator[tuple[array[int], bytes]]
) -> Iterator[_Run]:
    """Every chunk of the file in order, in runs: the single pass's cut, from the ranges' cuts
    (`cut`, in order) and a few chunks cut again here at each seam."""
    for part in parts:
        if part.end - part.start <= cdc.min_size:
            with data[part.start : part.end] as raw:
                yield _Run(part, [part.start], [part.end - part.start], [blake3.blake3(raw).digest()])
            continue
        position = part.start  # where the single pass has reached: a boundary of it
        for r in _regions(part):
            ends, digests = next(cut)
            starts = [r.start, *ends[:-1]]
            trusted = _trusted(r, cdc.max_size)
            while position < part.end and position <= trusted:
                i = bisect_left(starts, position)
                if i < len(starts) and starts[i] == position:  # in step: its trusted chunks are the pass's
                    last = bisect_right(starts, trusted)
                    offsets = starts[i:last]
                    lengths = [end - start for start, end in zip(offsets, ends[i:last], strict=True)]
                    yield _Run(part, offsets, lengths, [digests[k : k + 32] for k in range(32 * i, 32 * last, 32)])
                    position = ends[last - 1]
                    break
                with data[position : part.end] as rest:  # out of step: the pass's next chunk, cut here
                    length = _first_cut(cdc, rest)
                    with rest[:length] as raw:
                        yield _Run(part, [position], [length], [blake3.blake3(raw).digest()])
                position += length
        if position != part.end:
            raise RuntimeError(f"stitched chunks end at {position}, their segment at {part.end}")


def _trusted(r: _Range, max_size: int) -> int:
    """The last start in `r` whose chunk is the single pass's when the pass reaches it."""
    return r.end - max_size if r.end < r.segment.end else r.end


def _first_cut(cdc: Any, rest: memoryview) -> int:
    """The length of the chunk FastCDC cuts at the start of `rest`."""
    chunker = cdc.cut_buf(rest)
    length: int = next(chunker).length
    del chunker  # it holds a view of `rest`, which the caller releases
    return length


def _piece(part: Segment, offset: int, length: int) -> Piece:
    align = -(offset - part.start) % part.element if part.element else 0
    return Piece(offset, length, part.element, align)


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
        if offsets[last] - offsets[first] >= _REGION or last == len(lengths):
            batches.append(range(first, last))
            first = last
    if not batches:
        return
    slot = max(offsets[b.stop] - offsets[b.start] for b in batches)
    slots = min(len(batches), 2 * _workers())
    with mmap.mmap(-1, slots * slot) as shared, memoryview(shared) as view, collector_paused(), _pool(shared) as pool:
        pending: deque[Future[bool]] = deque()

        def decode(k: int) -> None:  # batch k into slot k % slots
            b = batches[k]
            work = (os.fspath(packs), places[b.start : b.stop], lengths[b.start : b.stop], k % slots * slot)
            pending.append(pool.submit(_decode, *work))

        for k in range(slots):
            decode(k)
        for k, batch in enumerate(batches):
            read = pending.popleft().result()
            start, size = k % slots * slot, offsets[batch.stop] - offsets[batch.start]
            with view[start : start + size] as region:
                if not read:
                    fill(batch, region)
                yield region
            if k + slots < len(batches):
                decode(k + slots)


def _hash_and_write(hasher: Any, fd: int, region: memoryview, offset: int) -> None:
    """Hash and write a region a piece at a time: each piece is written while the hash has
    left it in the core's cache (a whole region is copied from memory, 2-3x the kernel's time)."""
    for at in range(0, len(region), _PIECE):
        with region[at : at + _PIECE] as piece:
            hasher.update(piece)
            done = 0
            while done < len(piece):
                done += os.pwrite(fd, piece[done:], offset + at + done)


def _workers() -> int:
    return min(8, os.cpu_count() or 1)


@contextlib.contextmanager
def _pool(
    shared: mmap.mmap | None = None,
    known: Container[bytes] = frozenset(),
    coding: Coding | None = None,
    average: int = 0,
) -> Iterator[ProcessPoolExecutor]:
    """Worker processes forked for one file (one per core, up to 8), gone when it is done.
    They inherit (not sent): `shared`, a memory map they write into; `known`, the chunks the
    store has; how to cut (`average`) and encode (`coding`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # What the workers use, imported once here rather than once in each of them (~0.2 CPU s).
    import numpy  # noqa: F401
    import pyfastcdc  # noqa: F401
    import zstandard  # noqa: F401

    pool = ProcessPoolExecutor(
        max_workers=_workers(),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(os.getpid(), shared, known, coding, average),
    )
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# In a worker: what its parent gave it (see _pool).
_shared: memoryview | None = None
_known: Container[bytes] = frozenset()
_encoder: Encoder | None = None
_cdc: Any = None


def _start_worker(
    parent: int, shared: mmap.mmap | None, known: Container[bytes], coding: Coding | None, average: int
) -> None:
    """In a new worker: Ctrl-C is the parent's to handle (it stops the pool), the worker dies
    with the parent's thread that forked it (a killed build leaves no worker waiting), and it
    holds none of the parent's owner locks (owner.py: the parent's temp files are cleaned the
    moment it is gone)."""
    global _shared, _known, _encoder, _cdc
    forget_inherited()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):  # Linux only; elsewhere a worker ends when its queue does
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    _shared = memoryview(shared) if shared is not None else None
    _known = known
    if coding is not None:
        from pyfastcdc import FastCDC

        _encoder, _cdc = Encoder(coding), FastCDC(average)


@contextlib.contextmanager
def _mapped(fd: int, size: int) -> Iterator[memoryview]:
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as view, memoryview(view) as data:
        yield data


def _cut_and_encode(fd: int, size: int, ranges: list[_Range], temp: str) -> _Cut:
    """On a worker: FastCDC over each range of the file on its own, and the chunks it trusts
    that its parent's store lacks (nor this task met before) encoded (see `_Cut`)."""
    assert _cdc is not None, "a cutting worker has its parent's settings"
    out = _NewChunks(temp)
    try:
        with _mapped(fd, size) as data:
            found = []
            for r in ranges:
                with data[r.start : r.end] as region:
                    found.append(_cut_range(region, r, out))
        return out.finish(found)
    except BaseException:
        out.discard()
        raise


def _cut_range(region: memoryview, r: _Range, out: _NewChunks) -> tuple[bytes, bytes]:
    assert _encoder is not None and _cdc is not None
    ends = array("Q")
    digests = bytearray()
    trusted = _trusted(r, _cdc.max_size)
    for chunk in _cdc.cut_buf(region):
        offset = r.start + chunk.offset
        ends.append(offset + chunk.length)
        digest = blake3.blake3(chunk.data).digest()
        digests += digest
        if offset <= trusted and digest not in _known and digest not in out.seen:
            stored, codec = _encoder(chunk.data, _piece(r.segment, offset, chunk.length))
            out.add(digest, chunk.data if stored is None else stored, chunk.length, codec)
    return ends.tobytes(), bytes(digests)  # the chunker's views of `region` are gone with this frame


class _NewChunks:
    """The new chunks a worker encodes for one task: held in memory until they come to
    _OWN_PACK bytes, then written to a pack at the task's temp path (and from there on as they
    come, while their bytes are still in the core's cache). A region of a new file fills a
    pack of its own; a few changed chunks go back to the parent, which packs them with the
    rest (no small packs)."""

    def __init__(self, temp: str) -> None:
        self._temp = temp
        self._held: list[tuple[bytes, bytes, int, int]] = []
        self._size = 0
        self._pack: PackFile | None = None
        self.seen: set[bytes] = set()

    def add(self, chunk: bytes, stored: memoryview | list[Any], raw_length: int, codec: int) -> None:
        self.seen.add(chunk)
        if self._pack is not None:
            self._pack.add(chunk, stored, raw_length, codec)
            return
        held = bytes(stored) if isinstance(stored, memoryview) else b"".join(stored)
        self._held.append((chunk, held, raw_length, codec))
        self._size += len(held)
        if self._size >= _OWN_PACK:
            self._pack = PackFile(os.open(self._temp, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC), Path(self._temp))
            for chunk, held, raw_length, codec in self._held:
                self._pack.add(chunk, held, raw_length, codec)
            self._held = []

    def finish(self, ranges: list[tuple[bytes, bytes]]) -> _Cut:
        if self._pack is None:
            return _Cut(ranges, "", [], self._held)
        return _Cut(ranges, self._pack.close(sync=False), self._pack.rows, [])

    def discard(self) -> None:
        if self._pack is not None:
            self._pack.discard()


def _decode(packs: str, places: list[Located], lengths: list[int], start: int) -> bool:
    """On a worker: decode chunks (`places`: where each lies in `packs`; their raw lengths) into
    the shared map, end to end from `start`; False if a pack is gone (repacked meanwhile)."""
    import zstandard

    assert _shared is not None, "a decoding worker shares its parent's map"
    decompressor = zstandard.ZstdDecompressor()
    handles: dict[str, int] = {}

    def fd_of(pack: str) -> int:
        if pack not in handles:
            handles[pack] = os.open(os.path.join(packs, f"{pack}.pack"), os.O_RDONLY | os.O_CLOEXEC)
        return handles[pack]

    try:
        with _shared[start : start + sum(lengths)] as out:
            decode_runs(places, lengths, out, decompressor, fd_of)
        return True
    except FileNotFoundError:
        return False
    finally:
        for handle in handles.values():
            os.close(handle)
