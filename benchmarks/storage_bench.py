#!/usr/bin/env python3
"""Storage benchmark for the chunk layer (issue 16): prints its figures beside their goals.

A script, not a test. It generates float32 weights (numpy: `pip install numpy`) and stores
versions of them through `LocalStore` as a cold store does (chunks only, `keep_whole=False`),
measuring what is stored and how fast:

* 10 versions of a model, each changing 5% of its bytes in runs of >= 64 KiB (goal: under
  1.6 GiB stored at 1 GiB), the same in runs of 16 KiB (scattered), and a `.safetensors`
  model of 24 tensors where each version retrains 2 of them (goal: under 1.3 GiB);
* ingest of a new file (goal >= 600 MiB/s end to end) and of a 5%-changed version (goal >=
  1.5 GiB/s: only new chunks are written), into a cold store; and into a hot one (the default:
  a whole copy too), as a build stores its outputs;
* checkout of a cold version (reassembled and checked: goal >= 700 MiB/s) and of a hot one
  (a copy of the whole object, as before the chunk layer);
* with --dvc PYTHON (a python whose environment has dvc), `dvc add` of the same versions side
  by side: bytes in its cache and seconds.

    python benchmarks/storage_bench.py --size 64         # a quick run (64 MiB model)
    python benchmarks/storage_bench.py --size 1024 --dvc /tmp/dvc-venv/bin/python

Figures are wall-clock and sensitive to other load on the machine (the load average is
printed); the page cache is not dropped between steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelspec.store.chunks import ChunkPolicy
from modelspec.store.objects import Entry, LocalStore

MIB = 1 << 20
GIB = 1 << 30

try:
    import numpy as np
except ImportError:  # pragma: no cover - a benchmark's own requirement
    sys.exit("storage_bench.py generates weights with numpy: pip install numpy")


def weights(rng: np.random.Generator, count: int) -> np.ndarray:
    return (rng.standard_normal(count, dtype=np.float32) * np.float32(0.02)).astype(np.float32)


def runs_versions(size: int, versions: int, run: int, fraction: float, seed: int) -> Iterator[bytes]:
    """A model, then versions each changing `fraction` of its bytes in runs of `run` bytes."""
    rng = np.random.default_rng(seed)
    model = weights(rng, size // 4)
    yield model.tobytes()
    per_run = run // 4
    for _ in range(versions - 1):
        for start in rng.integers(0, model.size - per_run, int(size * fraction) // run):
            model[start : start + per_run] = weights(rng, per_run)
        yield model.tobytes()


def safetensors_versions(size: int, versions: int, tensors: int, retrained: int, seed: int) -> Iterator[bytes]:
    """A safetensors file of `tensors` equal F32 tensors; each version retrains `retrained`."""
    rng = np.random.default_rng(seed)
    per = size // tensors // 4
    layers = [weights(rng, per) for _ in range(tensors)]
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    for i in range(tensors):
        header[f"layers.{i}.weight"] = {
            "dtype": "F32",
            "shape": [per],
            "data_offsets": [i * per * 4, (i + 1) * per * 4],
        }
    text = json.dumps(header).encode()
    head = struct.pack("<Q", len(text)) + text
    for version in range(versions):
        if version:
            for i in rng.choice(tensors, retrained, replace=False):
                layers[i] = weights(rng, per)
        yield head + b"".join(layer.tobytes() for layer in layers)


def stored_bytes(root: Path) -> int:
    return sum(
        p.stat().st_size
        for folder in ("packs", "recipes", "objects")
        for p in (root / folder).rglob("*")
        if p.is_file()
    )


CPU: list[float] = []  # CPU seconds of each timed step (all threads and worker processes), beside its wall time


def cpu_seconds() -> float:
    """This process's CPU seconds and its ended children's (the store's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], object]) -> float:
    """Wall seconds of `action`; its CPU seconds are appended to CPU (a figure the load of a
    shared machine disturbs less)."""
    started, cpu = time.perf_counter(), cpu_seconds()
    action()
    CPU.append(cpu_seconds() - cpu)
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0


def rate(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:,.0f} MiB/s" if seconds else "-"


def store_versions(name: str, files: Iterator[bytes], work: Path, policy: ChunkPolicy, dvc: str | None) -> dict:
    """Ingest each version into a fresh store with `policy`; stored bytes and times."""
    root = work / f"store-{name}"
    store = LocalStore(root, policy)
    source = work / ("model.safetensors" if "safetensors" in name else "model.bin")
    dvc_repo = work / f"dvc-{name}" if dvc else None
    if dvc_repo is not None:
        dvc_init(dvc, dvc_repo)
    result: dict = {"ingest_s": [], "ingest_cpu": [], "digests": [], "dvc_s": []}
    logical = 0
    for data in files:
        source.write_bytes(data)
        logical += len(data)
        os.sync()
        result["ingest_s"].append(timed(lambda: result["digests"].append(store.put_file(source))))
        result["ingest_cpu"].append(CPU[-1])
        if dvc_repo is not None and dvc is not None:
            shutil.copyfile(source, dvc_repo / source.name)
            result["dvc_s"].append(timed(lambda: dvc_run(dvc, dvc_repo, "add", "-q", source.name)))
    result.update(size=len(data), logical=logical, stored=stored_bytes(root), store=store, root=root)
    if dvc_repo is not None:
        result["dvc_stored"] = sum(p.stat().st_size for p in (dvc_repo / ".dvc" / "cache").rglob("*") if p.is_file())
    return result


def dvc_init(python: str, repo: Path) -> None:
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc_run(python, repo, "init", "-q")
    dvc_run(python, repo, "config", "core.analytics", "false")


def dvc_run(python: str, repo: Path, *args: str) -> None:
    subprocess.run([python, "-m", "dvc", *args], cwd=repo, check=True, capture_output=True)


def report(title: str, result: dict, goal: float | None, versions: int) -> None:
    size, stored = result["size"], result["stored"]
    line = f"{title}: {versions} versions of {size / MIB:,.0f} MiB stored in {stored / MIB:,.1f} MiB"
    dedup = result["logical"] / stored
    line += f" ({stored / size:.2f}x one version; {dedup:.1f}x dedup over {result['logical'] / MIB:,.0f} MiB)"
    if goal is not None:
        line += f"; goal < {goal * size / MIB:,.0f} MiB ({goal}x): {'met' if stored < goal * size else 'NOT met'}"
    print(line)
    if result.get("dvc_s"):
        print(
            f"  dvc add, same versions: {result['dvc_stored'] / MIB:,.1f} MiB in its cache, "
            f"{sum(result['dvc_s']):.1f} s ({rate(result['logical'], sum(result['dvc_s']))}); "
            f"modelspec: {sum(result['ingest_s']):.1f} s ({rate(result['logical'], sum(result['ingest_s']))})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="model size in MiB (default 1024; 64 for a quick run)")
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--average", type=int, default=None, help="FastCDC avg_size in bytes (default the store's)")
    parser.add_argument("--dvc", metavar="PYTHON", help="a python with dvc installed: run `dvc add` side by side")
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default a temp dir, removed after)")
    args = parser.parse_args()
    size, versions = args.size * MIB, args.versions
    extra = {"average": args.average} if args.average else {}
    cold = ChunkPolicy(keep_whole=False, **extra)
    work = Path(tempfile.mkdtemp(prefix="storage-bench-", dir=args.dir))
    print(f"storage_bench: {args.size} MiB model, {versions} versions, load {os.getloadavg()[0]:.2f}, in {work}")
    try:
        runs64 = store_versions("runs64k", runs_versions(size, versions, 64 << 10, 0.05, 1), work, cold, args.dvc)
        report("5% changed in 64 KiB runs", runs64, 1.6, versions)
        ingest, cpu = runs64["ingest_s"], runs64["ingest_cpu"]
        print(
            f"ingest into a cold store: new file {rate(size, ingest[0])} (goal >= 600 MiB/s; "
            f"{cpu[0]:.2f} CPU s); 5%-changed version {rate(size, median(ingest[1:]))} median "
            f"(goal >= 1,536 MiB/s; {median(cpu[1:]):.2f} CPU s)"
        )
        checkout(runs64, work)
        shutil.rmtree(runs64["root"])
        hot_ingest(size, work)
        runs16 = store_versions("runs16k", runs_versions(size, versions, 16 << 10, 0.05, 2), work, cold, None)
        report("5% changed in 16 KiB runs (scattered)", runs16, None, versions)
        shutil.rmtree(runs16["root"])
        tensors = store_versions("safetensors", safetensors_versions(size, versions, 24, 2, 3), work, cold, args.dvc)
        report("safetensors, 2 of 24 tensors retrained per version", tensors, 1.3, versions)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load {os.getloadavg()[0]:.2f}")


def checkout(result: dict, work: Path) -> None:
    """Checkout of the first (cold) version, and of a hot copy of it."""
    store, digest, size = result["store"], result["digests"][0], result["size"]
    cold = timed(lambda: store.restore(Entry("file", digest, size), work / "cold.bin", link=False))
    cold_cpu = CPU[-1]
    hot_store = LocalStore(work / "hot-checkout")
    hot_digest = hot_store.put_file(work / "cold.bin")
    hot = timed(lambda: hot_store.restore(Entry("file", hot_digest, size), work / "hot.bin", link=False))
    print(
        f"checkout: cold version {rate(size, cold)} (reassembled, checked; goal >= 700 MiB/s; {cold_cpu:.2f} CPU s); "
        f"hot {rate(size, hot)}"
    )
    for path in (work / "cold.bin", work / "hot.bin"):
        path.unlink()
    shutil.rmtree(work / "hot-checkout")


def hot_ingest(size: int, work: Path) -> None:
    """A build's outputs go into a hot store: a whole copy (moved in) and its chunks."""
    store = LocalStore(work / "store-hot")
    files = runs_versions(size, 2, 64 << 10, 0.05, 4)
    times = []
    for data in files:
        (work / "out.bin").write_bytes(data)
        os.sync()
        times.append(timed(lambda: store.put_file(work / "out.bin", move=True)))
    print(f"ingest into a hot store (moved in, a whole copy kept, chunked): new {rate(size, times[0])}, ", end="")
    print(f"5%-changed {rate(size, times[1])}")
    shutil.rmtree(work / "store-hot")


if __name__ == "__main__":
    main()
