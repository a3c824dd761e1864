"""How regions of a file cut apart become the cut one pass over it gives.

Worker processes (forked.py) cut a large file's segments in ranges of ~REGION bytes, each on
its own. FastCDC chooses a chunk's end from the bytes after its start — at most max_size of
them, fewer where the buffer ends sooner. So a range's chunk is the single pass's chunk when
it starts where the single pass has a boundary and has max_size bytes of range ahead (or the
range ends where the segment does): a start "the range trusts". From the first start it does
not trust, the pass's chunks are cut again here, through the whole segment, until one ends at
a start the next range trusts; from there the two agree. A few chunks a range are cut twice.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import pairwise
from typing import Any, NamedTuple

import blake3

from .cutting import Piece, Segment

REGION = 32 << 20  # bytes a worker cuts per task


class Range(NamedTuple):
    """Bytes [start, end) of a segment, cut by one worker on their own."""

    segment: Segment
    start: int
    end: int


def regions(part: Segment) -> list[Range]:
    """A segment in about equal ranges of at least REGION bytes (one if it is smaller)."""
    span = part.end - part.start
    count = max(1, span // REGION)
    edges = [part.start + span * k // count for k in range(count)] + [part.end]
    return [Range(part, a, b) for a, b in pairwise(edges)]


def tasks(ranges: list[Range]) -> Iterator[list[Range]]:
    """Ranges grouped into tasks of about REGION bytes (small tensors share a task)."""
    task: list[Range] = []
    bytes_ = 0
    for r in ranges:
        task.append(r)
        bytes_ += r.end - r.start
        if bytes_ >= REGION:
            yield task
            task, bytes_ = [], 0
    if task:
        yield task


class Run(NamedTuple):
    """Consecutive chunks of the single pass in one segment: their offsets, lengths, blake3s."""

    segment: Segment
    offsets: list[int]
    lengths: list[int]
    digests: list[bytes]


def stitched(
    data: memoryview, parts: list[Segment], cdc: Any, cut: Iterator[tuple[array[int], bytes]]
) -> Iterator[Run]:
    """Every chunk of the file in order, in runs: the single pass's cut, from the ranges' cuts
    (`cut`, in order) and a few chunks cut again here at each seam."""
    for part in parts:
        if part.end - part.start <= cdc.min_size:
            with data[part.start : part.end] as raw:
                yield Run(part, [part.start], [part.end - part.start], [blake3.blake3(raw).digest()])
            continue
        position = part.start  # where the single pass has reached: a boundary of it
        for r in regions(part):
            ends, digests = next(cut)
            starts = [r.start, *ends[:-1]]
            trusted = last_trusted(r, cdc.max_size)
            while position < part.end and position <= trusted:
                i = bisect_left(starts, position)
                if i < len(starts) and starts[i] == position:  # in step: its trusted chunks are the pass's
                    last = bisect_right(starts, trusted)
                    offsets = starts[i:last]
                    lengths = [end - start for start, end in zip(offsets, ends[i:last], strict=True)]
                    yield Run(part, offsets, lengths, [digests[k : k + 32] for k in range(32 * i, 32 * last, 32)])
                    position = ends[last - 1]
                    break
                with data[position : part.end] as rest:  # out of step: the pass's next chunk, cut here
                    length = first_cut(cdc, rest)
                    with rest[:length] as raw:
                        yield Run(part, [position], [length], [blake3.blake3(raw).digest()])
                position += length
        if position != part.end:
            raise RuntimeError(f"stitched chunks end at {position}, their segment at {part.end}")


def last_trusted(r: Range, max_size: int) -> int:
    """The last start in `r` whose chunk is the single pass's when the pass reaches it."""
    return r.end - max_size if r.end < r.segment.end else r.end


def first_cut(cdc: Any, rest: memoryview) -> int:
    """The length of the chunk FastCDC cuts at the start of `rest`."""
    chunker = cdc.cut_buf(rest)
    length: int = next(chunker).length
    del chunker  # it holds a view of `rest`, which the caller releases
    return length


def piece(part: Segment, offset: int, length: int) -> Piece:
    align = -(offset - part.start) % part.element if part.element else 0
    return Piece(offset, length, part.element, align)
