"""Writers and pruning at once: processes store files whose chunks they share with files
another process deletes and prunes away meanwhile. A writer that finds a chunk in a pack
reuses it, so pruning must never remove that pack between the look-up and the writer's recipe
(`packs.lock`: shared while a file is chunked, exclusive while packs are pruned). Every file a
writer finished storing must reassemble afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modelspec.store.chunks import ChunkPolicy
from modelspec.store.objects import LocalStore

POLICY = ChunkPolicy(threshold=1 << 16, pack_limit=1 << 20, keep_whole=False, min_live=0.9)

# Each round stores a file of its own made of one of eight bodies every writer uses (so its
# chunks are often found in packs, and reused) and deletes the file of the round before (so a
# body's chunks are often dead, and pruning removes their packs while a writer reuses them).
WRITER = """
import random, sys
from pathlib import Path
from modelspec.store.chunks import ChunkPolicy
from modelspec.store.objects import LocalStore

root, log, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
store = LocalStore(root, ChunkPolicy(threshold=1 << 16, pack_limit=1 << 20, keep_whole=False, min_live=0.9))
bodies = [random.Random(i).randbytes(2 << 20) for i in range(8)]
rng = random.Random(seed)
previous = None
with open(log, "a") as out:
    for round in range(40):
        digest = store.put_bytes(rng.choice(bodies) + f"writer {seed} round {round}".encode())
        out.write(digest + "\\n")
        out.flush()
        if previous is not None:
            out.write("deleted " + previous + "\\n")
            out.flush()
            store.delete(previous)
        previous = digest
"""

PRUNER = """
import sys
from pathlib import Path
from modelspec.store.chunks import ChunkPolicy
from modelspec.store.objects import LocalStore

store = LocalStore(Path(sys.argv[1]), ChunkPolicy(threshold=1 << 16, keep_whole=False, min_live=0.9))
while not Path(sys.argv[2]).exists():  # until the writers are done
    store.chunks.prune()
"""


def test_pruning_while_writers_reuse_chunks_never_loses_a_stored_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    logs = [tmp_path / f"writer{i}.log" for i in range(4)]
    done = tmp_path / "done"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(log), str(i)]) for i, log in enumerate(logs)
    ]
    pruner = subprocess.Popen([sys.executable, "-c", PRUNER, str(root), str(done)])
    for proc in writers:
        assert proc.wait(timeout=300) == 0
    done.touch()
    assert pruner.wait(timeout=300) == 0
    store = LocalStore(root, POLICY)
    for log in logs:
        lines = log.read_text().splitlines()
        last = {}  # each file's last word in this log: stored (kept) or deleted
        for line in lines:
            last[line.split()[-1]] = line.startswith("deleted")
        kept = [digest for digest, deleted in last.items() if not deleted]
        assert kept and all(store.verify(digest) for digest in kept), log.name
    assert store.chunks.prune().removed >= 0  # and the store still prunes cleanly
