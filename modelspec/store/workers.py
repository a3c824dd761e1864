"""What runs in the worker processes that forked.py starts for one large file, and how they
start: forked (they share the file's descriptor and their parent's modules, chunk map and
settings, which are inherited, not sent), Ctrl-C left to the parent, dead with it.

A worker cuts and hashes ranges of the file and encodes the new chunks it meets (`cut_and_encode`),
or decodes chunks into a memory map it shares with its parent (`decode`). It writes packs only
into temp files its parent created and owns, and never renames one: killed at any instant, it
leaves temp files the next clean removes once the parent is gone.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
from array import array
from collections.abc import Container, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import blake3

from ..errors import StoreError
from .packs import Located, PackFile, Row, decode_runs
from .pipeline import Coding, Encoder
from .stitching import Range, last_trusted, piece

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

OWN_PACK = 8 << 20  # a worker's new chunks of one task that come to this many bytes get a pack of their own


class Cut(NamedTuple):
    """A worker's answer for one task: each range's chunk ends (u64s) and blake3s; the new
    chunks it met, encoded — in a pack of its own at the task's temp path (`pack`, its name)
    when they came to OWN_PACK bytes, else `inline` (blake3, stored bytes, raw length, codec)."""

    ranges: list[tuple[bytes, bytes]]
    pack: str
    rows: list[Row]
    inline: list[tuple[bytes, bytes, int, int]]


def worker_count() -> int:
    """One worker per core, up to 8: they share no GIL."""
    return min(8, os.cpu_count() or 1)


@contextlib.contextmanager
def start_pool(
    shared: mmap.mmap | None = None,
    known: Container[bytes] = frozenset(),
    coding: Coding | None = None,
    average: int = 0,
) -> Iterator[ProcessPoolExecutor]:
    """Worker processes forked for one file (one per core, up to 8), gone when it is done.
    They inherit (not sent): `shared`, a memory map they write into; `known`, the chunks the
    store has; how to cut (`average`) and encode (`coding`)."""
    # What the workers use is imported here: once rather than in each of them (~0.2 CPU s), and
    # never in a child forked while another thread of this process held that module's import lock.
    import ctypes  # noqa: F401
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import numpy  # noqa: F401
    import pyfastcdc  # noqa: F401
    import zstandard  # noqa: F401

    pool = ProcessPoolExecutor(
        max_workers=worker_count(),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(os.getpid(), shared, known, coding, average),
    )
    try:
        yield pool
    except BrokenProcessPool as error:
        pool.shutdown(wait=True, cancel_futures=True)
        raise StoreError(
            "a worker process of the chunk layer died (killed, or out of memory); nothing it was writing was kept",
            hint="run the command again; `modelspec verify` checks the store",
        ) from error
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# In a worker: what its parent gave it (see start_pool).
_shared: memoryview | None = None
_known: Container[bytes] = frozenset()
_encoder: Encoder | None = None
_cdc: Any = None


def _start_worker(
    parent: int, shared: mmap.mmap | None, known: Container[bytes], coding: Coding | None, average: int
) -> None:
    """In a new worker: Ctrl-C is the parent's to handle (it stops the pool), the worker dies
    with the parent's thread that forked it (a killed build leaves no worker waiting). (It holds
    none of the parent's owner locks: owner.py lets go of them in every forked child, so the
    parent's temp files are cleaned the moment it is gone.)"""
    global _shared, _known, _encoder, _cdc
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


def cut_and_encode(fd: int, size: int, ranges: list[Range], temp: str) -> Cut:
    """On a worker: FastCDC over each range of the file on its own, and the chunks it trusts
    that its parent's store lacks (nor this task met before) encoded (see `Cut`)."""
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


def _cut_range(region: memoryview, r: Range, out: _NewChunks) -> tuple[bytes, bytes]:
    assert _encoder is not None and _cdc is not None
    ends = array("Q")
    digests = bytearray()
    trusted = last_trusted(r, _cdc.max_size)
    for chunk in _cdc.cut_buf(region):
        offset = r.start + chunk.offset
        ends.append(offset + chunk.length)
        digest = blake3.blake3(chunk.data).digest()
        digests += digest
        if offset <= trusted and digest not in _known and digest not in out.seen:
            stored, codec = _encoder(chunk.data, piece(r.segment, offset, chunk.length))
            out.add(digest, chunk.data if stored is None else stored, chunk.length, codec)
    return ends.tobytes(), bytes(digests)  # the chunker's views of `region` are gone with this frame


class _NewChunks:
    """The new chunks a worker encodes for one task: held in memory until they come to
    OWN_PACK bytes, then written to a pack at the task's temp path (and from there on as they
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
        if self._size >= OWN_PACK:
            self._pack = PackFile(os.open(self._temp, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC), Path(self._temp))
            for chunk, held, raw_length, codec in self._held:
                self._pack.add(chunk, held, raw_length, codec)
            self._held = []

    def finish(self, ranges: list[tuple[bytes, bytes]]) -> Cut:
        if self._pack is None:
            return Cut(ranges, "", [], self._held)
        return Cut(ranges, self._pack.close(sync=False), self._pack.rows, [])

    def discard(self) -> None:
        if self._pack is not None:
            self._pack.discard()


def decode(packs: str, places: list[Located], lengths: list[int], start: int) -> bool:
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
