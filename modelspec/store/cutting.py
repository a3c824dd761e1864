"""Where a large file is cut into chunks: content-defined cut points (FastCDC), inside the
segments a file's format gives.

A `.safetensors` file is cut at its tensors' boundaries first (its header says where each
tensor's bytes lie), then by FastCDC inside each tensor, so a fine-tune that retrains a few
layers changes only those layers' chunks; a `.npy` file's header is cut off its array the same
way; plain bytes that a sample shows to be floats are typed as such. Each segment carries the
element size of its numbers, so float data can be byte-grouped before compression. Only the
headers' JSON (safetensors) or Python literal (npy) is parsed, never executed, and a header
that does not check is ignored: the file is cut as plain bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, NamedTuple

# FastCDC's `avg_size`: its chunks average avg + avg/4 (the minimum it skips), ~20 KiB here.
# Measured (benchmarks/storage_bench.py's versions, 256 MiB x 10, stored / one version):
# avg 8 KiB: 1.48x (5% changed in 64 KiB runs), 1.76x (16 KiB runs); 16 KiB: 1.54x, 2.07x;
# 32 KiB: 1.74x, 2.71x. 16 KiB meets the 1.6x goal with half the chunks (and index) of 8 KiB.
AVERAGE = 16 << 10

# Float element sizes by format name: their bytes are grouped before compression.
_SAFETENSORS_FLOATS = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
_NPY_FLOATS = {"f8": 8, "f4": 4, "f2": 2}
_MAX_HEADER = 100 << 20  # the safetensors spec's own limit
# Plain bytes of at least _SNIFF_MIN are sampled (four windows) for floats, taken to be floats
# when grouping would store them in under _SNIFF_GAIN of what zstd over the whole would.
_SNIFF_MIN, _SNIFF_WINDOW, _SNIFF_GAIN = 1 << 20, 64 << 10, 0.97


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes [start, end) cut on their own; `element` is the float size to group by (0: none)."""

    start: int
    end: int
    element: int = 0


class Piece(NamedTuple):
    """One chunk of a file: where it lies, the element size of its segment, and how many of
    its first bytes end an element begun in the chunk before. (A named tuple: ~50,000 a GiB,
    made 7x faster than a frozen dataclass.)"""

    offset: int
    length: int
    element: int
    align: int = 0


def segments(data: memoryview, name: str) -> list[Segment]:
    """The segments of a file's bytes, by its format (from its name or its first bytes)."""
    size = len(data)
    found: list[Segment] | None = None
    if name.endswith(".safetensors"):
        found = _safetensors(data)
    elif name.endswith(".npy") or bytes(data[:6]) == b"\x93NUMPY":
        found = _npy(data)
    return found if found is not None else _sniff(data, Segment(0, size))


def _sniff(data: memoryview, part: Segment) -> list[Segment]:
    """Plain bytes typed as floats when a sample of them says so: their top byte plane
    compresses (sign and exponent) where their whole barely does. A raw float32 file (a
    `.bin` of weights) then stores ~10% smaller, for less work than zstd over every byte."""
    span = part.end - part.start
    if part.element or span < _SNIFF_MIN:
        return [part]
    import zstandard  # only where files are chunked

    compressor = zstandard.ZstdCompressor(level=1)
    # At offsets that are multiples of 8 from the segment's start: a phase found holds for all.
    samples = [bytes(data[part.start + (span * k // 4 & ~7) :][:_SNIFF_WINDOW]) for k in range(4)]
    plain = sum(len(compressor.compress(sample)) for sample in samples)
    best = (plain * _SNIFF_GAIN, 0, 0)
    for element in (4, 2):
        for phase in range(element):
            top = [sample[phase + element - 1 :: element] for sample in samples]
            size = sum(len(s) - len(t) + len(compressor.compress(t)) for s, t in zip(samples, top, strict=True))
            best = min(best, (size, element, phase))
    _size, element, phase = best
    if not element:
        return [part]
    head = [Segment(part.start, part.start + phase)] if phase else []  # bytes before the first whole number
    return [*head, Segment(part.start + phase, part.end, element)]


def cut(data: memoryview, parts: list[Segment], average: int = AVERAGE) -> Generator[Piece, None, None]:
    """Content-defined pieces of each segment, in file order, covering every byte once."""
    from pyfastcdc import FastCDC  # only where files are chunked: not on the CLI's start-up

    cdc = FastCDC(average)
    for part in parts:
        if part.end - part.start <= cdc.min_size:
            yield Piece(part.start, part.end - part.start, part.element)
            continue
        for chunk in cdc.cut_buf(data[part.start : part.end]):
            align = -chunk.offset % part.element if part.element else 0
            yield Piece(part.start + chunk.offset, chunk.length, part.element, align)


def _safetensors(data: memoryview) -> list[Segment] | None:
    """Header, then each tensor (and any gap between), per the format's spec: an 8-byte
    little-endian header length, a JSON header of `name: {dtype, shape, data_offsets}`
    relative to the byte after the header, then the tensors' bytes."""
    if len(data) < 8:
        return None
    (length,) = struct.unpack("<Q", data[:8])
    base = 8 + length
    if length > _MAX_HEADER or base > len(data):
        return None
    try:
        header = json.loads(bytes(data[8:base]))
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    tensors = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return None
        begin, end = base + offsets[0], base + offsets[1]
        if not base <= begin <= end <= len(data):
            return None
        tensors.append(Segment(begin, end, _SAFETENSORS_FLOATS.get(str(info.get("dtype")), 0)))
    return _cover(Segment(0, base), sorted(tensors, key=lambda s: s.start), len(data))


def _npy(data: memoryview) -> list[Segment] | None:
    """The header (magic, version, length, a dict literal), then the array's bytes."""
    if len(data) < 10 or bytes(data[:6]) != b"\x93NUMPY":
        return None
    major = data[6]
    if major == 1:
        (length,), start = struct.unpack("<H", data[8:10]), 10
    elif major in (2, 3) and len(data) >= 12:
        (length,), start = struct.unpack("<I", data[8:12]), 12
    else:
        return None
    base = start + length
    if base > len(data):
        return None
    import ast  # a literal, never executed; imported only for .npy files

    try:
        header: Any = ast.literal_eval(bytes(data[start:base]).decode("latin-1"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    descr = header.get("descr") if isinstance(header, dict) else None
    element = _NPY_FLOATS.get(descr[1:], 0) if isinstance(descr, str) and descr[:1] in "<|" else 0
    return [Segment(0, base), Segment(base, len(data), element)]


def _cover(head: Segment, tensors: list[Segment], size: int) -> list[Segment] | None:
    """The header and the tensors with the gaps between them as plain segments; None if two
    tensors overlap (not a file to trust the header of)."""
    found = [head]
    position = head.end
    for tensor in tensors:
        if tensor.start < position:
            return None
        if tensor.start > position:
            found.append(Segment(position, tensor.start))
        if tensor.end > tensor.start:
            found.append(tensor)
        position = tensor.end
    if position < size:
        found.append(Segment(position, size))
    return found
