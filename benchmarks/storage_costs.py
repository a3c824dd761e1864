#!/usr/bin/env python3
"""What each step of ingesting a large file costs on this machine, and the fastest ingest those
costs allow on its cores (issue 16). A script, not a test: it prints figures.

Every step is timed alone, on one core, over the same float32 weights `storage_bench.py`
generates: the whole file's blake3 (its identity), FastCDC's cut, each chunk's blake3, the
encoding of a new chunk (byte planes split, the top plane compressed: the store's codec) and
the write of what is stored, with its fsync. A new file needs all of them; a 5%-changed version
the first three, and the rest only for its new chunks. Their sum over the cores is the best any
scheduling of this work could do; beside it, what `LocalStore` does (cold store, as
storage_bench.py measures it) and the CPU it spends doing so.

    python benchmarks/storage_costs.py              # 1 GiB
    python benchmarks/storage_costs.py --size 256
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import blake3
from storage_bench import MIB, cpu_seconds, runs_versions

from modelspec.store.chunks import ChunkPolicy
from modelspec.store.cutting import AVERAGE, segments
from modelspec.store.objects import LocalStore
from modelspec.store.packs import plane_compressor, planes
from modelspec.store.stitching import piece

GOALS = {"new file": 600, "5%-changed version": 1536}  # MiB/s, the issue's


def cpu_of(step: Callable[[], object]) -> float:
    started = time.process_time()
    step()
    return time.process_time() - started


def step_costs(path: Path, base: Path) -> tuple[dict[str, float], float]:
    """CPU seconds of each step over the file at `path`, and the share of its bytes in chunks
    the version at `base` does not have (what a changed version encodes and writes)."""
    from pyfastcdc import FastCDC

    cdc = FastCDC(AVERAGE)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
        data = memoryview(view)
        try:
            costs: dict[str, float] = {}
            costs["blake3 of the whole file"] = cpu_of(lambda: blake3.blake3(data).digest())
            cuts: list[tuple[int, int]] = []
            costs["FastCDC cut"] = cpu_of(lambda: cuts.extend((c.offset, c.length) for c in cdc.cut_buf(data)))
            digests: list[bytes] = []
            costs["blake3 of each chunk"] = cpu_of(
                lambda: digests.extend(blake3.blake3(data[o : o + n]).digest() for o, n in cuts)
            )
            (part,) = segments(data, path.name)  # plain float32: one segment, typed as floats
            pieces = [piece(part, o, n) for o, n in cuts]
            compressor, stored = plane_compressor(1), 0

            def split_all() -> None:
                for p in pieces:
                    planes(data[p.offset :], 4, p.align, (p.length - p.align) // 4)

            def encode_all() -> None:  # the grids go as they would in the store, their memory reused
                nonlocal stored
                for p in pieces:
                    count = (p.length - p.align) // 4
                    top = compressor.compress(planes(data[p.offset :], 4, p.align, count)[3])
                    stored += p.length - count + len(top)

            costs["split each chunk into byte planes"] = cpu_of(split_all)
            costs["zstd of each chunk's top plane"] = cpu_of(encode_all) - costs["split each chunk into byte planes"]
            out = path.with_suffix(".written")

            def write() -> None:  # as many bytes as are stored, from the page cache as the store's are
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                try:
                    for at in range(0, stored, 1 << 20):
                        os.write(fd, data[at : min(stored, at + (1 << 20))])
                    os.fsync(fd)
                finally:
                    os.close(fd)

            costs["write and fsync what is stored"] = cpu_of(write)
        finally:
            data.release()
    out.unlink()
    old = set(_chunk_digests(base, cdc))
    new = sum(n for (_o, n), d in zip(cuts, digests, strict=True) if d not in old)
    return costs, new / path.stat().st_size


def _chunk_digests(path: Path, cdc: Any) -> list[bytes]:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
        data = memoryview(view)
        try:
            return [blake3.blake3(c.data).digest() for c in cdc.cut_buf(data)]
        finally:
            data.release()


def measured(store: LocalStore, path: Path) -> tuple[float, float, float]:
    """Wall and CPU seconds (with the worker processes') of storing `path`, and how busy the
    machine's cores were meanwhile (the kernel's writeback included, which no process is charged)."""
    started, cpu, before = time.perf_counter(), cpu_seconds(), _cores()
    store.put_file(path)
    total, idle = (after - earlier for after, earlier in zip(_cores(), before, strict=True))
    return time.perf_counter() - started, cpu_seconds() - cpu, 1 - idle / total if total else 0.0


def _cores() -> tuple[int, int]:
    """All cores' time and their idle time so far, in ticks (Linux's /proc/stat; zeros elsewhere)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    return sum(ticks), ticks[3] + ticks[4]  # idle, iowait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="model size in MiB (default 1024)")
    args = parser.parse_args()
    size, cores = args.size * MIB, os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="storage-costs-"))
    try:
        first, second = work / "v1.bin", work / "v2.bin"
        versions = runs_versions(size, 2, 64 << 10, 0.05, 1)
        first.write_bytes(next(versions))
        second.write_bytes(next(versions))
        os.sync()
        print(f"storage_costs: {args.size} MiB of float32 weights, {cores} cores, load {os.getloadavg()[0]:.2f}")
        costs, new_share = step_costs(second, first)
        per_gib = (1 << 30) / size
        for name, seconds in costs.items():
            print(f"  {name:<36} {seconds * per_gib:6.2f} CPU s/GiB")
        steps_of_new_chunks = [k for k in costs if "plane" in k or "write" in k]
        encode_and_write = sum(costs[k] for k in steps_of_new_chunks)
        floor = {
            "new file": sum(costs.values()),
            "5%-changed version": sum(costs.values()) - encode_and_write * (1 - new_share),
        }
        print(f"  (a 5%-changed version: {new_share:.1%} of its bytes in new chunks, encoded and written)")
        store = LocalStore(work / "store", ChunkPolicy(keep_whole=False))
        actual = {"new file": measured(store, first), "5%-changed version": measured(store, second)}
        for name, cpu in floor.items():
            wall, spent, busy = actual[name]
            best = size / MIB / (cpu / cores)
            print(
                f"{name}: the steps alone {cpu * per_gib:.2f} CPU s/GiB, at best {best:,.0f} MiB/s on {cores} cores "
                f"(goal {GOALS[name]:,} MiB/s needs {GOALS[name] * MIB / size * cpu:.1f} cores at these costs); "
                f"LocalStore {size / MIB / wall:,.0f} MiB/s, {spent * per_gib:.2f} CPU s/GiB, the cores {busy:.0%} busy"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
