"""Garbage-collection time for a registry of many versions (DESIGN.md §7).

Registers N versions of one model, each with its own artifact, code snapshot, log and lock
objects in a real store (plus a shared data snapshot), under `keep_last: K`, then times
`gc --dry-run` and `gc` through the library (what the CLI calls).

    python benchmarks/gc_bench.py --versions 1000 --keep 100
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from modelspec.digest import canonical_json
from modelspec.registry.registry import Registry, VersionDraft
from modelspec.retention.gc import collect
from modelspec.store.objects import Entry
from modelspec.store.workspace import Workspace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--keep", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="modelspec-gcbench-") as folder:
        root = Path(folder)
        workspace = Workspace(root=root, home=root / ".modelspec", settings={"retention": {"grace": "0s"}})
        store = workspace.store
        workspace.home.mkdir(parents=True)
        registry = Registry(f"sqlite:///{workspace.home / 'registry.db'}", clock=iter(range(10**9)).__next__)
        data = store.put_bytes(os.urandom(1 << 16))
        started = time.monotonic()
        for i in range(args.versions):
            artifact = store.put_bytes(rng.randbytes(4096))
            log = store.put_bytes(f"log {i}\n".encode())
            code_file = store.put_bytes(f"print({i})\n".encode())
            code = store.put_bytes(
                canonical_json({"format": 1, "entries": {"main.py": {"type": "file", "digest": code_file, "size": 10}}})
            )
            lock = store.put_bytes(canonical_json({"version": i}))
            registry.register(
                VersionDraft(
                    name="m",
                    spec_version="1.0",
                    content_id=f"blake3:{i:064x}",
                    lock=lock,
                    commit="c" * 40,
                    environment=None,
                    hermetic=True,
                    author="bench",
                    host="bench",
                    tool_version="0",
                    record={
                        "data": {"raw": {"path": "raw", "type": "file", "digest": data, "size": 1 << 16}},
                        "stages": {
                            "train": {
                                "key": f"blake3:{i:064x}",
                                "log": log,
                                "seconds": 1.0,
                                "code": Entry("tree", code, 10).to_dict(),
                                "outputs": {"model": {"type": "file", "digest": artifact, "size": 4096}},
                            }
                        },
                        "retention": {"keep_last": args.keep},
                    },
                    artifacts={"train.model": {"type": "file", "digest": artifact, "size": 4096}},
                    metrics={"auc": rng.random()},
                )
            )
        objects = sum(1 for _ in store.iter())
        print(f"registered {args.versions} versions ({objects} objects) in {time.monotonic() - started:.1f} s")
        for dry_run in (True, False):
            started = time.monotonic()
            report = collect(workspace, registry, dry_run=dry_run, actor="bench")
            label = "gc --dry-run" if dry_run else "gc"
            print(
                f"{label:<13} {time.monotonic() - started:6.2f} s: retire {len(report.retention.retire)} versions, "
                f"{len(report.objects)} objects, {report.bytes} bytes"
            )
        left = sum(1 for _ in store.iter())
        print(f"objects left: {left}; kept versions: {len(registry.versions_by_status('active'))}")
        registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
