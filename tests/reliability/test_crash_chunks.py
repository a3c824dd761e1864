"""SIGKILL inside the chunk layer itself, at seeded random instants: a process that stores
large files as chunks only (cutting, packing, writing recipes), deletes old ones and prunes
packs (removing dead ones, rewriting half-dead ones) in a loop is killed again and again.
After each kill every file it had finished storing reassembles bit for bit, every pack is
whole (its index reads), and the next process removes the killed one's temp files. Once with
the work on threads, once on worker processes (store/forked.py), which die with their parent. (The
end-to-end trials, a build and gc of a large model killed, are in test_crash.py.)"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelspec.store.chunks import ChunkPolicy
from modelspec.store.objects import LocalStore
from modelspec.store.packs import read_index

POLICY = ChunkPolicy(threshold=1 << 20, pack_limit=2 << 20, keep_whole=False, min_live=0.6)

WORKER = """
import os, random, sys
from pathlib import Path
from modelspec.store import forked, stitching
from modelspec.store.chunks import ChunkPolicy
from modelspec.store.objects import LocalStore

root, log, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
if sys.argv[4] == "processes":  # every file cut, packed and reassembled by worker processes, in 12 regions
    forked.FORKED_FROM, forked._DECODED, stitching.REGION = 0, 512 << 10, 512 << 10
store = LocalStore(root, ChunkPolicy(threshold=1 << 20, pack_limit=2 << 20, keep_whole=False, min_live=0.6))
store.clean_temp()
rng = random.Random(seed)
base = random.Random(0).randbytes(6 << 20)

def note(line):
    with open(log, "a") as f:
        f.write(line + "\\n")
        f.flush()
        os.fsync(f.fileno())

for i in range(1000):
    data = bytearray(base)
    start = rng.randrange(0, len(base) - (2 << 20))
    data[start : start + (2 << 20)] = rng.randbytes(2 << 20)  # a third of the file is new
    note("stored " + store.put_bytes(bytes(data)))
    kept = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("stored ")]
    gone = {line.split()[1] for line in log.read_text().splitlines() if line.startswith("deleted ")}
    for digest in [d for d in kept if d not in gone][:-2]:
        note("deleted " + digest)  # before deleting: a kill between leaves it, harmlessly
        store.delete(digest)
    store.chunks.prune()
"""


def _temp_files(store: LocalStore) -> list[Path]:
    return [p for p in store.tmp.iterdir() if not p.name.endswith(".owner")]


def _state(log: Path) -> tuple[list[str], set[str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    stored = [line.split()[1] for line in lines if line.startswith("stored ")]
    deleted = {line.split()[1] for line in lines if line.startswith("deleted ")}
    return stored, deleted


@pytest.mark.parametrize("chunking", ["threads", "processes"])
def test_sigkill_while_chunking_and_pruning_never_loses_a_stored_file(tmp_path: Path, chunking: str) -> None:
    root, log = tmp_path / "store", tmp_path / "log"
    rng = random.Random(4242)
    for trial in range(12):
        worker = subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(log), str(trial), chunking])
        time.sleep(rng.uniform(0.3, 2.5))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        store = LocalStore(root, POLICY)
        store.clean_temp()
        for pack in store.chunks.packs.glob("*.pack"):
            read_index(pack)  # a pack in packs/ is always whole
        stored, deleted = _state(log)
        for digest in stored:
            if digest not in deleted:
                assert store.verify(digest), f"trial {trial}: {digest} lost"
        if chunking == "processes" and _temp_files(store):
            # A worker forked in the killed process's last moments that has not run yet still holds
            # its owner lock (a fork shares it): on its first step it lets go and exits. The next
            # clean removes what this one could not.
            time.sleep(1)
            store.clean_temp()
        assert not _temp_files(store), f"trial {trial}: temp files"
    stored, deleted = _state(log)
    assert len(stored) >= 12 and deleted  # the kills landed among stores, deletions and prunes
